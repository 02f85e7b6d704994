//! Dev mode (`mvm dev up|down|status|console`): one developer VM from a
//! flake, for iterating on a guest image — the same artifact build and the
//! real Firecracker, but none of a tenant's machinery: its own directory
//! `<state>/dev/`, no node lock, no tenant record, no audit log, no
//! jailer, no cgroup, no network. Nothing here reads or writes a path of a
//! tenant's, a tap, a rule or the node lock.

use super::{AgentError, Node};
use crate::host::ProcessRef;
use crate::security::jailer::DevLaunch;
use crate::spec::desired::Profile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `mvm dev up` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DevUp {
    pub flake_ref: String,
    pub profile: Profile,
    pub vcpus: u8,
    pub mem_mib: u32,
}

/// `<state>/dev/dev.json`: the developer VM that runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevRecord {
    pub pid: u32,
    pub start_time: u64,
    /// The cgroup it runs in (the one `mvm dev up` ran in).
    pub cgroup: String,
    pub flake_ref: String,
    pub profile: Profile,
    pub store_path: PathBuf,
    pub vcpus: u8,
    pub mem_mib: u32,
    pub started: String,
}

impl DevRecord {
    pub fn process(&self) -> ProcessRef {
        ProcessRef {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

/// Where the developer VM's files are, all in `<state>/dev/`, and the
/// Firecracker node.toml names.
pub fn files(node: &Node) -> DevLaunch {
    let dir = node.layout.dev_dir();
    DevLaunch {
        firecracker: node.config.firecracker.binary.clone(),
        // `<root>/run/<socket>`, as in a jail: the API is reached the
        // same checked way (its directory by fd, the answering process).
        api_sock: dir.join("run/fc.sock"),
        config_file: dir.join("vm.json"),
        console: dir.join("console.log"),
        console_in: dir.join("console.in"),
        log: dir.join("firecracker.log"),
    }
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join("dev.json")
}

/// Serial console on (unlike a tenant's: `8250.nr_uarts=0` there), no
/// network configured.
pub const DEV_BOOT_ARGS: &str =
    "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd";

/// The Firecracker config of the developer VM: the artifact's kernel and
/// its rootfs read-only, by store path; no network, no drives besides.
pub fn config(store: &Path, up: &DevUp) -> serde_json::Value {
    serde_json::json!({
        "boot-source": {
            "kernel_image_path": store.join("vmlinux"),
            "boot_args": DEV_BOOT_ARGS,
        },
        "drives": [{
            "drive_id": "rootfs",
            "path_on_host": store.join("rootfs.ext4"),
            "is_root_device": true,
            "is_read_only": true,
        }],
        "machine-config": {
            "vcpu_count": up.vcpus,
            "mem_size_mib": up.mem_mib,
            "smt": false,
        },
    })
}

/// The developer VM as recorded, if one was started and not brought down
/// (whether it still runs is `status`'s question).
pub fn recorded(node: &Node) -> Result<Option<DevRecord>, AgentError> {
    let path = record_path(&node.layout.dev_dir());
    let Some(bytes) = node.host.files.read(&path, 64 * 1024)? else {
        return Ok(None);
    };
    crate::spec::json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AgentError::CorruptDevRecord {
            path,
            problem: e.to_string(),
        })
}

/// What `mvm dev status` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DevStatus {
    pub record: DevRecord,
    pub running: bool,
    pub api_answers: bool,
    pub console: PathBuf,
}

pub fn status(node: &Node) -> Result<Option<DevStatus>, AgentError> {
    let Some(record) = recorded(node)? else {
        return Ok(None);
    };
    let f = files(node);
    let (running, api_answers) = node.host.vms.dev_status(&f, record.process());
    Ok(Some(DevStatus {
        record,
        running,
        api_answers,
        console: f.console,
    }))
}

/// Builds the artifact and starts the developer VM. One at a time: a
/// recorded one that still runs is refused; a dead one's files are
/// replaced.
pub fn up(node: &Node, req: &DevUp, log: &mut dyn FnMut(&str)) -> Result<DevRecord, AgentError> {
    if let Some(s) = status(node)?
        && s.running
    {
        return Err(AgentError::DevRunning {
            pid: s.record.pid,
            flake_ref: s.record.flake_ref,
        });
    }
    let dir = node.layout.dev_dir();
    node.host.ensure_state_dir(node.layout.root())?;
    node.host.files.remove_tree(&dir)?;
    node.host
        .files
        .ensure_dir(node.layout.root(), Path::new("dev/run"), 0o700, 0, 0)?;
    log(&format!(
        "building {}#mvm-{}",
        req.flake_ref,
        req.profile.as_str()
    ));
    let built = node
        .host
        .builds
        .build(&node.config.nix, &req.flake_ref, req.profile.as_str())?;
    node.host
        .files
        .write_file(&dir.join("build.log"), &built.log, 0o600)?;
    log(&format!("built {}", built.out.display()));
    let f = files(node);
    let text = crate::spec::json::file_text(&config(&built.out, req));
    node.host.files.write_file(&f.config_file, &text, 0o600)?;
    log("starting Firecracker");
    let (r, cgroup) = node.host.vms.launch_dev(&f)?;
    let record = DevRecord {
        pid: r.pid,
        start_time: r.start_time,
        cgroup,
        flake_ref: req.flake_ref.clone(),
        profile: req.profile,
        store_path: built.out,
        vcpus: req.vcpus,
        mem_mib: req.mem_mib,
        started: node
            .host
            .clock
            .now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    };
    let text = crate::spec::json::file_text(&record);
    if let Err(e) = node.host.files.write_file(&record_path(&dir), &text, 0o600) {
        // Unrecorded, it would be left running untracked.
        let _ = stop(node, &record);
        return Err(e.into());
    }
    Ok(record)
}

fn stop(node: &Node, r: &DevRecord) -> Result<(), AgentError> {
    let f = files(node);
    let grace = std::time::Duration::from_secs(node.config.firecracker.stop_timeout_secs);
    node.host
        .vms
        .stop(r.process(), 0, &r.cgroup, &f.api_sock, grace)?;
    Ok(())
}

/// Stops the developer VM (Ctrl-Alt-Del, then SIGKILL after
/// `firecracker.stop_timeout_secs`, only while the pid is still it) and
/// removes `<state>/dev/`. Returns what ran; `None`: nothing was up.
pub fn down(node: &Node) -> Result<Option<DevRecord>, AgentError> {
    let r = recorded(node)?;
    if let Some(r) = &r {
        stop(node, r)?;
    }
    node.host.files.remove_tree(&node.layout.dev_dir())?;
    Ok(r)
}
