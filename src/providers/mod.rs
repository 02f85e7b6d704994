//! The only code that touches the host: the capability traits every change
//! goes through (`host.rs`, with the real machine in `linux.rs` and the
//! recording double in `recording.rs`), the read-only probes that build an
//! `Observed` value, durable state files and the node lock (`store.rs`),
//! and the operator's input files (`input.rs`).
//!
//! Each probe batches its reads — one mountinfo read, one netlink link dump
//! (plus one address dump), one `nft -j list ruleset`, one /proc scan —
//! however many tenants there are, and records what it could not read as a
//! fact instead of failing.

pub mod beneath;
pub mod host;
pub mod input;
pub mod linux;
pub mod metadata_server;
pub mod mountinfo;
pub mod netlink;
pub mod nft;
pub mod nixbuild;
pub mod nodeinfo;
pub mod probe;
pub mod procfs;
pub mod recording;
pub mod signals;
pub mod store;
pub mod tun;
pub mod vmm;
pub mod volume;

pub use host::{Host, HostError, HostResult};
pub use probe::observe;
