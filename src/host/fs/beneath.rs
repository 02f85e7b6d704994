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
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use super::atomic::{read_own_file, write_at};
pub use super::remove::remove_at;

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
pub(super) fn error(path: &Path, e: Errno) -> io::Error {
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
pub(super) fn refuse(path: &Path, why: impl std::fmt::Display) -> io::Error {
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

/// What one `statx` says of a file: its type and permission bits, its
/// owner, and the mount it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mount: MountId,
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.mode & nix::libc::S_IFMT == nix::libc::S_IFDIR
    }
}

/// `name` in `dir` — or `dir` itself, for `c""` — as one `statx`, a link
/// never followed (a link is reported as one; whatever is mounted on a
/// directory is what is described). `Ok(None)`: not there. One call
/// where `lstat`, `open(O_PATH)`, `fstat` and a mount-id `statx` were
/// four.
pub fn stat_of(dir: impl AsFd, name: &std::ffi::CStr) -> Result<Option<Stat>, Errno> {
    let flags = nix::libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            nix::libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: statx reads the fd and the NUL-terminated name and writes
    // only `buf`, a zeroed, properly sized statx struct.
    let mut buf: nix::libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        nix::libc::statx(
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            flags,
            nix::libc::STATX_TYPE
                | nix::libc::STATX_MODE
                | nix::libc::STATX_UID
                | nix::libc::STATX_GID
                | nix::libc::STATX_MNT_ID,
            &mut buf,
        )
    };
    if rc != 0 {
        return match Errno::last() {
            Errno::ENOENT => Ok(None),
            e => Err(e),
        };
    }
    // As `st_dev` spells it, so it compares with `mount_of`'s.
    let dev = || nix::libc::makedev(buf.stx_dev_major, buf.stx_dev_minor);
    Ok(Some(Stat {
        mode: u32::from(buf.stx_mode),
        uid: buf.stx_uid,
        gid: buf.stx_gid,
        mount: if buf.stx_mask & nix::libc::STATX_MNT_ID != 0 {
            MountId::Mount(buf.stx_mnt_id)
        } else {
            MountId::Device(dev())
        },
    }))
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
    // A page to start: the files read so are small (a record, a cgroup
    // limit), and an empty buffer would be filled 32 bytes a read.
    let mut buf = Vec::with_capacity((cap + 1).min(4096) as usize);
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
        return Err(mounted_here(path));
    }
    Ok(fd)
}

/// The refusal of a directory with another filesystem mounted on it.
pub fn mounted_here(path: &Path) -> io::Error {
    refuse(
        path,
        "a filesystem is mounted here; mvm never crosses into a mount inside the trees it manages (unmount it first)",
    )
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
