//! The only code that touches the host. For now: the read-only probes that
//! build an `Observed` value. Each probe batches its reads — one mountinfo
//! read, one netlink link dump (plus one address dump), one `nft -j list
//! ruleset`, one /proc scan — however many tenants there are, and records
//! what it could not read as a fact instead of failing.

pub mod host;
pub mod mountinfo;
pub mod netlink;
pub mod nft;
pub mod probe;
pub mod procfs;
pub mod recording;

pub use probe::observe;
