//! The hardening mvm applies to every tenant: its jail layout and its
//! cgroup limits. Pure derivations; the providers carry them out.

pub mod audit;
pub mod cgroups;
pub mod jailer;
