//! Firecracker processes (`vmm.rs`) and the Nix builds they boot
//! (`nixbuild.rs`).

pub mod dev;
mod linux;
pub mod nixbuild;
pub mod pump;
pub mod vmm;
