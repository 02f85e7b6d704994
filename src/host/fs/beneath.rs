//! Walking a tree mvm owns (the state dir, the cgroup2 tree) by directory
//! fd, so nothing planted in it can redirect a read, a write, a mount or a
//! delete.
//!
//! A `Tree` is opened once from the operator's configured path (links in
//! that path are the operator's choice and are followed). Everything below
//! it is reached from the tree's fd, one path at a time, with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`: a
//! symbolic link anywhere below the root, a `..`, or a filesystem mounted
//! in the path is an error, never followed. Where the kernel lacks
//! `openat2` (before 5.6, or a seccomp filter that hides it) the same
//! guarantee comes from a checked walk: component by component with
//! `O_NOFOLLOW`, comparing each directory's mount id with the root's.
//!
//! Files mvm expects to be its own (records, audit logs, heads) must be
//! regular files with one link: a FIFO, a device, or a hard link to a file
//! elsewhere is refused, so mvm never blocks on one, never reads another
//! file's contents as its own, and never appends to or flags a file
//! outside its tree.

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use nix::unistd::UnlinkatFlags;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once `openat2` turned out to be unavailable here.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An open directory and the path it was reached by (for messages only:
/// the fd is what is used).
#[derive(Debug)]
pub struct Tree {
    fd: OwnedFd,
    path: PathBuf,
    mount: MountId,
}

/// Which mount an fd is on: the kernel's mount id where `statx` reports
/// one (it tells bind mounts of the same filesystem apart), else the
/// device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountId {
    Mount(u64),
    Device(u64),
}

/// Where `io::Error`s from here say what went wrong and with which path.
fn error(path: &Path, e: Errno) -> io::Error {
    let why = match e {
        Errno::ELOOP => {
            "a symbolic link is in the way; mvm never follows links inside the trees it manages"
                .to_string()
        }
        Errno::EXDEV => "another filesystem is mounted in the path; mvm never crosses into a mount inside the trees it manages".to_string(),
        Errno::ENOENT => return io::Error::new(io::ErrorKind::NotFound, format!("{}: not found", path.display())),
        other => return io::Error::new(io::Error::from(other).kind(), format!("{}: {}", path.display(), other.desc())),
    };
    io::Error::other(format!("{}: {why}", path.display()))
}

/// Refusals that are not OS errors.
fn refuse(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {why}", path.display()))
}

/// The mount an fd is on.
pub fn mount_of(fd: impl AsFd) -> io::Result<MountId> {
    // SAFETY: statx with AT_EMPTY_PATH reads only the fd and writes `buf`,
    // a zeroed, properly sized statx struct.
    let mut buf: nix::libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        nix::libc::statx(
            fd.as_fd().as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH | nix::libc::AT_SYMLINK_NOFOLLOW,
            nix::libc::STATX_MNT_ID,
            &mut buf,
        )
    };
    if rc == 0 && buf.stx_mask & nix::libc::STATX_MNT_ID != 0 {
        return Ok(MountId::Mount(buf.stx_mnt_id));
    }
    let st = fstat(fd.as_fd()).map_err(io::Error::from)?;
    Ok(MountId::Device(st.st_dev))
}

/// `path` as plain components (no root, `.` or `..`).
fn plain(path: &Path) -> io::Result<Vec<&OsStr>> {
    path.components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(refuse(
                path,
                "refusing: not a plain relative path (no '/', '.' or '..' components)",
            )),
        })
        .collect()
}

impl Tree {
    /// Opens the root of a tree at the operator's configured path.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| error(path, e))?;
        let mount = mount_of(&fd)?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            mount,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mount(&self) -> MountId {
        self.mount
    }

    /// `path` relative to the root; refused if it is not below it as plain
    /// components.
    pub fn rel<'a>(&self, path: &'a Path) -> io::Result<&'a Path> {
        let rel = path.strip_prefix(&self.path).map_err(|_| {
            refuse(
                path,
                format!(
                    "refusing: outside {}, the tree mvm manages",
                    self.path.display()
                ),
            )
        })?;
        plain(rel)?;
        Ok(rel)
    }

    /// Opens `rel` below the root with `flags` (`O_NOFOLLOW`, `O_CLOEXEC`
    /// added), never through a link or a mount. An empty `rel` is the root.
    pub fn open_at(&self, rel: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let full = self.path.join(rel);
        if rel.as_os_str().is_empty() {
            return nix::fcntl::openat(&self.fd, ".", flags | OFlag::O_CLOEXEC, mode)
                .map_err(|e| error(&full, e));
        }
        plain(rel)?;
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let how = OpenHow::new().flags(flags).mode(mode).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            );
            match openat2(&self.fd, rel, how) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ENOSYS | Errno::EPERM) if is_unavailable() => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                }
                // A link where a directory is expected says ENOTDIR:
                // say it is a link.
                Err(Errno::ENOTDIR) if self.is_link(rel) => return Err(error(&full, Errno::ELOOP)),
                Err(e) => return Err(error(&full, e)),
            }
        }
        self.walk(rel, flags, mode)
    }

    /// Whether `rel` or a directory on the way to it is a symbolic link
    /// (for messages only).
    fn is_link(&self, rel: &Path) -> bool {
        let mut at = PathBuf::new();
        rel.iter().any(|c| {
            at.push(c);
            fstatat(&self.fd, &at, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
            })
        })
    }

    /// The checked walk used where `openat2` is unavailable: the same
    /// refusals, one component at a time.
    pub fn walk(&self, rel: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let full = self.path.join(rel);
        let comps = plain(rel)?;
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut cur: Option<OwnedFd> = None;
        for (i, name) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let at = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            let fd = if last {
                openat(at, *name, flags, mode)
            } else {
                openat(
                    at,
                    *name,
                    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_PATH,
                    Mode::empty(),
                )
            }
            .map_err(|e| match e {
                // A link met with O_NOFOLLOW|O_DIRECTORY says ENOTDIR.
                Errno::ENOTDIR if is_link_at(at, name) => error(&full, Errno::ELOOP),
                e => error(&full, e),
            })?;
            if mount_of(&fd)? != self.mount {
                return Err(error(&full, Errno::EXDEV));
            }
            cur = Some(fd);
        }
        cur.ok_or_else(|| refuse(&full, "empty path"))
    }

    /// Opens the directory `rel` below the root.
    pub fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open_at(rel, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())
    }

    /// Opens the parent directory of `rel` and returns it with the last
    /// component's name.
    pub fn parent<'a>(&self, rel: &'a Path) -> io::Result<(OwnedFd, &'a OsStr)> {
        let name = rel
            .file_name()
            .ok_or_else(|| refuse(&self.path.join(rel), "refusing: no file name"))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.dir(parent)?, name))
    }
}

/// Whether `openat2` is missing here (as opposed to refusing a path):
/// probed once with a path that cannot fail otherwise.
fn is_unavailable() -> bool {
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC);
    matches!(
        openat2(nix::fcntl::AT_FDCWD, "/", how),
        Err(Errno::ENOSYS | Errno::EPERM)
    )
}

/// What a file mvm owns must be: regular, one link. Returns its stat.
pub fn check_own_file(fd: impl AsFd, path: &Path) -> io::Result<FileStat> {
    let st = fstat(fd.as_fd()).map_err(|e| error(path, e))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG {
        return Err(refuse(
            path,
            format!("refusing: not a regular file (it is {})", kind_name(kind)),
        ));
    }
    if st.st_nlink != 1 {
        return Err(refuse(
            path,
            format!(
                "refusing: it has {} hard links; a file mvm owns has exactly one, so it cannot be another file in disguise",
                st.st_nlink
            ),
        ));
    }
    Ok(st)
}

fn kind_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "not a regular file",
    }
}

/// Reads an open file to its end, at most `cap` bytes (more is an error
/// naming the cap).
pub fn read_fd(fd: OwnedFd, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if buf.len() as u64 > cap {
        return Err(refuse(
            path,
            format!("refusing: larger than the {} cap", show_cap(cap)),
        ));
    }
    Ok(buf)
}

/// A byte cap as people say it.
pub fn show_cap(cap: u64) -> String {
    match cap {
        c if c >= 1 << 20 && c % (1 << 20) == 0 => format!("{} MiB", c >> 20),
        c if c >= 1 << 10 && c % (1 << 10) == 0 => format!("{} KiB", c >> 10),
        c => format!("{c}-byte"),
    }
}

/// The names in an open directory, sorted, without `.` and `..`.
pub fn names(dir: &OwnedFd, path: &Path) -> io::Result<Vec<OsString>> {
    let dup = dir.try_clone()?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(|e| error(path, e))?;
    let mut out = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| error(path, e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    out.sort();
    Ok(out)
}

/// `fstatat` without following a link; `None` when nothing is there.
pub fn stat_at(dir: &OwnedFd, name: &OsStr, path: &Path) -> io::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(error(path, e)),
    }
}

pub fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn is_link_at(dir: impl AsFd, name: &OsStr) -> bool {
    fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
}

/// Opens the directory `name` in `dir`, refusing a link and a mount point
/// (a directory on another mount than `mount`).
pub fn child_dir(dir: &OwnedFd, name: &OsStr, path: &Path, mount: MountId) -> io::Result<OwnedFd> {
    let fd = openat(
        dir,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOTDIR if is_link_at(dir, name) => error(path, Errno::ELOOP),
        e => error(path, e),
    })?;
    if mount_of(&fd)? != mount {
        return Err(refuse(
            path,
            "a filesystem is mounted here; mvm never crosses into a mount inside the trees it manages (unmount it first)",
        ));
    }
    Ok(fd)
}

/// Removes `name` in `dir` and everything below it, walking by fd: links
/// are removed, never followed, and nothing on another mount is entered or
/// removed. Mounts are looked for first, so a tree with one in it is
/// refused before anything is deleted. Any depth: a tenant's Firecracker
/// owns its jail tree and may nest it thousands deep, and mvm must always
/// be able to remove it (the walk holds one directory fd at a time, not
/// one per level, and no recursion).
pub fn remove_at(dir: &OwnedFd, name: &OsStr, path: &Path, mount: MountId) -> io::Result<()> {
    let Some(st) = stat_at(dir, name, path)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let child = child_dir(dir, name, path, mount)?;
        walk_below(child.try_clone()?, path, mount, Visit::ScanMounts)?;
        walk_below(child, path, mount, Visit::Delete)?;
        unlink(dir, name, path, UnlinkatFlags::RemoveDir)
    } else {
        unlink(dir, name, path, UnlinkatFlags::NoRemoveDir)
    }
}

fn unlink(dir: &OwnedFd, name: &OsStr, path: &Path, flag: UnlinkatFlags) -> io::Result<()> {
    match nix::unistd::unlinkat(dir, name, flag) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => Err(refuse(
            path,
            "a filesystem is mounted here; unmount it first (mvm never deletes inside a mount)",
        )),
        Err(e) => Err(error(path, e)),
    }
}

/// What `walk_below` does with each entry.
#[derive(Clone, Copy, PartialEq)]
enum Visit {
    /// Fails on anything on another mount (a directory or a bind-mounted
    /// file); changes nothing.
    ScanMounts,
    /// Removes every entry, directories after what is in them.
    Delete,
}

/// A directory being walked: its name in its parent, its identity (to
/// check that `..` leads back to the parent it was entered from), and the
/// names in it not yet visited.
struct Level {
    name: OsString,
    id: (u64, u64),
    pending: Vec<OsString>,
}

fn identity(fd: &OwnedFd, path: &Path) -> io::Result<(u64, u64)> {
    let st = fstat(fd).map_err(|e| error(path, e))?;
    Ok((st.st_dev, st.st_ino))
}

/// Visits everything below the open directory `top` depth-first without
/// recursion: it descends with `child_dir` (no link, no mount) and climbs
/// back through `..`, checked against the directory it came from (a tree
/// moved under the walk is refused, not followed). Memory grows with the
/// depth (a name per level), open fds do not.
fn walk_below(top: OwnedFd, path: &Path, mount: MountId, visit: Visit) -> io::Result<()> {
    let mut cur = top;
    let mut here = path.to_path_buf();
    let mut levels = vec![Level {
        name: OsString::new(),
        id: identity(&cur, &here)?,
        pending: names(&cur, &here)?,
    }];
    // A directory that still has entries after they were all removed is
    // being written to while mvm deletes it; refilled a bounded number of
    // times, then refused.
    let mut refills = 0;
    loop {
        let level = levels.last_mut().expect("the walk has a level");
        if let Some(name) = level.pending.pop() {
            let p = here.join(&name);
            let Some(st) = stat_at(&cur, &name, &p)? else {
                continue;
            };
            if is_dir(&st) {
                let child = child_dir(&cur, &name, &p, mount)?;
                levels.push(Level {
                    id: identity(&child, &p)?,
                    pending: names(&child, &p)?,
                    name,
                });
                cur = child;
                here = p;
            } else if visit == Visit::Delete {
                unlink(&cur, &name, &p, UnlinkatFlags::NoRemoveDir)?;
            } else {
                // A file can be a mount point too (a bind-mounted file).
                match openat(
                    &cur,
                    name.as_os_str(),
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) if mount_of(&fd)? != mount => {
                        return Err(refuse(
                            &p,
                            "a file is mounted here; unmount it first (mvm never deletes inside a mount)",
                        ));
                    }
                    Ok(_) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(error(&p, e)),
                }
            }
            continue;
        }
        if visit == Visit::Delete {
            let left = names(&cur, &here)?;
            if !left.is_empty() {
                refills += 1;
                if refills > 16 {
                    return Err(refuse(
                        &here,
                        "refusing: entries keep appearing while mvm removes them (stop what writes here first)",
                    ));
                }
                level.pending = left;
                continue;
            }
        }
        let done = levels.pop().expect("the walk has a level");
        let Some(parent) = levels.last() else {
            return Ok(());
        };
        let up = openat(
            &cur,
            "..",
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| error(&here, e))?;
        here.pop();
        if identity(&up, &here)? != parent.id {
            return Err(refuse(
                &here,
                "refusing: the tree was moved while mvm walked it",
            ));
        }
        cur = up;
        if visit == Visit::Delete {
            unlink(
                &cur,
                &done.name,
                &here.join(&done.name),
                UnlinkatFlags::RemoveDir,
            )?;
        }
    }
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
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn both_ways(tree: &Tree, rel: &str) -> [io::Result<OwnedFd>; 2] {
        let flags = OFlag::O_RDONLY;
        [
            tree.open_at(Path::new(rel), flags, Mode::empty()),
            tree.walk(Path::new(rel), flags, Mode::empty()),
        ]
    }

    #[test]
    fn links_anywhere_below_the_root_are_refused_both_ways() {
        let root = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::write(victim.path().join("secret"), "x").unwrap();
        fs::create_dir(root.path().join("tenants")).unwrap();
        std::os::unix::fs::symlink(victim.path(), root.path().join("tenants/acme")).unwrap();
        std::os::unix::fs::symlink(victim.path().join("secret"), root.path().join("file")).unwrap();
        let tree = Tree::open(root.path()).unwrap();
        for rel in ["tenants/acme/secret", "tenants/acme", "file"] {
            for r in both_ways(&tree, rel) {
                let e = r.unwrap_err();
                assert!(e.to_string().contains("symbolic link"), "{rel}: {e}");
            }
        }
        for rel in ["../x", "/etc/passwd", "tenants/../file"] {
            for r in both_ways(&tree, rel) {
                assert!(r.unwrap_err().to_string().contains("refusing"), "{rel}");
            }
        }
        fs::write(root.path().join("tenants/ok"), "y").unwrap();
        for r in both_ways(&tree, "tenants/ok") {
            r.unwrap();
        }
    }

    #[test]
    fn own_files_must_be_regular_with_one_link() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::write(r.join("a"), "x").unwrap();
        fs::hard_link(r.join("a"), r.join("b")).unwrap();
        nix::unistd::mkfifo(&r.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        fs::write(r.join("c"), "y").unwrap();
        let tree = Tree::open(r).unwrap();
        let open = |n: &str| {
            let fd = tree
                .open_at(
                    Path::new(n),
                    OFlag::O_RDONLY | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )
                .unwrap();
            check_own_file(fd, &r.join(n)).map(|_| ())
        };
        assert!(open("b").unwrap_err().to_string().contains("2 hard links"));
        assert!(open("fifo").unwrap_err().to_string().contains("a FIFO"));
        open("c").unwrap();
    }

    #[test]
    fn read_fd_names_the_cap() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("big"), vec![b'x'; 5000]).unwrap();
        let tree = Tree::open(root.path()).unwrap();
        let fd = tree
            .open_at(Path::new("big"), OFlag::O_RDONLY, Mode::empty())
            .unwrap();
        let e = read_fd(fd, Path::new("big"), 4096).unwrap_err();
        assert!(e.to_string().contains("4 KiB cap"), "{e}");
    }

    #[test]
    fn remove_deletes_links_not_their_targets() {
        let root = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::write(victim.path().join("keep"), "x").unwrap();
        let t = root.path().join("t");
        fs::create_dir_all(t.join("a/b/c")).unwrap();
        fs::write(t.join("a/b/c/f"), "y").unwrap();
        std::os::unix::fs::symlink(victim.path(), t.join("a/link")).unwrap();
        let tree = Tree::open(root.path()).unwrap();
        remove_at(
            &tree.dir(Path::new("")).unwrap(),
            OsStr::new("t"),
            &t,
            tree.mount(),
        )
        .unwrap();
        assert!(!t.exists());
        assert!(victim.path().join("keep").exists());
        // Gone already is fine.
        remove_at(
            &tree.dir(Path::new("")).unwrap(),
            OsStr::new("t"),
            &t,
            tree.mount(),
        )
        .unwrap();
    }

    /// A bug fixed: 140 nested directories (a tenant's Firecracker can
    /// make them in its jail) made every delete fail ("deeper than 128
    /// levels") forever. Any depth goes, a link at the bottom is removed
    /// and not followed, and a mount anywhere still stops it first.
    #[test]
    fn remove_deletes_trees_of_any_depth() {
        use std::os::unix::ffi::OsStrExt;
        let root = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::write(victim.path().join("keep"), "x").unwrap();
        let top = root.path().join("t");
        fs::create_dir(&top).unwrap();
        fs::write(top.join("first"), "x").unwrap();
        // Deeper than PATH_MAX allows by path: made level by level by fd.
        let mut fd = nix::fcntl::open(&top, OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        for i in 0..3000 {
            let name = OsStr::from_bytes(if i % 2 == 0 { b"dd" } else { b"e" });
            nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o700)).unwrap();
            nix::unistd::symlinkat(victim.path(), &fd, "link").unwrap();
            fd = openat(&fd, name, OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        }
        drop(fd);
        let tree = Tree::open(root.path()).unwrap();
        remove_at(
            &tree.dir(Path::new("")).unwrap(),
            OsStr::new("t"),
            &top,
            tree.mount(),
        )
        .unwrap();
        assert!(!top.exists());
        assert!(
            victim.path().join("keep").exists(),
            "links are not followed"
        );
    }
}
