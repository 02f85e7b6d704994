//! Tenant networking, as pure data: the nftables ruleset mvm renders from
//! the node config (`ruleset.rs`). Providers apply it; the nft and tap
//! kinds plan it; `mvm net verify` checks a node against it.

pub mod ruleset;
