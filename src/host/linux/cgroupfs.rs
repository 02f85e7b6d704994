//! `Cgroups` on the real machine: the cgroup2 tree, by fd from its root.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::UnlinkatFlags;

use crate::host::fs::beneath::{self, Tree};
use crate::host::{Cgroups, HostError, HostResult};

use super::LinuxHost;

impl Cgroups for LinuxHost {
    fn cgroup_create(&self, root: &Path, rel: &Path, controllers: &[&str]) -> HostResult {
        let enable: String = controllers.iter().map(|c| format!("+{c} ")).collect();
        let full = root.join(rel);
        let tree = Tree::open(root).map_err(|e| HostError::new("open", root, e))?;
        tree.rel(&full)
            .map_err(|e| HostError::new("create cgroup", &full, e))?;
        // A prune of the last other tenant may remove an empty parent
        // between our mkdirs: start again from the root a few times.
        let mut attempts = 0;
        'again: loop {
            attempts += 1;
            let mut fd = tree
                .dir(Path::new(""))
                .map_err(|e| HostError::new("open", root, e))?;
            let mut dir = root.to_path_buf();
            for name in rel.iter() {
                // Controllers must be enabled in the parent before the
                // child can use them.
                if !enable.is_empty() {
                    match write_cgroup_at(&fd, &dir, "cgroup.subtree_control", enable.trim_end()) {
                        Err(e) if e.source.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                            continue 'again;
                        }
                        other => other?,
                    }
                }
                dir.push(name);
                match mkdirat(&fd, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(Errno::ENOENT) if attempts < 3 => continue 'again,
                    Err(e) => return Err(HostError::new("create cgroup", &dir, e)),
                }
                fd = match beneath::child_dir(&fd, name, &dir, tree.mount()) {
                    Ok(fd) => fd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                        continue 'again;
                    }
                    Err(e) => return Err(HostError::new("open cgroup", &dir, e)),
                };
            }
            return Ok(());
        }
    }

    fn cgroup_write(&self, root: &Path, rel: &Path, file: &str, value: &str) -> HostResult {
        let dir = root.join(rel);
        let tree = Tree::open(root).map_err(|e| HostError::new("open", root, e))?;
        let fd = tree
            .dir(rel)
            .map_err(|e| HostError::new("open cgroup", &dir, e))?;
        write_cgroup_at(&fd, &dir, file, value)
    }

    fn cgroup_remove(&self, root: &Path, rel: &Path) -> HostResult {
        let tree = Tree::open(root).map_err(|e| HostError::new("open", root, e))?;
        let dir = root.join(rel);
        let (parent, name) = match tree.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HostError::new("remove cgroup", &dir, e)),
        };
        remove_cgroup_at(&parent, name, &dir, tree.mount(), 0)
    }

    fn cgroup_kill(&self, root: &Path, rel: &Path) -> HostResult {
        let tree = Tree::open(root).map_err(|e| HostError::new("open", root, e))?;
        let dir = root.join(rel);
        let fd = match tree.dir(rel) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HostError::new("open cgroup", &dir, e)),
        };
        match write_cgroup_at(&fd, &dir, "cgroup.kill", "1") {
            Err(e) if e.source.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_millis(5);
        while read_cgroup_at(&fd, "cgroup.events")
            .is_some_and(|s| s.lines().any(|l| l.trim() == "populated 1"))
        {
            if Instant::now() >= deadline {
                return Err(HostError::other(
                    "empty cgroup",
                    &dir,
                    "processes are still in it 10 s after cgroup.kill",
                ));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
        Ok(())
    }

    fn cgroup_remove_if_unused(&self, root: &Path, rel: &Path) -> HostResult {
        let tree = Tree::open(root).map_err(|e| HostError::new("open", root, e))?;
        let dir = root.join(rel);
        let (parent, name) = match tree.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HostError::new("remove cgroup", &dir, e)),
        };
        // cgroup2 says EBUSY both for a child cgroup still there (another
        // tenant's: in use, nothing to wait for) and for a child removed a
        // moment ago that the kernel takes offline asynchronously (worth
        // a short wait). Only the second is waited for: waiting on the
        // first made a prune of 200 tenants sleep 19 s.
        for _ in 0..40 {
            match nix::unistd::unlinkat(&parent, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT | Errno::ENOTEMPTY) => return Ok(()),
                Err(Errno::EBUSY) if has_children(&parent, name, &dir)? => return Ok(()),
                Err(Errno::EBUSY) => std::thread::sleep(Duration::from_millis(25)),
                Err(e) => return Err(HostError::new("remove cgroup", &dir, e)),
            }
        }
        Ok(())
    }
}

/// Whether the cgroup `name` in `parent` has a child cgroup (a
/// directory in it).
fn has_children(parent: &OwnedFd, name: &OsStr, dir: &Path) -> HostResult<bool> {
    let fd = match openat(
        parent,
        name,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(HostError::new("open cgroup", dir, e)),
    };
    for n in beneath::names(&fd, dir).map_err(|e| HostError::new("list cgroup", dir, e))? {
        if beneath::stat_at(&fd, &n, dir)
            .map_err(|e| HostError::new("look at", &dir.join(&n), e))?
            .is_some_and(|st| beneath::is_dir(&st))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How deep `remove_cgroup_at` goes: a tenant's cgroup is root's (not
/// delegated), so only root could nest it; the bound keeps a mistake from
/// exhausting the stack.
const MAX_CGROUP_DEPTH: usize = 128;

/// Freezes, kills and removes the cgroup `name` in `parent`, children
/// first, by fd.
fn remove_cgroup_at(
    parent: &OwnedFd,
    name: &OsStr,
    dir: &Path,
    mount: beneath::MountId,
    depth: usize,
) -> HostResult {
    if depth >= MAX_CGROUP_DEPTH {
        return Err(HostError::other(
            "remove cgroup",
            dir,
            "refusing: nested too deep",
        ));
    }
    let fd = match beneath::child_dir(parent, name, dir, mount) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(HostError::new("open cgroup", dir, e)),
    };
    // Children first (a jailer or a human may have made some).
    for child in beneath::names(&fd, dir).map_err(|e| HostError::new("list", dir, e))? {
        let p = dir.join(&child);
        if beneath::stat_at(&fd, &child, &p)
            .ok()
            .flatten()
            .is_some_and(|st| beneath::is_dir(&st))
        {
            remove_cgroup_at(&fd, &child, &p, mount, depth + 1)?;
        }
    }
    let _ = write_cgroup_at(&fd, dir, "cgroup.freeze", "1");
    match write_cgroup_at(&fd, dir, "cgroup.kill", "1") {
        Err(e) if e.source.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_millis(10);
    loop {
        let populated = read_cgroup_at(&fd, "cgroup.events")
            .is_some_and(|s| s.lines().any(|l| l.trim() == "populated 1"));
        if !populated {
            match nix::unistd::unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(HostError::new("remove cgroup", dir, e));
                }
                Err(_) => {}
            }
        } else if Instant::now() >= deadline {
            return Err(HostError::other(
                "remove cgroup",
                dir,
                "processes are still in it 10 s after cgroup.kill",
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

fn read_cgroup_at(dir: &OwnedFd, file: &str) -> Option<String> {
    let fd = openat(
        dir,
        file,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let bytes = beneath::read_fd(fd, Path::new(file), 64 * 1024).ok()?;
    String::from_utf8(bytes).ok()
}

/// Writes a cgroup interface file in `dir` as `echo value > file` does:
/// never creates it, never through a link, one write ending in a newline —
/// an empty value must still reach the kernel (a zero-length write would
/// not), to reset `cpuset.cpus`, say.
fn write_cgroup_at(dir: &OwnedFd, path: &Path, file: &str, value: &str) -> HostResult {
    let full = path.join(file);
    let fd = openat(
        dir,
        file,
        OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| HostError::new("open", &full, e))?;
    std::fs::File::from(fd)
        .write_all(format!("{value}\n").as_bytes())
        .map_err(|e| HostError::new("write", &full, e))
}
