//! The network: rtnetlink reads and writes (`netlink.rs`), persistent taps
//! (`tun.rs`), nftables (`nft.rs`).

pub mod netlink;
pub mod nft;
pub mod nft_batch;
pub mod tun;
