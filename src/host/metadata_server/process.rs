//! The metadata service as a process: started detached, recorded as soon
//! as it exists, stopped only if it is still that process; and the
//! privileges it drops once it listens.

use crate::security::metadata::Policy;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A service process spawned by [`spawn`], not yet known to listen.
pub struct Starting {
    child: std::process::Child,
    pub running: crate::host::ProcessRef,
    log: PathBuf,
}

/// Spawns `<this mvm> metadata serve` detached (its own session, stderr
/// appended to `log`, which must be a regular file with one link, or
/// new). The caller records [`Starting::running`] before waiting for it
/// with [`Starting::ready`], so a crash in between leaves a record the
/// next run can stop, never an orphan.
pub fn spawn(
    listen: &str,
    policy: Policy,
    state_dir: &std::path::Path,
    log: &std::path::Path,
) -> std::io::Result<Starting> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::os::unix::process::CommandExt;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(log)?;
    let meta = out.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file with one link: refusing to append to it",
            log.display()
        )));
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["metadata", "serve", "--listen", listen])
        .arg("--rate")
        .arg(policy.per_sec.to_string())
        .arg("--burst")
        .arg(policy.burst.to_string())
        .args(["--tokens", policy.tokens.as_str()])
        .arg("--state-dir")
        .arg(state_dir)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(out);
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let Some(start_time) = crate::host::vm::vmm::start_time(pid) else {
        let status = child.wait()?;
        return Err(std::io::Error::other(format!(
            "it exited at once ({status}); see {}",
            log.display()
        )));
    };
    Ok(Starting {
        child,
        running: crate::host::ProcessRef { pid, start_time },
        log: log.to_path_buf(),
    })
}

impl Starting {
    /// Waits (5 s at most) until the service says it listens (bound,
    /// privileges dropped) — not until something answers at the address,
    /// which may be another process. On failure the process is gone.
    pub fn ready(mut self) -> std::io::Result<crate::host::ProcessRef> {
        // `None`: nothing within 5 s; `Some("")`: its stdout closed (it exits).
        let said = self.child.stdout.take().and_then(|out| {
            use std::io::BufRead;
            use std::os::fd::AsFd;
            let mut fds = [nix::poll::PollFd::new(
                out.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let polled = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16));
            let mut line = String::new();
            polled.is_ok_and(|n| n > 0).then(|| {
                let _ = std::io::BufReader::new(out).read_line(&mut line);
                line
            })
        });
        let status = match said {
            Some(l) if l.starts_with("listening on ") => return Ok(self.running),
            Some(_) => format!("it exited ({})", self.child.wait()?),
            None => {
                self.abort();
                "it did not listen within 5 s".to_string()
            }
        };
        Err(std::io::Error::other(format!(
            "{status}; see {}",
            self.log.display()
        )))
    }

    /// Kills the process (it was never recorded, or its record is going).
    pub fn abort(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the service if `r` is still that process (an mvm, same start).
pub fn stop(r: crate::host::ProcessRef) -> std::io::Result<()> {
    let same = || {
        crate::host::vm::vmm::start_time(r.pid) == Some(r.start_time)
            && std::fs::read_to_string(format!("/proc/{}/comm", r.pid))
                .is_ok_and(|c| c.trim() == "mvm")
    };
    if !same() {
        return Ok(());
    }
    let pid = nix::unistd::Pid::from_raw(r.pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while same() && !is_zombie(r.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

/// The uid and gid the service runs as once it listens: `nobody`. Not
/// root without capabilities: uid 0 still owns (and may write) every
/// root-owned file. Nothing of the service's is owned by this uid, and the
/// process is not dumpable after the switch, so another `nobody` process
/// can at most signal it (a dead service is drift; reconcile restarts it).
pub const SERVICE_UID: u32 = 65534;

/// Keeps only what the service needs once it listens: reading the state
/// dir (CAP_DAC_READ_SEARCH), as [`SERVICE_UID`] with no supplementary
/// groups; every other capability is dropped from the effective,
/// permitted and bounding sets, and no exec can regain one.
pub(super) fn drop_privileges() -> std::io::Result<()> {
    const CAP_DAC_READ_SEARCH: u32 = 2;
    const LAST_CAP: u32 = 63;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for cap in 0..=LAST_CAP {
            if cap != CAP_DAC_READ_SEARCH {
                // EINVAL past the kernel's last capability: nothing to drop.
                nix::libc::prctl(
                    nix::libc::PR_CAPBSET_DROP,
                    cap as nix::libc::c_ulong,
                    0,
                    0,
                    0,
                );
            }
        }
    }
    // Keep the permitted set across the uid switch; capset below makes
    // the one kept capability effective again.
    // SAFETY: prctl with integer arguments only.
    if unsafe { nix::libc::prctl(nix::libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(SERVICE_UID),
        nix::unistd::Gid::from_raw(SERVICE_UID),
    );
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let keep = 1u32 << CAP_DAC_READ_SEARCH;
    let data = [
        Data {
            effective: keep,
            permitted: keep,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads a valid v3 header and two data structs.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl crate::host::Services for crate::host::linux::LinuxHost {
    fn start_metadata(
        &self,
        listen: &str,
        policy: crate::security::metadata::Policy,
        state_dir: &std::path::Path,
        started: &mut dyn FnMut(crate::host::ProcessRef) -> crate::host::HostResult,
    ) -> crate::host::HostResult<crate::host::ProcessRef> {
        let log = crate::state::StateLayout::new(state_dir).metadata_log();
        let failed = |e| crate::host::HostError::on("start the metadata service at", listen, e);
        let mut s =
            crate::host::metadata_server::spawn(listen, policy, state_dir, &log).map_err(failed)?;
        if let Err(e) = started(s.running) {
            s.abort();
            return Err(e);
        }
        s.ready().map_err(failed)
    }
    fn stop_service(&self, r: crate::host::ProcessRef) -> crate::host::HostResult {
        crate::host::metadata_server::stop(r)
            .map_err(|e| crate::host::HostError::on("stop process", format!("pid {}", r.pid), e))
    }
}
