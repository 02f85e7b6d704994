//! Files: walking a tree by fd and the one atomic writer (`beneath.rs`),
//! the node lock (`lock.rs`), the operator's input and output files
//! (`input.rs`), ext4 data volumes (`volume.rs`).

pub mod beneath;
pub mod input;
pub mod lock;
pub mod volume;
