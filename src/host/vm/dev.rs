//! The developer VM's process (`mvm dev`): Firecracker launched directly,
//! its serial console on a file and a FIFO, stopped like a tenant's VM —
//! only while the pid is still that process.

use super::vmm;
use crate::host::ProcessRef;
use crate::host::fs::beneath::Tree;
use crate::security::jailer::DevLaunch;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts it detached (its own session), stdin the console FIFO (made
/// here, opened read-write so Firecracker never sees its end), stdout the
/// console file; waits until its API answers. The cgroup it runs in (this
/// process's: it has none of its own) is returned for `stop`'s check.
pub fn launch(d: &DevLaunch, tree: &Tree, wait: Duration) -> io::Result<(ProcessRef, String)> {
    match nix::unistd::mkfifo(
        &d.console_in,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let input = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&d.console_in)?;
    if !std::os::unix::fs::FileTypeExt::is_fifo(&input.metadata()?.file_type()) {
        return Err(io::Error::other(format!(
            "{} is not a FIFO: refusing to use it as the console's input",
            d.console_in.display()
        )));
    }
    let (program, args) = crate::security::jailer::dev_argv(d);
    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .env_clear()
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(vmm::append_to(&d.console)?))
        .stderr(Stdio::from(vmm::append_to(&d.log)?));
    let mut child = vmm::spawn_detached(&mut cmd)?;
    let pid = child.id();
    let start_time =
        vmm::start_time(pid).ok_or_else(|| io::Error::other("Firecracker exited at once"))?;
    let api = vmm::Api {
        tree,
        sock: &d.api_sock,
        peer: vmm::Peer {
            pid,
            uid: nix::unistd::geteuid().as_raw(),
        },
    };
    vmm::wait_for_api(&mut child, &program, &api, wait)
        .map_err(|e| io::Error::other(format!("{e}: {}", vmm::last_lines(&d.log))))?;
    let cgroup = vmm::cgroup_of(pid).unwrap_or_default();
    drop(child);
    Ok((ProcessRef { pid, start_time }, cgroup))
}

/// Whether `r` is still that process, running as root.
pub fn running(r: ProcessRef) -> bool {
    vmm::is_same(r, 0)
}

/// Its API answers (`GET /`), through the socket checked as a tenant's is.
pub fn answers(tree: &Tree, d: &DevLaunch, r: ProcessRef) -> bool {
    vmm::api_get(
        tree,
        &d.api_sock,
        vmm::Peer { pid: r.pid, uid: 0 },
        Duration::from_millis(500),
    )
    .is_ok()
}
