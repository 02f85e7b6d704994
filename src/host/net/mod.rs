//! The network: rtnetlink reads and writes (`netlink.rs`), persistent taps
//! (`tun.rs`), nftables (`nft.rs`; tenant elements over nfnetlink,
//! `nft_batch.rs`), listening sockets (`sock_diag.rs`), and the raw
//! netlink messages the link, element and socket reads share
//! (`nlmsg.rs`).

pub mod netlink;
pub mod nft;
pub mod nft_batch;
pub mod nlmsg;
pub mod sock_diag;
pub mod tun;
