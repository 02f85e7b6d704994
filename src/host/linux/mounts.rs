//! `Mounts` on the real machine: tmpfs mounts and the jail root, on
//! fd-verified directories.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Gid, Uid, fchown};

use crate::host::fs::beneath::{self};
use crate::host::{HostError, HostResult, JailStage, Mounts, TmpfsOptions};

use super::LinuxHost;

impl Mounts for LinuxHost {
    fn mount_tmpfs(&self, target: &Path, opts: &TmpfsOptions) -> HostResult {
        use nix::mount::{MsFlags, mount};
        let (tree, rel) = self.locate("mount tmpfs on", target)?;
        let (parent, name) = tree
            .parent(rel)
            .map_err(|e| HostError::new("mount tmpfs on", target, e))?;
        let dir = mount_point(&parent, name, target)?;
        let mounted = mounted_on(&parent, name);
        let data = format!("size={},mode={}", opts.size, opts.mode);
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if mounted {
            flags |= MsFlags::MS_REMOUNT;
        }
        // The fd's /proc name is the directory just verified, whatever the
        // path says by now.
        let at = format!("/proc/self/fd/{}", dir.as_raw_fd());
        mount(
            Some("tmpfs"),
            at.as_str(),
            Some("tmpfs"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|e| HostError::new("mount tmpfs on", target, e))?;
        drop(dir);
        // tmpfs takes `mode=` only when mounted, not on a remount: set the
        // root's mode and owner on the mounted root itself.
        let top = mount_point(&parent, name, target)?;
        let mode = u32::from_str_radix(&opts.mode, 8).map_err(|_| {
            HostError::other(
                "mount tmpfs on",
                target,
                format!("mode {:?} is not octal", opts.mode),
            )
        })?;
        fchown(&top, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
            .and_then(|()| fchmod(&top, Mode::from_bits_truncate(mode)))
            .map_err(|e| HostError::new("set the mode of", target, e))
    }

    fn tmpfs_file(&self, dir: &Path, name: &str, size: u64, gid: u32) -> HostResult {
        let (tree, rel) = self.locate("create", dir)?;
        let (parent, last) = tree
            .parent(rel)
            .map_err(|e| HostError::new("open", dir, e))?;
        if !mounted_on(&parent, last) {
            return Err(HostError::other(
                "create a file in",
                dir,
                "nothing is mounted there",
            ));
        }
        let top = mount_point(&parent, last, dir)?;
        let path = dir.join(name);
        let fd = match openat(
            &top,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o640),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => return Ok(()),
            Err(e) => return Err(HostError::new("create", &path, e)),
        };
        let f = std::fs::File::from(fd);
        f.set_len(size)
            .map_err(|e| HostError::new("size", &path, e))?;
        fchown(&f, Some(Uid::from_raw(0)), Some(Gid::from_raw(gid)))
            .and_then(|()| fchmod(&f, Mode::from_bits_truncate(0o640)))
            .map_err(|e| HostError::new("set the owner of", &path, e))
    }

    fn stage_jail(&self, stage: &JailStage) -> HostResult {
        use nix::mount::{MsFlags, mount};
        let root = &stage.root;
        let (tree, rel) = self.locate("make the jail", root)?;
        let (parent, name) = tree
            .parent(rel)
            .map_err(|e| HostError::new("make the jail", root, e))?;
        if mounted_on(&parent, name) {
            return Err(HostError::other(
                "make the jail",
                root,
                "refusing: something is mounted there already (the previous jail was not removed)",
            ));
        }
        let dir = mount_point(&parent, name, root)?;
        // Exec and devices stay: the jailer copies Firecracker in and
        // makes /dev/kvm and /dev/net/tun there. Only the size and inode
        // count are the point: all the tenant can ever write.
        let data = format!("size={},nr_inodes={},mode=0700", stage.size, stage.inodes);
        let at = format!("/proc/self/fd/{}", dir.as_raw_fd());
        mount(
            Some("tmpfs"),
            at.as_str(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some(data.as_str()),
        )
        .map_err(|e| HostError::new("mount the jail's tmpfs on", root, e))?;
        drop(dir);
        let top = mount_point(&parent, name, root)?;
        if beneath::mount_of(&top).ok() == beneath::mount_of(&parent).ok() {
            return Err(HostError::other(
                "make the jail",
                root,
                "the jail's tmpfs is not there after mounting it",
            ));
        }
        for d in &stage.dirs {
            nix::sys::stat::mkdirat(&top, d.as_str(), Mode::from_bits_truncate(0o700))
                .map_err(|e| HostError::new("create", &root.join(d), e))?;
        }
        for (f, bytes, mode) in &stage.files {
            let path = root.join(f);
            let fd = openat(
                &top,
                f.as_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(*mode),
            )
            .map_err(|e| HostError::new("create", &path, e))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)
                .map_err(|e| HostError::new("write", &path, e))?;
            fchmod(&file, Mode::from_bits_truncate(*mode))
                .map_err(|e| HostError::new("set the mode of", &path, e))?;
        }
        for (f, src, writable) in &stage.binds {
            let path = root.join(f);
            let source = self.open_source(src)?;
            let target = openat(
                &top,
                f.as_str(),
                OFlag::O_RDONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| HostError::new("create the mount point", &path, e))?;
            let from = format!("/proc/self/fd/{}", source.as_raw_fd());
            let onto = format!("/proc/self/fd/{}", target.as_raw_fd());
            mount(
                Some(from.as_str()),
                onto.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| HostError::new("bind-mount onto", &path, e))?;
            drop(target);
            let mounted = openat(
                &top,
                f.as_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| HostError::new("open", &path, e))?;
            let mut flags = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC;
            if !writable {
                flags |= MsFlags::MS_RDONLY;
            }
            let at = format!("/proc/self/fd/{}", mounted.as_raw_fd());
            mount(None::<&str>, at.as_str(), None::<&str>, flags, None::<&str>)
                .map_err(|e| HostError::new("set the flags of the bind mount on", &path, e))?;
        }
        Ok(())
    }

    fn unstage_jail(&self, root: &Path) -> HostResult {
        let (tree, rel) = self.locate("remove the jail", root)?;
        let (parent, name) = match tree.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HostError::new("remove the jail", root, e)),
        };
        if !mounted_on(&parent, name) {
            return Ok(());
        }
        let top = mount_point(&parent, name, root)?;
        // The bind mounts mvm made in it (the tenant cannot mount).
        for entry in beneath::names(&top, root).map_err(|e| HostError::new("list", root, e))? {
            unmount_at(&top, &entry, &root.join(&entry))?;
        }
        drop(top);
        unmount_at(&parent, name, root)
    }

    fn unmount(&self, target: &Path) -> HostResult {
        let (tree, rel) = self.locate("unmount", target)?;
        let (parent, name) = match tree.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HostError::new("unmount", target, e)),
        };
        unmount_at(&parent, name, target)
    }
}

impl LinuxHost {
    /// Opens `path` with O_PATH, never through a link: below the state dir
    /// from the tree's fd (crossing only into a tenant's secrets tmpfs, a
    /// mount mvm made), elsewhere (the Nix store) from the root.
    fn open_source(&self, path: &Path) -> HostResult<OwnedFd> {
        let tree = self.tree("open")?;
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let Ok(rel) = tree.rel(path) else {
            return nix::fcntl::open(path, flags, Mode::empty())
                .map_err(|e| HostError::new("open", path, e));
        };
        // tenants/<id>/secrets/<file> and tenants/<id>/secrets/gen-<n>/<file>:
        // through the tmpfs mount, no link followed.
        let comps: Vec<&OsStr> = rel.iter().collect();
        if (4..=5).contains(&comps.len()) && comps[0] == "tenants" && comps[2] == "secrets" {
            let tenant = tree
                .dir(&Path::new("tenants").join(comps[1]))
                .map_err(|e| HostError::new("open", path, e))?;
            let mut dir = mount_point(&tenant, comps[2], path)?;
            for c in &comps[3..comps.len() - 1] {
                dir = openat(
                    &dir,
                    *c,
                    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| HostError::new("open", path, e))?;
            }
            return openat(&dir, comps[comps.len() - 1], flags, Mode::empty())
                .map_err(|e| HostError::new("open", path, e));
        }
        tree.open_at(rel, OFlag::O_PATH, Mode::empty())
            .map_err(|e| HostError::new("open", path, e))
    }
}

/// Unmounts everything stacked on `name` in `parent`. Only what is
/// mounted on this very directory entry goes: the path is anchored at the
/// verified parent's fd, and UMOUNT_NOFOLLOW refuses a link in its place.
/// A process that was just killed may hold it open a moment longer while
/// the kernel tears it down: that is waited for (2 s), then it is detached.
fn unmount_at(parent: &OwnedFd, name: &OsStr, target: &Path) -> HostResult {
    use nix::mount::{MntFlags, umount2};
    let at = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
    let mut busy = 0;
    while mounted_on(parent, name) {
        match umount2(&at, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::EBUSY) if busy < 40 => {
                busy += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(Errno::EBUSY) => {
                umount2(&at, MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH)
                    .map_err(|e| HostError::new("detach", target, e))?;
            }
            Err(e) => return Err(HostError::new("unmount", target, e)),
        }
    }
    Ok(())
}

/// Opens the directory `name` in `parent` (the top of whatever is mounted
/// on it), refusing a link or anything else that is not a directory.
pub(super) fn mount_point(parent: &OwnedFd, name: &OsStr, target: &Path) -> HostResult<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => HostError::other(
            "mount tmpfs on",
            target,
            "refusing: not a directory (a symbolic link or a file is in its place)",
        ),
        e => HostError::new("mount tmpfs on", target, e),
    })
}

/// Whether a filesystem (or a bind-mounted file) is mounted on `name` in
/// `dir`.
pub(super) fn mounted_on(dir: &OwnedFd, name: &OsStr) -> bool {
    let Ok(child) = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    matches!((beneath::mount_of(dir), beneath::mount_of(&child)), (Ok(a), Ok(b)) if a != b)
}
