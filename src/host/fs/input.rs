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
    crate::host::fs::beneath::write_at(&fd, name, path, data, 0o644).map_err(|e| e.source)
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
