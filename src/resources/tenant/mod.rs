//! A tenant's kinds, one file per address word `tenant.<id>.<word>`:
//! its tree (`dirs`), its build (`artifact`), `cgroup`, `secrets` tmpfs,
//! `jail`, `tap`, `nft` elements and `vm`.

pub mod artifact;
pub mod cgroup;
pub mod dirs;
pub mod jail;
pub mod nft;
pub mod secrets;
pub mod tap;
pub mod vm;
