//! The Linux host's Firecracker capability (`Vms`): tenants' VMs
//! (`vmm.rs`) and the developer VM (`dev.rs`).

use std::path::Path;
use std::time::Duration;

impl crate::host::Vms for crate::host::linux::LinuxHost {
    fn launch(
        &self,
        l: &crate::security::jailer::Launch,
    ) -> crate::host::HostResult<crate::host::Launched> {
        let tree = self.tree("launch")?;
        let exe = std::fs::read_link("/proc/self/exe").map_err(|e| {
            crate::host::HostError::new("find mvm itself at", Path::new("/proc/self/exe"), e)
        })?;
        crate::host::vm::vmm::launch(l, &tree, Duration::from_secs(10), &exe)
            .map(|(process, api_wait)| crate::host::Launched { process, api_wait })
            .map_err(|e| crate::host::HostError::on("launch the VM of", &l.id, e))
    }
    fn flush_metrics(
        &self,
        r: crate::host::ProcessRef,
        uid: u32,
        api_sock: &Path,
        metrics: &Path,
    ) -> crate::host::HostResult<bool> {
        let tree = self.tree("flush the metrics of")?;
        let failed = |e: std::io::Error| {
            crate::host::HostError::on("flush the metrics of", format!("pid {}", r.pid), e)
        };
        let before = crate::host::service::file_stamp(metrics);
        let (code, body) = crate::host::vm::vmm::api_put(
            &tree,
            api_sock,
            crate::host::vm::vmm::Peer { pid: r.pid, uid },
            "/actions",
            r#"{"action_type": "FlushMetrics"}"#,
            Duration::from_secs(1),
        )
        .map_err(failed)?;
        if !(200..=299).contains(&code) {
            return Err(failed(std::io::Error::other(format!(
                "Firecracker answered {code}: {}",
                body.trim()
            ))));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if crate::host::service::file_stamp(metrics) != before {
                // Written: give a rewrite in progress a moment to finish.
                std::thread::sleep(Duration::from_millis(20));
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    }
    fn prepare_logs(&self, logs: &crate::security::jailer::VmLogs) -> crate::host::HostResult {
        let tree = self.tree("rotate the logs in")?;
        crate::host::vm::pump::prepare(&tree, logs)
            .map_err(|e| crate::host::HostError::new("rotate the logs in", &logs.dir, e))
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
