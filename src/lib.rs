//! mvm keeps a Firecracker microVM host in the state a control plane asks
//! for: observe the host, plan the difference, apply it. See ARCHITECTURE.md
//! for the map of this crate and its invariants.

pub mod agent;
pub mod apply;
pub mod cli;
pub mod digest;
pub mod fleet;
pub mod host;
pub mod net;
pub mod observed;
pub mod plan;
pub mod resources;
pub mod security;
pub mod settings;
pub mod spec;
pub mod state;
pub mod text;
