//! The node lock on the real machine: an exclusive `flock` on
//! `<state>/lock`, which names its holder for whoever waits.

use crate::host::fs::beneath;
use crate::host::linux::LinuxHost;
use crate::host::{HostError, LockError, Locks, NodeLock};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The node lock: one reconcile at a time. Held for the life of the value;
/// the kernel drops it if the process dies, so a crash never leaves a stale
/// lock. The file names its holder for whoever waits: written after the
/// lock is taken, emptied before it is released.
struct Held {
    lock: Flock<File>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.lock.set_len(0);
    }
}

/// Who holds the lock, from what the file says — unless the pid it names
/// is gone (the file outlived an mvm that was killed, and someone else
/// holds the lock now).
fn describe_holder(text: &str) -> String {
    let text = text.trim();
    let pid = text
        .strip_prefix("pid ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<i32>().ok());
    match pid {
        None => "a process that did not name itself (not mvm?)".to_string(),
        Some(pid)
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH) =>
        {
            format!(
                "a process that did not name itself (not mvm?); the lock file still names pid {pid}, which has exited"
            )
        }
        Some(_) => text.to_string(),
    }
}

impl Locks for LinuxHost {
    /// Polls with backoff (50 ms doubling to 1 s) until `timeout`.
    fn node_lock(
        &self,
        path: &Path,
        command: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<NodeLock, LockError> {
        let start = Instant::now();
        let mut told = false;
        let mut delay = Duration::from_millis(50);
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
                .open(path)
                .map_err(|e| HostError::new("open", path, e))?;
            // The holder is written into it: it must be mvm's own file,
            // not a hard link to one elsewhere.
            beneath::check_own_file(&file, path).map_err(|e| HostError::new("use", path, e))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    let info = format!(
                        "pid {} ({command}), since {}\n",
                        std::process::id(),
                        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
                    );
                    lock.set_len(0)
                        .and_then(|()| lock.write_all(info.as_bytes()))
                        .map_err(|e| HostError::new("write", path, e))?;
                    return Ok(NodeLock::new(Held { lock }));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    let holder = describe_holder(&fs::read_to_string(path).unwrap_or_default());
                    if start.elapsed() >= timeout {
                        return Err(LockError::Held {
                            path: path.to_path_buf(),
                            holder,
                        });
                    }
                    if !told {
                        told = true;
                        waiting(&holder);
                    }
                    std::thread::sleep(delay.min(timeout.saturating_sub(start.elapsed())));
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err((_, e)) => return Err(HostError::new("lock", path, e).into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn acquire(
        p: &Path,
        command: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<NodeLock, LockError> {
        LinuxHost::new(p.parent().unwrap()).node_lock(p, command, timeout, waiting)
    }

    #[test]
    fn second_lock_waits_then_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let _held = acquire(&p, "mvm agent reconcile", Duration::ZERO, &mut |_| {}).unwrap();
        let mut told = String::new();
        let e = acquire(&p, "other", Duration::from_millis(200), &mut |h| {
            told = h.to_string()
        })
        .err()
        .unwrap();
        assert!(
            told.contains(&format!("pid {}", std::process::id())),
            "{told}"
        );
        assert!(e.to_string().contains("mvm agent reconcile"), "{e}");
    }

    #[test]
    fn the_holder_is_cleared_on_release_and_a_dead_pid_is_not_named_as_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        drop(acquire(&p, "mvm agent reconcile", Duration::ZERO, &mut |_| {}).unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), "");
        // A non-mvm process holds it; the file names an mvm long gone.
        fs::write(
            &p,
            "pid 2147483646 (mvm agent reconcile), since 2026-01-01T00:00:00Z\n",
        )
        .unwrap();
        let f = fs::File::open(&p).unwrap();
        let _other = Flock::lock(f, FlockArg::LockExclusiveNonblock).unwrap();
        let e = acquire(&p, "x", Duration::ZERO, &mut |_| {})
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("did not name itself") && e.contains("has exited"),
            "{e}"
        );
        assert!(describe_holder("").contains("did not name itself"));
    }

    #[test]
    fn a_hard_linked_lock_file_is_refused_not_truncated() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("precious"), "data").unwrap();
        fs::hard_link(d.path().join("precious"), d.path().join("lock")).unwrap();
        let e = acquire(&d.path().join("lock"), "x", Duration::ZERO, &mut |_| {})
            .err()
            .unwrap();
        assert!(e.to_string().contains("hard links"), "{e}");
        assert_eq!(
            fs::read_to_string(d.path().join("precious")).unwrap(),
            "data"
        );
    }
}
