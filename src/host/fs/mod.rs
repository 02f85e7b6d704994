//! Files: walking a tree by fd (`beneath.rs`), deleting one (`remove.rs`),
//! the one atomic writer and capped reads (`atomic.rs`),
//! the node lock (`lock.rs`), the operator's input and output files
//! (`input.rs`), ext4 data volumes (`volume.rs`); rewriting an open
//! file in place (`rewrite_in_place`).

pub mod atomic;
pub mod beneath;
pub mod input;
pub mod lock;
pub mod remove;
pub mod volume;

/// Replaces the whole content of a file a process holds open (and may no
/// longer be able to reopen, its privileges dropped): written from the
/// start, then cut to its length. Not atomic: a reader that catches it
/// half written sees text that does not parse, and reads again.
pub fn rewrite_in_place(file: &std::fs::File, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    if file.write_at(bytes, 0).is_ok() {
        let _ = file.set_len(bytes.len() as u64);
    }
}
