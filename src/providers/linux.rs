//! `LinuxHost`: the capability traits of `host.rs` on the real machine.
//! Directory work goes through directory fds with `O_NOFOLLOW`, so a link
//! planted under the state dir is an error, never followed.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::{Gid, Uid, fchown};

use super::host::{Cgroups, Clock, Files, HostError, HostResult, Mounts, TmpfsOptions};

/// The real host.
#[derive(Debug, Default, Clone)]
pub struct LinuxHost;

fn open_dir_nofollow(dir: impl AsFd, name: &Path) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
}

/// Mount points at or below `path`, from /proc/self/mountinfo.
fn mounts_under(path: &Path) -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(super::mountinfo::parse(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| m.starts_with(path))
        .collect())
}

fn is_mount_point(path: &Path) -> io::Result<bool> {
    Ok(mounts_under(path)?.iter().any(|m| m == path))
}

impl Files for LinuxHost {
    fn ensure_dir(&self, base: &Path, rel: &Path, mode: u32, uid: u32, gid: u32) -> HostResult {
        let full = base.join(rel);
        let err = |action, e: Errno| HostError::new(action, &full, e);
        let mut fd = nix::fcntl::open(
            base,
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| HostError::new("open", base, e))?;
        let comps: Vec<&std::ffi::OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(HostError::new(
                    "create",
                    &full,
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "path must be relative and plain",
                    ),
                )),
            })
            .collect::<Result<_, _>>()?;
        let perm = Mode::from_bits_truncate(mode);
        for name in &comps {
            match mkdirat(&fd, *name, perm) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(err("create", e)),
            }
            // O_NOFOLLOW: a symlink planted here fails with ELOOP/ENOTDIR.
            fd = open_dir_nofollow(&fd, Path::new(name))
                .map_err(|e| err("open (no symlinks followed)", e))?;
        }
        fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| err("chown", e))?;
        fchmod(&fd, perm).map_err(|e| err("chmod", e))?;
        Ok(())
    }

    fn remove_tree(&self, path: &Path) -> HostResult {
        // Only plain absolute paths below the root: `a/..` would make the
        // mount check below (a prefix match) blind, and the root itself is
        // never anything mvm owns.
        let plain = path.is_absolute()
            && path
                .components()
                .skip(1)
                .all(|c| matches!(c, Component::Normal(_)))
            && path.components().count() >= 3;
        if !plain {
            return Err(HostError::new(
                "remove",
                path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "refusing: not a plain absolute path at least two levels deep",
                ),
            ));
        }
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HostError::new("inspect", path, e)),
            Ok(m) if m.file_type().is_symlink() => {
                return fs::remove_file(path).map_err(|e| HostError::new("remove", path, e));
            }
            Ok(_) => {}
        }
        let mounts =
            mounts_under(path).map_err(|e| HostError::new("read mounts under", path, e))?;
        if let Some(m) = mounts.first() {
            return Err(HostError::new(
                "remove",
                path,
                io::Error::other(format!(
                    "{} is still mounted; unmount it first",
                    m.display()
                )),
            ));
        }
        // std's remove_dir_all does not follow symlinks (it uses
        // openat/unlinkat), so a planted link cannot redirect the delete.
        match fs::remove_dir_all(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(HostError::new("remove", path, e)),
            _ => Ok(()),
        }
    }

    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> HostResult {
        super::store::write_atomic(path, data, mode)
            .map_err(|e| HostError::new("write", path, io::Error::other(e.to_string())))
    }

    fn rename(&self, from: &Path, to: &Path) -> HostResult {
        fs::rename(from, to).map_err(|e| HostError::new("rename", from, e))
    }

    fn append_line(&self, path: &Path, line: &[u8]) -> HostResult {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| HostError::new("open", path, e))?;
        f.write_all(line)
            .and_then(|()| f.sync_data())
            .map_err(|e| HostError::new("append to", path, e))
    }

    fn set_append_only(&self, path: &Path, on: bool) -> HostResult<bool> {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| HostError::new("open", path, e))?;
        match inode_flags::set_append_only(&f, on) {
            Ok(()) => Ok(true),
            Err(Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::EINVAL) => Ok(false),
            Err(e) => Err(HostError::new("set the append-only flag on", path, e)),
        }
    }

    fn read(&self, path: &Path, cap: u64) -> HostResult<Option<Vec<u8>>> {
        super::store::read_capped(path, cap).map_err(|e| HostError::new("read", path, e))
    }

    fn read_tail(&self, path: &Path, max: u64) -> HostResult<Option<Vec<u8>>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(HostError::new("open", path, e)),
        };
        let err = |e| HostError::new("read", path, e);
        let meta = f.metadata().map_err(err)?;
        if !meta.is_file() {
            return Err(HostError::other("read", path, "not a regular file"));
        }
        let take = meta.len().min(max);
        f.seek(SeekFrom::Start(meta.len() - take)).map_err(err)?;
        let mut buf = Vec::with_capacity(take as usize);
        f.take(take).read_to_end(&mut buf).map_err(err)?;
        Ok(Some(buf))
    }

    fn is_dir(&self, path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn exists(&self, path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    fn list(&self, dir: &Path) -> HostResult<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostError::new("list", dir, e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }
}

impl Cgroups for LinuxHost {
    fn cgroup_create(&self, root: &Path, rel: &Path, controllers: &[&str]) -> HostResult {
        let enable: String = controllers.iter().map(|c| format!("+{c} ")).collect();
        // A prune of the last other tenant may remove an empty parent
        // between our mkdirs: start again from the root a few times.
        let mut attempts = 0;
        'again: loop {
            attempts += 1;
            let mut dir = root.to_path_buf();
            for comp in rel.components() {
                // Controllers must be enabled in the parent before the
                // child can use them.
                if !enable.is_empty() {
                    match write_cgroup_file(&dir.join("cgroup.subtree_control"), enable.trim_end())
                    {
                        Err(e) if e.source.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                            continue 'again;
                        }
                        other => other?,
                    }
                }
                dir.push(comp.as_os_str());
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                        continue 'again;
                    }
                    Err(e) => return Err(HostError::new("create cgroup", &dir, e)),
                }
            }
            return Ok(());
        }
    }

    fn cgroup_write(&self, dir: &Path, file: &str, value: &str) -> HostResult {
        write_cgroup_file(&dir.join(file), value)
    }

    fn cgroup_remove(&self, dir: &Path) -> HostResult {
        if !dir.exists() {
            return Ok(());
        }
        // Children first (a jailer or a human may have made some).
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.cgroup_remove(&e.path())?;
                }
            }
        }
        let freeze = dir.join("cgroup.freeze");
        if freeze.exists() {
            let _ = write_cgroup_file(&freeze, "1");
        }
        let kill = dir.join("cgroup.kill");
        if kill.exists() {
            write_cgroup_file(&kill, "1")?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_millis(10);
        loop {
            let populated = fs::read_to_string(dir.join("cgroup.events"))
                .map(|s| s.lines().any(|l| l.trim() == "populated 1"))
                .unwrap_or(false);
            if !populated {
                match fs::remove_dir(dir) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) if Instant::now() >= deadline => {
                        return Err(HostError::new("remove cgroup", dir, e));
                    }
                    Err(_) => {}
                }
            } else if Instant::now() >= deadline {
                return Err(HostError::new(
                    "remove cgroup",
                    dir,
                    io::Error::other("processes are still in it 10 s after cgroup.kill"),
                ));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    fn cgroup_remove_if_unused(&self, dir: &Path) -> HostResult {
        match fs::remove_dir(dir) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOENT | nix::libc::ENOTEMPTY | nix::libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(HostError::new("remove cgroup", dir, e)),
        }
    }
}

impl Mounts for LinuxHost {
    fn mount_tmpfs(&self, target: &Path, opts: &TmpfsOptions) -> HostResult {
        use nix::mount::{MsFlags, mount};
        let data = format!("size={},mode={}", opts.size, opts.mode);
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if is_mount_point(target).map_err(|e| HostError::new("read mounts for", target, e))? {
            flags |= MsFlags::MS_REMOUNT;
        }
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|e| HostError::new("mount tmpfs on", target, e))
    }

    fn unmount(&self, target: &Path) -> HostResult {
        use nix::mount::{MntFlags, umount2};
        // UMOUNT_NOFOLLOW: never unmount where a planted link points.
        loop {
            match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) => continue, // stacked mounts: unmount them all
                Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(HostError::new("unmount", target, e)),
            }
        }
    }
}

impl Clock for LinuxHost {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Writes a cgroup interface file as `echo value > file` does: never
/// creates it, one write ending in a newline — an empty value must still
/// reach the kernel (a zero-length write would not), to reset
/// `cpuset.cpus`, say.
fn write_cgroup_file(path: &Path, value: &str) -> HostResult {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| HostError::new("open", path, e))?;
    f.write_all(format!("{value}\n").as_bytes())
        .map_err(|e| HostError::new("write", path, e))
}

mod inode_flags {
    //! The ext4/xfs/btrfs inode flags ioctl (`chattr +a`).
    use nix::errno::Errno;
    use std::os::fd::AsRawFd;

    const FS_APPEND_FL: nix::libc::c_long = 0x0000_0020;
    nix::ioctl_read!(fs_ioc_getflags, b'f', 1, nix::libc::c_long);
    nix::ioctl_write_ptr!(fs_ioc_setflags, b'f', 2, nix::libc::c_long);

    pub fn set_append_only(f: &std::fs::File, on: bool) -> Result<(), Errno> {
        let mut flags: nix::libc::c_long = 0;
        // SAFETY: the fd is open for the duration of the call and `flags`
        // is a valid, writable c_long the kernel fills in.
        unsafe { fs_ioc_getflags(f.as_raw_fd(), &mut flags) }?;
        let new = if on {
            flags | FS_APPEND_FL
        } else {
            flags & !FS_APPEND_FL
        };
        if new != flags {
            // SAFETY: as above; the kernel only reads `new`.
            unsafe { fs_ioc_setflags(f.as_raw_fd(), &new) }?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn me() -> (u32, u32) {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }

    #[test]
    fn ensure_dir_creates_sets_mode_and_is_idempotent() {
        let base = tempfile::tempdir().unwrap();
        let (uid, gid) = me();
        for _ in 0..2 {
            LinuxHost
                .ensure_dir(base.path(), Path::new("tenants/acme/jail"), 0o700, uid, gid)
                .unwrap();
        }
        let m = fs::metadata(base.path().join("tenants/acme/jail")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o700);
        assert_eq!(m.uid(), uid);
    }

    #[test]
    fn ensure_dir_never_follows_a_planted_symlink() {
        let base = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::set_permissions(victim.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(base.path().join("tenants")).unwrap();
        std::os::unix::fs::symlink(victim.path(), base.path().join("tenants/acme")).unwrap();
        let (uid, gid) = me();
        let err = LinuxHost
            .ensure_dir(base.path(), Path::new("tenants/acme/jail"), 0o700, uid, gid)
            .unwrap_err();
        assert!(err.to_string().contains("no symlinks followed"), "{err}");
        // The link's target was neither entered nor changed.
        assert!(!victim.path().join("jail").exists());
        assert_eq!(
            fs::metadata(victim.path()).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    /// A bug fixed: `remove_tree("/x/..")` once got past the mount check
    /// (a prefix match on the unnormalised path) and removed what `..`
    /// named. Paths with `.`/`..`, relative paths and shallow paths are now
    /// refused before anything is touched. The test only ever names paths
    /// inside its own temporary directory, so a regression cannot reach
    /// beyond it.
    #[test]
    fn remove_tree_refuses_paths_that_are_not_plain() {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("a")).unwrap();
        fs::write(base.path().join("keep"), "x").unwrap();
        for p in [
            base.path().join("a/.."),
            base.path().join("a/../a"),
            PathBuf::from("relative/dir"),
        ] {
            let err = LinuxHost.remove_tree(&p).unwrap_err();
            assert!(err.to_string().contains("refusing"), "{err}");
        }
        assert!(base.path().join("keep").exists() && base.path().join("a").exists());
    }

    #[test]
    fn remove_tree_removes_a_link_not_its_target() {
        let base = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::write(victim.path().join("keep"), "x").unwrap();
        let link = base.path().join("t");
        std::os::unix::fs::symlink(victim.path(), &link).unwrap();
        LinuxHost.remove_tree(&link).unwrap();
        assert!(!link.exists() && victim.path().join("keep").exists());
    }
}
