//! The files a command reads and writes on the operator's behalf:
//! desired.json, node.toml, a captured observation, a saved plan. Reading
//! them is the only I/O the plan path does besides probing.

use std::io;
use std::path::Path;

pub use crate::spec::Input;

/// Reads an input file as UTF-8 text: opened non-blocking (a FIFO cannot
/// hang mvm), a regular file (not a FIFO, device or directory), at most
/// its kind's cap. Links are followed: the operator names these files.
pub fn read_text(path: &Path, kind: Input) -> io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        let what = match meta.file_type() {
            t if t.is_dir() => "a directory",
            t if std::os::unix::fs::FileTypeExt::is_fifo(&t) => "a FIFO",
            t if std::os::unix::fs::FileTypeExt::is_char_device(&t) => "a character device",
            t if std::os::unix::fs::FileTypeExt::is_block_device(&t) => "a block device",
            t if std::os::unix::fs::FileTypeExt::is_socket(&t) => "a socket",
            _ => "not a regular file",
        };
        return Err(io::Error::other(format!(
            "refusing: it is {what}; a {} must be a regular file",
            kind.name()
        )));
    }
    let cap = kind.cap();
    let mut bytes = Vec::new();
    f.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::other(format!(
            "refusing: larger than the {} MiB cap for a {}",
            cap >> 20,
            kind.name()
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Whether a file exists (following links: an operator's config may be
/// a link).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// Writes an output file (a saved plan) atomically, naming the real cause
/// when it cannot: a missing directory is said as such, not as a failure
/// to create a temporary file.
pub fn write_output(path: &Path, data: &[u8]) -> io::Result<()> {
    write_output_mode(path, data, 0o644)
}

/// [`write_output`] with the file's mode.
fn write_output_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("the directory {} does not exist", dir.display()),
            ));
        }
        Err(e) => return Err(e),
    }
    // The operator names the directory (a link to one is fine); the file
    // itself is written by the one atomic writer, from the directory's fd.
    let fd: std::os::fd::OwnedFd = std::fs::File::open(dir)?.into();
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    crate::host::fs::beneath::write_at(&fd, name, path, data, mode).map_err(|e| e.source)
}

/// The real uid mvm runs as.
pub fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Whether stdout and stderr are the same open file (same device and
/// inode: a journal stream, `>log 2>&1`, one terminal).
pub fn stdout_is_stderr() -> bool {
    use std::os::fd::AsFd;
    let id = |fd: std::os::fd::BorrowedFd| {
        nix::sys::stat::fstat(fd)
            .ok()
            .map(|st| (st.st_dev, st.st_ino))
    };
    let (out, err) = (id(std::io::stdout().as_fd()), id(std::io::stderr().as_fd()));
    out.is_some() && out == err
}

/// Whether `path` is a directory (following links: the operator names it).
pub fn is_dir(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

/// Reads the secrets `secrets set --from-file` names: one regular file
/// (one secret, named by its file name), a flat directory of regular
/// files (one secret each), or `-` (stdin, one secret named `name`). Every
/// input is opened without following a link and never blocking, must be a
/// regular file, and is read with a cap; an error names the file. Values
/// are wiped from memory when dropped.
pub fn read_secrets(
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<crate::security::secrets::SecretFile>, String> {
    use crate::security::secrets::{SecretFile, check_name, over_limit};
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::{Mode, fstat};
    let cap = crate::security::secrets::MAX_TOTAL_BYTES;
    if path == Path::new("-") {
        let name = name.ok_or("reading a secret from stdin (`-`) needs --name NAME")?;
        check_name(name).map_err(|e| format!("--name {name:?}: {e}"))?;
        let value = read_capped(std::io::stdin().lock(), cap)
            .map_err(|e| format!("stdin: {e}"))?
            .ok_or_else(|| format!("stdin: {}", over_limit(cap + 1)))?;
        return Ok(vec![SecretFile {
            name: name.to_string(),
            value,
        }]);
    }
    let show = |p: &Path| p.display().to_string();
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = open(path, flags, Mode::empty()).map_err(|e| match e {
        nix::errno::Errno::ELOOP => format!("{}: refusing: it is a symbolic link", show(path)),
        e => format!("{}: {}", show(path), io::Error::from(e)),
    })?;
    let st = fstat(&fd).map_err(|e| format!("{}: {e}", show(path)))?;
    let is_dir = st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR;
    if !is_dir {
        if name.is_some() {
            return Err(
                "--name is for stdin (`-`); a file's secret is named by its file name".into(),
            );
        }
        check_kind(&st).map_err(|e| format!("{}: refusing: {e}", show(path)))?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: names no file", show(path)))?;
        check_name(file_name).map_err(|e| format!("{}: {e}", show(path)))?;
        let value = read_capped(std::fs::File::from(fd), cap)
            .map_err(|e| format!("{}: {e}", show(path)))?
            .ok_or_else(|| format!("{}: {}", show(path), over_limit(st.st_size as u64)))?;
        return Ok(vec![SecretFile {
            name: file_name.to_string(),
            value,
        }]);
    }
    if name.is_some() {
        return Err(
            "--name is for stdin (`-`); a directory's secrets are named by their file names".into(),
        );
    }
    let dir: std::os::fd::OwnedFd = fd;
    let mut names = crate::host::fs::beneath::names(&dir, path).map_err(|e| e.to_string())?;
    names.sort();
    if names.len() > crate::security::secrets::MAX_FILES {
        return Err(format!(
            "{}: {} entries; a generation holds at most {} files",
            show(path),
            names.len(),
            crate::security::secrets::MAX_FILES
        ));
    }
    let mut files = Vec::with_capacity(names.len());
    let mut total = 0u64;
    for entry in names {
        let at = path.join(&entry);
        let name = entry
            .to_str()
            .ok_or_else(|| format!("{}: the name is not UTF-8", show(&at)))?;
        check_name(name).map_err(|e| format!("{}: {e}", show(&at)))?;
        let fd = openat(&dir, name, flags, Mode::empty()).map_err(|e| match e {
            nix::errno::Errno::ELOOP => format!("{}: refusing: it is a symbolic link", show(&at)),
            e => format!("{}: {}", show(&at), io::Error::from(e)),
        })?;
        let st = fstat(&fd).map_err(|e| format!("{}: {e}", show(&at)))?;
        check_kind(&st).map_err(|e| {
            format!(
                "{}: refusing: {e} (a directory of secrets is flat)",
                show(&at)
            )
        })?;
        let value = read_capped(std::fs::File::from(fd), cap - total.min(cap))
            .map_err(|e| format!("{}: {e}", show(&at)))?
            .ok_or_else(|| {
                format!(
                    "{}: with it, {}: {}",
                    show(&at),
                    show(path),
                    over_limit(total + st.st_size as u64)
                )
            })?;
        total += value.len() as u64;
        files.push(SecretFile {
            name: name.to_string(),
            value,
        });
    }
    Ok(files)
}

/// Refuses anything but a regular file, naming what it is.
fn check_kind(st: &nix::sys::stat::FileStat) -> Result<(), String> {
    use nix::libc::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFMT, S_IFREG, S_IFSOCK};
    let what = match st.st_mode & S_IFMT {
        S_IFREG => return Ok(()),
        S_IFDIR => "it is a directory",
        S_IFIFO => "it is a FIFO",
        S_IFCHR => "it is a character device",
        S_IFBLK => "it is a block device",
        S_IFSOCK => "it is a socket",
        _ => "it is not a regular file",
    };
    Err(format!("{what}; a secret must be a regular file"))
}

/// Reads at most `cap` bytes into memory wiped on drop; `None` when
/// there are more.
fn read_capped(r: impl io::Read, cap: u64) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, String> {
    use io::Read;
    let mut value = zeroize::Zeroizing::new(Vec::new());
    r.take(cap + 1)
        .read_to_end(&mut value)
        .map_err(|e| e.to_string())?;
    Ok((value.len() as u64 <= cap).then_some(value))
}

/// Writes a starter flake into `dir` (`mvm dev init`): `flake.nix`, a copy
/// of the static busybox `busybox` as `tools/busybox` (its builder) and of
/// the kernel image `kernel` as `vmlinux` — everything it needs to build
/// offline. `dir` must not exist or be empty: nothing of the operator's is
/// ever overwritten.
pub fn write_starter(
    dir: &Path,
    flake_nix: &[u8],
    busybox: &Path,
    kernel: &Path,
) -> io::Result<()> {
    const BUSYBOX_MAX: u64 = 16 << 20;
    const KERNEL_MAX: u64 = 256 << 20;
    let read = |p: &Path, max: u64, what: &str| -> io::Result<Vec<u8>> {
        let m = std::fs::metadata(p)
            .map_err(|e| io::Error::new(e.kind(), format!("{what} {}: {e}", p.display())))?;
        if !m.is_file() {
            return Err(io::Error::other(format!(
                "{what} {} is not a regular file",
                p.display()
            )));
        }
        if m.len() > max {
            return Err(io::Error::other(format!(
                "{what} {} is {} bytes, more than the {max} a {what} can be",
                p.display(),
                m.len()
            )));
        }
        std::fs::read(p)
    };
    let bb = read(busybox, BUSYBOX_MAX, "busybox")?;
    if !bb.starts_with(b"\x7fELF") {
        return Err(io::Error::other(format!(
            "busybox {} is not an ELF executable (install busybox-static)",
            busybox.display()
        )));
    }
    let vmlinux = read(kernel, KERNEL_MAX, "kernel")?;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(io::Error::other(format!(
                    "{} is not empty: choose a new directory (nothing in it is overwritten)",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(dir)?,
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
    std::fs::create_dir(dir.join("tools"))?;
    for (rel, data, mode) in [
        ("flake.nix", flake_nix, 0o644),
        ("vmlinux", &vmlinux[..], 0o644),
        ("tools/busybox", &bb[..], 0o755),
    ] {
        write_output_mode(&dir.join(rel), data, mode)?;
    }
    Ok(())
}
