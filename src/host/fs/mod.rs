//! Files: walking a tree by fd (`beneath.rs`), durable state files and the
//! node lock (`store.rs`), the operator's input files (`input.rs`), ext4
//! data volumes (`volume.rs`).

pub mod beneath;
pub mod input;
pub mod store;
pub mod volume;
