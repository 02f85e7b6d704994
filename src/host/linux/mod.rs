//! `LinuxHost`: the capability traits of `host.rs` on the real machine.
//!
//! Every path below the state dir and the cgroup2 tree is reached from the
//! tree's directory fd (`beneath.rs`): a link, a `..` or a mount planted
//! anywhere below the root is refused, never followed or crossed. Files
//! mvm owns must be regular files with one link; reads are non-blocking
//! and capped. Mounts target an fd-verified directory (through its
//! `/proc/self/fd` name), and whether something is mounted is decided by
//! mount ids, never by comparing path strings.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown};

use crate::host::fs::beneath::{self, Tree};
use crate::host::{
    Builds, Cgroups, Clock, Files, Firewall, HostError, HostResult, Identity, JailStage, Links,
    Mounts, Services, TapSpec, TmpfsOptions, Vms,
};
use crate::host::net::netlink;
use std::os::unix::fs::OpenOptionsExt;

/// The real host. File operations are confined to the state dir.
#[derive(Debug, Clone)]
pub struct LinuxHost {
    state: PathBuf,
}

impl LinuxHost {
    /// A host whose file operations stay below `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state: state_dir.to_path_buf(),
        }
    }

    fn tree(&self, action: &'static str) -> HostResult<Tree> {
        Tree::open(&self.state).map_err(|e| HostError::new(action, &self.state, e))
    }

    /// The state tree and `path` relative to it.
    fn locate<'a>(&self, action: &'static str, path: &'a Path) -> HostResult<(Tree, &'a Path)> {
        let tree = self.tree(action)?;
        let rel = tree
            .rel(path)
            .map_err(|e| HostError::new(action, path, e))?;
        if rel.as_os_str().is_empty() {
            return Err(HostError::other(
                action,
                path,
                "refusing: that is the state dir itself",
            ));
        }
        Ok((tree, rel))
    }

    /// Opens a file mvm owns for reading: non-blocking (a FIFO cannot
    /// hang mvm), regular, one link. `None` when it does not exist.
    fn open_own(&self, path: &Path) -> HostResult<Option<(OwnedFd, u64)>> {
        let (tree, rel) = self.locate("read", path)?;
        let fd = match tree.open_at(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(HostError::new("open", path, e)),
        };
        let st = beneath::check_own_file(&fd, path).map_err(|e| HostError::new("read", path, e))?;
        Ok(Some((fd, st.st_size as u64)))
    }
}

/// Writes `data` to `name` in `dir` atomically: an exclusive temporary
/// file, fsync, rename over the target, fsync of the directory. Temporary
/// files of writers that crashed are removed first (the node lock means no
/// other writer of this file runs).
fn write_at(dir: &OwnedFd, name: &OsStr, path: &Path, data: &[u8], mode: u32) -> HostResult {
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    for stale in beneath::names(dir, path).map_err(|e| HostError::new("list", path, e))? {
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
                Err(_) if i + 1 == comps.len() && mounted_on(&fd, name) => return Ok(()),
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
        write_at(&dir, name, path, data, mode)
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
        let (tree, rel) = self.locate("inspect", path).ok()?;
        let (dir, name) = tree.parent(rel).ok()?;
        beneath::stat_at(&dir, name, path).ok().flatten()
    }
}

/// Whether a filesystem is mounted on `name` in `dir`.
/// Whether a filesystem (or a bind-mounted file) is mounted on `name` in
/// `dir`.
fn mounted_on(dir: &OwnedFd, name: &OsStr) -> bool {
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
        // A child removed a moment ago is taken offline asynchronously:
        // until then the parent is busy. A child still there (another
        // tenant's) leaves it in use.
        for _ in 0..40 {
            match nix::unistd::unlinkat(&parent, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT | Errno::ENOTEMPTY) => return Ok(()),
                Err(Errno::EBUSY) => std::thread::sleep(Duration::from_millis(25)),
                Err(e) => return Err(HostError::new("remove cgroup", &dir, e)),
            }
        }
        Ok(())
    }
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
        // tenants/<id>/secrets/<file>: through the tmpfs mount.
        let comps: Vec<&OsStr> = rel.iter().collect();
        if comps.len() == 4 && comps[0] == "tenants" && comps[2] == "secrets" {
            let tenant = tree
                .dir(&Path::new("tenants").join(comps[1]))
                .map_err(|e| HostError::new("open", path, e))?;
            let secrets = mount_point(&tenant, comps[2], path)?;
            return openat(&secrets, comps[3], flags, Mode::empty())
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
fn mount_point(parent: &OwnedFd, name: &OsStr, target: &Path) -> HostResult<OwnedFd> {
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

/// Refuses a link whose alias is set and is not `mark` (another mvm node's,
/// or other software's). An unmarked link is the caller's to judge: the
/// bridge by its fixed MAC, a tap by the plan (from the tenant's record).
fn owned(at: &Path, alias: Option<&str>, mark: &str) -> HostResult {
    match alias {
        Some(a) if a != mark => Err(HostError::other(
            "manage",
            at,
            format!(
                "refusing: its alias is {a:?}, not this node's mark {mark:?} (another mvm node or other software created it)"
            ),
        )),
        _ => Ok(()),
    }
}

/// Refuses a bridge that is not this node's: another alias, or none and
/// not mvm's fixed MAC (an mvm bridge from before marks has that MAC).
fn bridge_owned(at: &Path, l: &netlink::Link, mac: [u8; 6], mark: &str) -> HostResult {
    owned(at, l.alias.as_deref(), mark)?;
    if l.alias.is_none() && l.mac != Some(mac) {
        return Err(HostError::other(
            "manage",
            at,
            "refusing: a bridge of this name exists without mvm's mark or MAC (mvm did not create it); set bridge.name in node.toml to a bridge of mvm's own",
        ));
    }
    Ok(())
}

impl Links for LinuxHost {
    fn bridge_ensure(
        &self,
        name: &str,
        mac: [u8; 6],
        addresses: &[ipnet::Ipv4Net],
        mark: &str,
    ) -> HostResult {
        let at = Path::new(name);
        let err = |action, e: io::Error| HostError::new(action, at, e);
        let links = netlink::dump().map_err(|e| err("read the links for", e))?;
        if let Some(l) = links.get(name) {
            if l.kind.as_deref() != Some("bridge") {
                return Err(HostError::other(
                    "use",
                    at,
                    format!(
                        "a link named {name} exists and is a {}, not a bridge; rename it or set bridge.name in node.toml",
                        l.kind.as_deref().unwrap_or("device of unknown kind")
                    ),
                ));
            }
            bridge_owned(at, l, mac, mark)?;
        }
        netlink::create_bridge(name, mac).map_err(|e| err("create bridge", e))?;
        let index = netlink::index_of(name).ok_or_else(|| {
            HostError::other("find", at, "the bridge vanished after it was created")
        })?;
        if links.get(name).and_then(|l| l.alias.as_deref()) != Some(mark) {
            netlink::set_alias(index, mark).map_err(|e| err("mark", e))?;
        }
        if links.contains_key(name) && links.get(name).and_then(|l| l.mac) != Some(mac) {
            netlink::set_mac(index, mac).map_err(|e| err("set the MAC of", e))?;
        }
        let have = links.get(name).map(|l| l.ipv4.clone()).unwrap_or_default();
        for a in &have {
            let Ok(net) = a.parse::<ipnet::Ipv4Net>() else {
                continue;
            };
            if !addresses.contains(&net) {
                netlink::delete_address(index, net.addr(), net.prefix_len())
                    .map_err(|e| err("remove an address from", e))?;
            }
        }
        for net in addresses {
            if !have.contains(&net.to_string()) {
                netlink::add_address(index, net.addr(), net.prefix_len())
                    .map_err(|e| err("add an address to", e))?;
            }
        }
        netlink::set_link(index, true, None).map_err(|e| err("set up", e))
    }

    fn bridge_delete(&self, name: &str, mac: [u8; 6], mark: &str) -> HostResult {
        let at = Path::new(name);
        match netlink::link(name).map_err(|e| HostError::new("read the link", at, e))? {
            None => Ok(()),
            Some(l) => {
                bridge_owned(at, &l, mac, mark)?;
                netlink::delete_link(l.index).map_err(|e| HostError::new("delete link", at, e))
            }
        }
    }

    fn tap_ensure(&self, tap: &TapSpec) -> HostResult {
        let at = Path::new(&tap.name);
        let err = |action, e: io::Error| HostError::new(action, at, e);
        let link = netlink::link(&tap.name).map_err(|e| err("read the link", e))?;
        match &link {
            Some(l) if l.kind.as_deref() != Some("tun") => {
                return Err(HostError::other(
                    "use",
                    at,
                    "a link with this tenant's tap name exists and is not a tap; delete it",
                ));
            }
            Some(l) => owned(at, l.alias.as_deref(), &tap.alias)?,
            None => {}
        }
        match &link {
            // Attaching to a tap a running VM holds fails (EBUSY): only
            // touch the device when its owner is not already right.
            Some(l) if l.owner == Some(tap.owner) && l.group == Some(tap.group) => {}
            _ => crate::host::net::tun::create_tap(&tap.name, tap.owner, tap.group)
                .map_err(|e| err("create tap", e))?,
        }
        let master = netlink::index_of(&tap.master).ok_or_else(|| {
            HostError::other(
                "attach",
                at,
                format!("the bridge {} does not exist", tap.master),
            )
        })?;
        let index = netlink::index_of(&tap.name)
            .ok_or_else(|| HostError::other("find", at, "the tap vanished after it was created"))?;
        if link.as_ref().and_then(|l| l.alias.as_deref()) != Some(tap.alias.as_str()) {
            netlink::set_alias(index, &tap.alias).map_err(|e| err("mark", e))?;
        }
        // Before the tap is up: IPv6 off before it could get an address.
        for (k, v) in &tap.sysctls {
            self.sysctl_write(k, v)?;
        }
        netlink::set_link(index, true, Some(master)).map_err(|e| err("attach and set up", e))?;
        netlink::set_bridge_port(index, true, false)
            .map_err(|e| err("set isolated on and learning off on", e))?;
        let fdb = netlink::dump_fdb_port(index)
            .map_err(|e| err("read the forwarding database for", e))?;
        for e in fdb
            .iter()
            .filter(|e| e.ifindex == index && e.fixed && e.mac != tap.mac)
        {
            netlink::fdb_delete(index, e.mac).map_err(|x| err("remove a stale FDB entry of", x))?;
        }
        netlink::fdb_replace(index, tap.mac).map_err(|e| err("add the static FDB entry of", e))?;
        netlink::neighbour_replace(master, tap.neighbour, tap.mac).map_err(|e| {
            HostError::new(
                "add the tenant's neighbour entry to",
                Path::new(&tap.master),
                e,
            )
        })
    }

    fn tap_delete(&self, name: &str, mark: &str) -> HostResult {
        let at = Path::new(name);
        match netlink::link(name).map_err(|e| HostError::new("read the link", at, e))? {
            None => Ok(()),
            Some(l) => {
                owned(at, l.alias.as_deref(), mark)?;
                netlink::delete_link(l.index).map_err(|e| HostError::new("delete link", at, e))
            }
        }
    }

    fn neighbour_delete(&self, bridge: &str, ip: std::net::Ipv4Addr) -> HostResult {
        match netlink::index_of(bridge) {
            None => Ok(()),
            Some(index) => netlink::neighbour_delete(index, ip)
                .map_err(|e| HostError::new("remove a neighbour entry from", Path::new(bridge), e)),
        }
    }

    fn sysctl_write(&self, name: &str, value: &str) -> HostResult {
        let path = PathBuf::from(format!("/proc/sys/{}", name.replace('.', "/")));
        let valid = name.starts_with("net.")
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && value.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(HostError::other(
                "write",
                &path,
                "refusing: not a net.* sysctl and a plain value",
            ));
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| HostError::new("open", &path, e))?;
        f.write_all(format!("{value}\n").as_bytes())
            .map_err(|e| HostError::new("write", &path, e))
    }
}

impl Builds for LinuxHost {
    fn flake_lock(
        &self,
        nix: &crate::spec::node::NixConfig,
        flake_ref: &str,
    ) -> HostResult<String> {
        crate::host::vm::nixbuild::flake_lock(nix, flake_ref)
            .map_err(|e| HostError::other("lock", Path::new(flake_ref), e))
    }
    fn build(
        &self,
        nix: &crate::spec::node::NixConfig,
        flake_ref: &str,
        profile: &str,
    ) -> HostResult<crate::host::vm::nixbuild::Built> {
        let what = crate::host::vm::nixbuild::installable(flake_ref, profile);
        crate::host::vm::nixbuild::build(nix, flake_ref, profile)
            .map_err(|e| HostError::other("build", Path::new(&what), e))
    }
}

impl Vms for LinuxHost {
    fn launch(&self, l: &crate::host::vm::vmm::Launch) -> HostResult<crate::host::vm::vmm::Running> {
        let tree = self.tree("launch")?;
        crate::host::vm::vmm::launch(l, &tree, Duration::from_secs(10))
            .map_err(|e| HostError::new("launch the VM of", Path::new(&l.id), e))
    }
    fn stop(
        &self,
        r: crate::host::vm::vmm::Running,
        uid: u32,
        cgroup: &str,
        api_sock: &Path,
        grace: Duration,
    ) -> HostResult {
        let tree = self.tree("stop")?;
        crate::host::vm::vmm::stop(r, uid, cgroup, &tree, api_sock, grace)
            .map_err(|e| HostError::new("stop process", Path::new(&r.pid.to_string()), e))
    }
    fn find(
        &self,
        firecracker: &Path,
        uid: u32,
        cgroup: &str,
        id: &str,
    ) -> Option<crate::host::vm::vmm::Running> {
        crate::host::vm::vmm::find(firecracker, uid, cgroup, id)
    }
    fn identify(&self, pid: u32, uid: u32, cgroup: &str, id: &str) -> Option<crate::host::vm::vmm::Running> {
        crate::host::vm::vmm::identify(pid, uid, cgroup, id)
    }
}

impl Firewall for LinuxHost {
    /// Tenant element changes go straight to the kernel (one nfnetlink
    /// batch); anything else through `nft -j -f -`. Both are one
    /// transaction.
    fn nft_apply(&self, commands: &serde_json::Value) -> HostResult {
        if let Some(elements) = crate::net::ruleset::element_bytes(commands) {
            return crate::host::net::nft::apply_elements(&elements).map_err(|e| {
                HostError::new("apply", Path::new("the nftables element changes"), e)
            });
        }
        crate::host::net::nft::apply("nft", commands)
            .map_err(|e| HostError::other("apply", Path::new("the nftables transaction"), e))
    }
}

impl Services for LinuxHost {
    fn start_metadata(
        &self,
        listen: &str,
        limit: crate::net::metadata::RateLimit,
        state_dir: &Path,
        started: &mut dyn FnMut(crate::host::vm::vmm::Running) -> HostResult,
    ) -> HostResult<crate::host::vm::vmm::Running> {
        let log = state_dir.join("metadata.log");
        let failed = |e| HostError::new("start the metadata service at", Path::new(listen), e);
        let mut s =
            crate::host::metadata_server::spawn(listen, limit, state_dir, &log).map_err(failed)?;
        if let Err(e) = started(s.running) {
            s.abort();
            return Err(e);
        }
        s.ready().map_err(failed)
    }
    fn stop_service(&self, r: crate::host::vm::vmm::Running) -> HostResult {
        crate::host::metadata_server::stop(r)
            .map_err(|e| HostError::new("stop process", Path::new(&r.pid.to_string()), e))
    }
}

impl Identity for LinuxHost {
    fn hostname(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}

impl Clock for LinuxHost {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
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
