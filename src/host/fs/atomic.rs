//! The one atomic writer (a temporary file, fsync, rename, fsync of the
//! directory — from a directory fd, for the state tree and the operator's
//! output alike) and capped reads of a file mvm owns.

use super::beneath::names;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The name prefix of the temporary files the writer of `name` makes
/// (`.<name>.tmp.<pid>`), which a later writer or sweep removes.
pub fn temp_prefix(name: &OsStr) -> String {
    format!(".{}.tmp.", name.to_string_lossy())
}

/// Writes `data` to `name` in `dir` atomically: an exclusive temporary
/// file, fsync, rename over the target, fsync of the directory. Temporary
/// files of writers that crashed are removed first (the node lock means no
/// other writer of this file runs).
pub fn write_at(
    dir: &OwnedFd,
    name: &OsStr,
    path: &Path,
    data: &[u8],
    mode: u32,
) -> crate::host::HostResult {
    use crate::host::HostError;
    use nix::fcntl::openat;
    use nix::sys::stat::fchmod;
    use nix::unistd::UnlinkatFlags;
    use std::io::Write;
    let prefix = temp_prefix(name);
    for stale in names(dir, path).map_err(|e| HostError::new("list", path, e))? {
        if stale.to_string_lossy().starts_with(&prefix) {
            let _ = nix::unistd::unlinkat(dir, stale.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
    let tmp = format!("{prefix}{}", std::process::id());
    let perm = Mode::from_bits_truncate(mode);
    let fd = openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        perm,
    )
    .map_err(|e| HostError::new("create a temporary file for", path, e))?;
    let mut f = std::fs::File::from(fd);
    let result = fchmod(&f, perm)
        .map_err(io::Error::from)
        .and_then(|()| f.write_all(data))
        .and_then(|()| f.sync_all())
        .map_err(|e| HostError::new("write", path, e))
        .and_then(|()| {
            nix::fcntl::renameat(dir, tmp.as_str(), dir, name)
                .map_err(|e| HostError::new("replace", path, e))
        });
    if result.is_err() {
        let _ = nix::unistd::unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    result?;
    nix::unistd::fsync(dir).map_err(|e| HostError::new("sync the directory of", path, e))
}

/// Reads a file mvm owns (regular, one link) without following a link or
/// blocking, at most `cap` bytes (more is an error: state files are small,
/// and a planted huge file must not exhaust memory). `Ok(None)` when it
/// does not exist.
pub fn read_own_file(path: &Path, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    crate::host::fs::beneath::check_own_file(&f, path)?;
    crate::host::fs::beneath::read_fd(f.into(), path, cap).map(Some)
}
