//! The files a command reads and writes on the operator's behalf:
//! desired.json, node.toml, a captured observation, a saved plan. Reading
//! them is the only I/O the plan path does besides probing.

use std::io;
use std::path::Path;

/// Inputs larger than this are refused (10,000 tenants' desired.json is
/// about 3 MiB).
pub const INPUT_CAP: u64 = 256 * 1024 * 1024;

/// Reads an input file as UTF-8 text.
pub fn read_text(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut text = String::new();
    f.take(INPUT_CAP + 1).read_to_string(&mut text)?;
    if text.len() as u64 > INPUT_CAP {
        return Err(io::Error::other(format!(
            "larger than {} MiB",
            INPUT_CAP >> 20
        )));
    }
    Ok(text)
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
    super::store::write_atomic(path, data, 0o644).map_err(|e| match e {
        super::store::StoreError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    })
}
