//! The node's kinds: `node.bridge`, `node.nft` (the firewall), and
//! `node.metadata` (the metadata service). One file per address word.

pub mod bridge;
pub mod metadata;
pub mod nft;
