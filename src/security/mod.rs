//! The hardening mvm applies to every tenant: its cgroup limits (a pure
//! derivation) and the hash-chained audit log (written through providers).

pub mod audit;
pub mod cgroups;
pub mod jailer;
