//! Durable state files on the real host: atomic writes,
//! capped reads, the node id and the node lock. The formats live in
//! `state/`; this is where they meet the filesystem.
//!
//! A write goes to a temporary file in the same directory (created
//! exclusively, never through a link), is fsynced, renamed over the target
//! and the directory fsynced, so a crash leaves either the old or the new
//! file, never a torn one. A file that cannot be parsed, or was written by a
//! newer mvm, is an error naming the file: never a silent reset.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("the node lock {} is held by {holder}", path.display())]
    Locked { path: PathBuf, holder: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.tmp.");
    // Temp files of writers that crashed before their rename are garbage:
    // the node lock means no other writer of this file is running.
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    let result = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err("write", &tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("replace", path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

/// Reads a small state file in the state dir's root (regular, one link, no
/// link followed, capped); `Ok(None)` when it does not exist.
pub fn read_state_file(path: &Path, cap: u64) -> io::Result<Option<Vec<u8>>> {
    read_capped(path, cap)
}

/// Reads the node's identity (`<state>/node-id`); `Ok(None)` before the
/// first reconcile created it.
pub fn read_node_id(path: &Path) -> Result<Option<String>, StoreError> {
    let s = match read_capped(path, 4096) {
        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(None) => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let id = s.trim().to_string();
    if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            message: "is not a 32-digit hex node id".into(),
        });
    }
    Ok(Some(id))
}

/// The node's stable identity at `path` (`<state>/node-id`), created once.
pub fn ensure_node_id(path: &Path) -> Result<String, StoreError> {
    if let Some(id) = read_node_id(path)? {
        return Ok(id);
    }
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err("read", Path::new("/dev/urandom")))?;
    let id = crate::digest::hex(&bytes);
    write_atomic(path, format!("{id}\n").as_bytes(), 0o644)?;
    Ok(id)
}

/// Reads a file mvm owns (regular, one link) without following a link or
/// blocking, at most `cap` bytes (more is an error: state files are small,
/// and a planted huge file must not exhaust memory). `Ok(None)` when it
/// does not exist.
fn read_capped(path: &Path, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    crate::host::fs::beneath::check_own_file(&f, path)?;
    crate::host::fs::beneath::read_fd(f.into(), path, cap).map(Some)
}

/// The node lock: one reconcile at a time. Held for the life of the value;
/// the kernel drops it if the process dies, so a crash never leaves a stale
/// lock. The file names its holder for whoever waits: written after the
/// lock is taken, emptied before it is released.
pub struct NodeLock {
    lock: Flock<File>,
}

impl Drop for NodeLock {
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

impl NodeLock {
    /// Takes the lock, waiting up to `timeout` (polling with backoff) and
    /// telling `waiting` once who holds it.
    pub fn acquire(
        path: &Path,
        command: &str,
        timeout: Duration,
        waiting: impl FnOnce(&str),
    ) -> Result<Self, StoreError> {
        let start = Instant::now();
        let mut waiting = Some(waiting);
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
                .map_err(io_err("open", path))?;
            // The holder is written into it: it must be mvm's own file,
            // not a hard link to one elsewhere.
            crate::host::fs::beneath::check_own_file(&file, path).map_err(io_err("use", path))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    let info = format!(
                        "pid {} ({command}), since {}\n",
                        std::process::id(),
                        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
                    );
                    lock.set_len(0)
                        .and_then(|()| lock.write_all(info.as_bytes()))
                        .map_err(io_err("write", path))?;
                    return Ok(Self { lock });
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    let holder = describe_holder(&fs::read_to_string(path).unwrap_or_default());
                    if start.elapsed() >= timeout {
                        return Err(StoreError::Locked {
                            path: path.to_path_buf(),
                            holder,
                        });
                    }
                    if let Some(w) = waiting.take() {
                        w(&holder);
                    }
                    std::thread::sleep(delay.min(timeout.saturating_sub(start.elapsed())));
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err((_, e)) => return Err(io_err("lock", path)(e.into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn node_id_is_created_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("node-id");
        assert_eq!(read_node_id(&p).unwrap(), None);
        let a = ensure_node_id(&p).unwrap();
        assert_eq!(a, ensure_node_id(&p).unwrap());
        assert_eq!(read_node_id(&p).unwrap(), Some(a.clone()));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn second_lock_waits_then_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let _held = NodeLock::acquire(&p, "mvm agent reconcile", Duration::ZERO, |_| {}).unwrap();
        let mut told = String::new();
        let e = NodeLock::acquire(&p, "other", Duration::from_millis(200), |h| {
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
        drop(NodeLock::acquire(&p, "mvm agent reconcile", Duration::ZERO, |_| {}).unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), "");
        // A non-mvm process holds it; the file names an mvm long gone.
        fs::write(
            &p,
            "pid 2147483646 (mvm agent reconcile), since 2026-01-01T00:00:00Z\n",
        )
        .unwrap();
        let f = fs::File::open(&p).unwrap();
        let _other = Flock::lock(f, FlockArg::LockExclusiveNonblock).unwrap();
        let e = NodeLock::acquire(&p, "x", Duration::ZERO, |_| {})
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
        let e = NodeLock::acquire(&d.path().join("lock"), "x", Duration::ZERO, |_| {})
            .err()
            .unwrap();
        assert!(e.to_string().contains("hard links"), "{e}");
        assert_eq!(
            fs::read_to_string(d.path().join("precious")).unwrap(),
            "data"
        );
    }
}
