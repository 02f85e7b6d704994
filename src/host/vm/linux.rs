//! The Linux host's Firecracker capability (`Vms`): tenants' VMs
//! (`vmm.rs`) and the developer VM (`dev.rs`).

use std::path::Path;
use std::time::Duration;

impl crate::host::Vms for crate::host::linux::LinuxHost {
    fn launch(
        &self,
        l: &crate::security::jailer::Launch,
    ) -> crate::host::HostResult<crate::host::ProcessRef> {
        let tree = self.tree("launch")?;
        crate::host::vm::vmm::launch(l, &tree, Duration::from_secs(10))
            .map_err(|e| crate::host::HostError::on("launch the VM of", &l.id, e))
    }
    fn stop(
        &self,
        r: crate::host::ProcessRef,
        uid: u32,
        cgroup: &str,
        api_sock: &Path,
        grace: Duration,
    ) -> crate::host::HostResult {
        let tree = self.tree("stop")?;
        crate::host::vm::vmm::stop(r, uid, cgroup, &tree, api_sock, grace)
            .map_err(|e| crate::host::HostError::on("stop process", format!("pid {}", r.pid), e))
    }
    fn find(
        &self,
        firecracker: &Path,
        uid: u32,
        cgroup: &str,
        id: &str,
    ) -> Option<crate::host::ProcessRef> {
        crate::host::vm::vmm::find(firecracker, uid, cgroup, id)
    }
    fn identify(
        &self,
        pid: u32,
        uid: u32,
        cgroup: &str,
        id: &str,
    ) -> Option<crate::host::ProcessRef> {
        crate::host::vm::vmm::identify(pid, uid, cgroup, id)
    }
    fn launch_dev(
        &self,
        d: &crate::security::jailer::DevLaunch,
    ) -> crate::host::HostResult<(crate::host::ProcessRef, String)> {
        let tree = self.tree("launch")?;
        crate::host::vm::dev::launch(d, &tree, Duration::from_secs(10)).map_err(|e| {
            crate::host::HostError::new("launch the developer VM from", &d.config_file, e)
        })
    }
    fn dev_status(
        &self,
        d: &crate::security::jailer::DevLaunch,
        r: crate::host::ProcessRef,
    ) -> (bool, bool) {
        let running = crate::host::vm::dev::running(r);
        let answers = running
            && self
                .tree("ask")
                .is_ok_and(|tree| crate::host::vm::dev::answers(&tree, d, r));
        (running, answers)
    }
}
