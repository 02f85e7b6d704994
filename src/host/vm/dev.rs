//! The developer VM's process (`mvm dev`): Firecracker launched directly,
//! its serial console on a file and a FIFO, stopped like a tenant's VM —
//! only while the pid is still that process.

use crate::host::ProcessRef;
use crate::host::fs::beneath::Tree;
use crate::security::jailer::DevLaunch;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let open = |p: &std::path::Path, read: bool| {
        std::fs::OpenOptions::new()
            .read(read)
            .write(true)
            .append(!read)
            .create(!read)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(p)
    };
    let input = open(&d.console_in, true)?;
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
        .stdout(Stdio::from(open(&d.console, false)?))
        .stderr(Stdio::from(open(&d.log, false)?));
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let start_time = super::vmm::start_time(pid)
        .ok_or_else(|| io::Error::other("Firecracker exited at once"))?;
    let peer = super::vmm::Peer {
        pid,
        uid: nix::unistd::geteuid().as_raw(),
    };
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait()? {
            // Its last lines say why (at most 64 KiB of it is read).
            let bytes = tail_of(&d.log, 64 << 10).unwrap_or_default();
            let log = String::from_utf8_lossy(&bytes);
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            return Err(io::Error::other(format!(
                "{} exited ({status}) before its API answered: {}",
                program.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )));
        }
        if super::vmm::api_get(tree, &d.api_sock, peer, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "its API did not answer within {} s",
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?
        .lines()
        .find_map(|l| l.strip_prefix("0::/"))
        .unwrap_or_default()
        .to_string();
    drop(child);
    Ok((ProcessRef { pid, start_time }, cgroup))
}

/// The last `max` bytes of the file at `p` (mvm's own, in `<state>/dev/`).
fn tail_of(p: &std::path::Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(p)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Whether `r` is still that process, running as root.
pub fn running(r: ProcessRef) -> bool {
    super::vmm::is_same(r, 0)
}

/// Its API answers (`GET /`), through the socket checked as a tenant's is.
pub fn answers(tree: &Tree, d: &DevLaunch, r: ProcessRef) -> bool {
    super::vmm::api_get(
        tree,
        &d.api_sock,
        super::vmm::Peer { pid: r.pid, uid: 0 },
        Duration::from_millis(500),
    )
    .is_ok()
}
