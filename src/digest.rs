//! Digests: hex encoding and the sha256 of a value's JSON text. A leaf
//! module, so the state formats, the observed value and the kinds can all
//! use it without importing each other.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The sha256 (hex) of a value's JSON serialization, hashed as it is
/// written, a page at a time (serde_json writes a few bytes a call, and
/// each hash update has a cost of its own) instead of buffered whole.
pub fn sha256_json<T: Serialize + ?Sized>(value: &T) -> String {
    use std::io::Write;
    let mut hasher = HashWriter(Sha256::new());
    {
        let mut pages = std::io::BufWriter::with_capacity(4096, &mut hasher);
        serde_json::to_writer(&mut pages, value).expect("value serializes");
        pages.flush().expect("hashing does not fail");
    }
    hex(&hasher.0.finalize())
}

/// The sha256 (hex) of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Feeds serialized bytes straight into a hash, without buffering them.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
