//! Files: walking a tree by fd (`beneath.rs`), deleting one (`remove.rs`),
//! the one atomic writer and capped reads (`atomic.rs`),
//! the node lock (`lock.rs`), the operator's input and output files
//! (`input.rs`), ext4 data volumes (`volume.rs`).

pub mod atomic;
pub mod beneath;
pub mod input;
pub mod lock;
pub mod remove;
pub mod volume;
