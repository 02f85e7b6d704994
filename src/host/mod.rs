//! The only code that touches the host. `contract.rs` holds the capability
//! traits every read and change goes through, bundled in `Host`; `linux/`
//! is the real machine (one capability per file), `recording/` the test
//! double that records typed calls against an in-memory model and answers
//! the probe from it. Below them: `fs/` (walking by fd, the node lock, the
//! operator's files, data volumes), `net/` (netlink, taps, nftables),
//! `vm/` (the jailed Firecracker, Nix builds), `probe/` (the batched
//! read-only probe and node facts), the metadata service process and
//! signals.
//!
//! Each probe batches its reads — one mountinfo read, one netlink link dump
//! (plus one address dump), one `nft -j list ruleset`, one /proc scan —
//! however many tenants there are, and records what it could not read as a
//! fact instead of failing.

pub mod contract;
pub mod etcd;
pub mod follow;
pub mod fs;
pub mod linux;
pub mod metadata_server;
pub mod metrics_server;
pub mod net;
pub mod probe;
pub mod recording;
pub mod service;
pub mod signals;
pub mod vm;

pub use contract::*;
