//! `Files` on the real machine: by fd from the state dir.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown};

use crate::host::fs::beneath::{self, Tree};
use crate::host::{Files, HostError, HostResult};

use super::LinuxHost;

impl Files for LinuxHost {
    fn ensure_dir(&self, base: &Path, rel: &Path, mode: u32, uid: u32, gid: u32) -> HostResult {
        let full = base.join(rel);
        let tree = Tree::open(base).map_err(|e| HostError::new("open", base, e))?;
        tree.rel(&full)
            .map_err(|e| HostError::new("create", &full, e))?;
        let perm = Mode::from_bits_truncate(mode);
        let mut fd = tree
            .dir(Path::new(""))
            .map_err(|e| HostError::new("open", base, e))?;
        let comps: Vec<&OsStr> = rel.iter().collect();
        for (i, name) in comps.iter().enumerate() {
            match mkdirat(&fd, *name, perm) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(HostError::new("create", &full, e)),
            }
            match beneath::child_dir(&fd, name, &full, tree.mount()) {
                Ok(child) => fd = child,
                // A filesystem mounted on the last component (a tenant's
                // secrets tmpfs, a state dir on its own disk) belongs to
                // whoever mounted it: it exists, and its mode is theirs.
                Err(_) if i + 1 == comps.len() && super::mounts::mounted_on(&fd, name) => {
                    return Ok(());
                }
                Err(e) => {
                    return Err(HostError::new("open (no symlinks followed)", &full, e));
                }
            }
        }
        fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| HostError::new("chown", &full, e))?;
        fchmod(&fd, perm).map_err(|e| HostError::new("chmod", &full, e))?;
        Ok(())
    }

    fn remove_tree(&self, path: &Path) -> HostResult {
        let (tree, rel) = self.locate("remove", path)?;
        let (dir, name) = match tree.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HostError::new("remove", path, e)),
        };
        beneath::remove_at(&dir, name, path, tree.mount())
            .map_err(|e| HostError::new("remove", path, e))
    }

    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> HostResult {
        let (tree, rel) = self.locate("write", path)?;
        let (dir, name) = tree
            .parent(rel)
            .map_err(|e| HostError::new("write", path, e))?;
        beneath::write_at(&dir, name, path, data, mode)
    }

    fn rename(&self, from: &Path, to: &Path) -> HostResult {
        let (tree, rel_from) = self.locate("rename", from)?;
        let rel_to = tree.rel(to).map_err(|e| HostError::new("rename", to, e))?;
        let (a, na) = tree
            .parent(rel_from)
            .map_err(|e| HostError::new("rename", from, e))?;
        let (b, nb) = tree
            .parent(rel_to)
            .map_err(|e| HostError::new("rename to", to, e))?;
        nix::fcntl::renameat(&a, na, &b, nb).map_err(|e| HostError::new("rename", from, e))?;
        nix::unistd::fsync(&b).map_err(|e| HostError::new("sync the directory of", to, e))
    }

    fn append_line(&self, path: &Path, line: &[u8]) -> HostResult {
        let (tree, rel) = self.locate("append to", path)?;
        let fd = tree
            .open_at(
                rel,
                OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_NONBLOCK,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| HostError::new("open", path, e))?;
        beneath::check_own_file(&fd, path).map_err(|e| HostError::new("append to", path, e))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(line)
            .and_then(|()| f.sync_data())
            .map_err(|e| HostError::new("append to", path, e))
    }

    fn set_append_only(&self, path: &Path, on: bool) -> HostResult<bool> {
        let Some((fd, _)) = self.open_own(path)? else {
            return Err(HostError::new(
                "set the append-only flag on",
                path,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        };
        match inode_flags::set_append_only(&fd, on) {
            Ok(()) => Ok(true),
            Err(Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::EINVAL) => Ok(false),
            Err(e) => Err(HostError::new("set the append-only flag on", path, e)),
        }
    }

    fn ensure_volume(&self, path: &Path, size: u64, uid: u32, gid: u32) -> HostResult {
        let (tree, rel) = self.locate("create", path)?;
        let (dir, name) = tree
            .parent(rel)
            .map_err(|e| HostError::new("open the directory of", path, e))?;
        if beneath::stat_at(&dir, name, path)
            .map_err(|e| HostError::new("look at", path, e))?
            .is_some()
        {
            return Ok(());
        }
        let mut tmp = name.to_os_string();
        tmp.push(".new");
        // What a crash left half-made.
        let _ = nix::unistd::unlinkat(&dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        let fd = openat(
            &dir,
            tmp.as_os_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| HostError::new("create", path, e))?;
        let f = std::fs::File::from(fd);
        let made = f
            .set_len(size)
            .and_then(|()| crate::host::fs::volume::mkfs_ext4(&f, uid, gid))
            .and_then(|()| {
                fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .and_then(|()| fchmod(&f, Mode::from_bits_truncate(0o600)))
                    .map_err(io::Error::from)
            })
            .and_then(|()| f.sync_all())
            .map_err(|e| HostError::new("make the volume", path, e))
            .and_then(|()| {
                nix::fcntl::renameat(&dir, tmp.as_os_str(), &dir, name)
                    .map_err(|e| HostError::new("put in place", path, e))
            });
        if made.is_err() {
            let _ = nix::unistd::unlinkat(&dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        made?;
        nix::unistd::fsync(&dir).map_err(|e| HostError::new("sync the directory of", path, e))
    }

    fn read(&self, path: &Path, cap: u64) -> HostResult<Option<Vec<u8>>> {
        let Some((fd, _)) = self.open_own(path)? else {
            return Ok(None);
        };
        beneath::read_fd(fd, path, cap)
            .map(Some)
            .map_err(|e| HostError::new("read", path, e))
    }

    fn read_tail(&self, path: &Path, max: u64) -> HostResult<Option<Vec<u8>>> {
        use std::io::{Read, Seek, SeekFrom};
        let Some((fd, len)) = self.open_own(path)? else {
            return Ok(None);
        };
        let err = |e| HostError::new("read", path, e);
        let mut f = std::fs::File::from(fd);
        let take = len.min(max);
        f.seek(SeekFrom::Start(len - take)).map_err(err)?;
        let mut buf = Vec::with_capacity(take as usize);
        f.take(take).read_to_end(&mut buf).map_err(err)?;
        Ok(Some(buf))
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.stat(path).is_some_and(|st| beneath::is_dir(&st))
    }

    fn exists(&self, path: &Path) -> bool {
        self.stat(path).is_some()
    }

    fn list(&self, dir: &Path) -> HostResult<Vec<String>> {
        let tree = self.tree("list")?;
        let rel = tree.rel(dir).map_err(|e| HostError::new("list", dir, e))?;
        let fd = match tree.dir(rel) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostError::new("list", dir, e)),
        };
        Ok(beneath::names(&fd, dir)
            .map_err(|e| HostError::new("list", dir, e))?
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }
}

impl LinuxHost {
    /// What is at `path`, not following a link; `None` when nothing is, or
    /// the way there is not a plain path below the state dir.
    fn stat(&self, path: &Path) -> Option<nix::sys::stat::FileStat> {
        if path == self.state {
            let tree = self.tree("inspect").ok()?;
            return nix::sys::stat::fstat(tree.dir(Path::new("")).ok()?).ok();
        }
        let (tree, rel) = self.locate("inspect", path).ok()?;
        let (dir, name) = tree.parent(rel).ok()?;
        beneath::stat_at(&dir, name, path).ok().flatten()
    }
}

mod inode_flags {
    //! The ext4/xfs/btrfs inode flags ioctl (`chattr +a`).
    use nix::errno::Errno;
    use std::os::fd::AsRawFd;

    const FS_APPEND_FL: nix::libc::c_long = 0x0000_0020;
    nix::ioctl_read!(fs_ioc_getflags, b'f', 1, nix::libc::c_long);
    nix::ioctl_write_ptr!(fs_ioc_setflags, b'f', 2, nix::libc::c_long);

    pub fn set_append_only(f: &impl AsRawFd, on: bool) -> Result<(), Errno> {
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
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

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
        let host = LinuxHost::new(base.path());
        for _ in 0..2 {
            host.ensure_dir(base.path(), Path::new("tenants/acme/jail"), 0o700, uid, gid)
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
        let err = LinuxHost::new(base.path())
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
    /// named. Paths that are not plain components below the state dir are
    /// now refused before anything is touched. The test only ever names
    /// paths inside its own temporary directory, so a regression cannot
    /// reach beyond it.
    #[test]
    fn remove_tree_refuses_paths_that_are_not_plain_or_not_below_the_state_dir() {
        let base = tempfile::tempdir().unwrap();
        let state = base.path().join("state");
        fs::create_dir_all(state.join("a")).unwrap();
        fs::write(base.path().join("keep"), "x").unwrap();
        let host = LinuxHost::new(&state);
        for p in [
            state.join("a/.."),
            state.join("a/../a"),
            PathBuf::from("relative/dir"),
            base.path().join("keep"),
            state.clone(),
        ] {
            let err = host.remove_tree(&p).unwrap_err();
            assert!(err.to_string().contains("refusing"), "{err}");
        }
        assert!(base.path().join("keep").exists() && state.join("a").exists());
    }

    #[test]
    fn remove_tree_removes_a_link_not_its_target() {
        let base = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::write(victim.path().join("keep"), "x").unwrap();
        let link = base.path().join("t");
        std::os::unix::fs::symlink(victim.path(), &link).unwrap();
        LinuxHost::new(base.path()).remove_tree(&link).unwrap();
        assert!(!link.exists() && victim.path().join("keep").exists());
    }

    /// `<state>/tenants` swapped for a link to another directory: nothing
    /// below the link is listed, read, written or removed.
    #[test]
    fn a_linked_tenants_dir_is_never_entered() {
        let base = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::create_dir(victim.path().join("acme")).unwrap();
        fs::write(victim.path().join("acme/audit.log"), "x\n").unwrap();
        std::os::unix::fs::symlink(victim.path(), base.path().join("tenants")).unwrap();
        let host = LinuxHost::new(base.path());
        let t = base.path().join("tenants/acme");
        assert!(host.list(&base.path().join("tenants")).is_err());
        assert!(!host.is_dir(&t) && !host.exists(&t.join("audit.log")));
        assert!(host.read(&t.join("audit.log"), 100).is_err());
        assert!(host.append_line(&t.join("audit.log"), b"y\n").is_err());
        assert!(
            host.write_file(&t.join("tenant.json"), b"{}", 0o600)
                .is_err()
        );
        assert!(host.remove_tree(&t).is_err());
        assert_eq!(
            fs::read(victim.path().join("acme/audit.log")).unwrap(),
            b"x\n"
        );
        assert!(!victim.path().join("acme/tenant.json").exists());
    }

    /// `audit.log` hard-linked to a file elsewhere, or a link to one: that
    /// file is neither appended to, flagged nor read.
    #[test]
    fn hard_links_and_symlinks_in_place_of_own_files_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let other = base.path().join("elsewhere");
        fs::write(&other, "precious\n").unwrap();
        let state = base.path().join("state");
        fs::create_dir(&state).unwrap();
        fs::hard_link(&other, state.join("audit.log")).unwrap();
        std::os::unix::fs::symlink(&other, state.join("link.log")).unwrap();
        let host = LinuxHost::new(&state);
        for name in ["audit.log", "link.log"] {
            let p = state.join(name);
            assert!(host.append_line(&p, b"y\n").is_err(), "{name}");
            assert!(host.set_append_only(&p, true).is_err(), "{name}");
            assert!(host.read(&p, 100).is_err(), "{name}");
            assert!(host.read_tail(&p, 100).is_err(), "{name}");
        }
        assert_eq!(fs::read(&other).unwrap(), b"precious\n");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let base = tempfile::tempdir().unwrap();
        let p = base.path().join("tenant.json");
        nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o600)).unwrap();
        let e = LinuxHost::new(base.path()).read(&p, 100).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn write_file_replaces_atomically_and_leaves_no_temp() {
        let base = tempfile::tempdir().unwrap();
        let host = LinuxHost::new(base.path());
        let p = base.path().join("f.json");
        host.write_file(&p, b"one", 0o600).unwrap();
        host.write_file(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_dir(base.path()).unwrap().count(), 1);
    }
}
