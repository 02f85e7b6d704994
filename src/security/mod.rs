//! The hardening mvm applies to every tenant, as pure policy (no effects;
//! below `host/`): cgroup limits (`cgroups.rs`), how Firecracker is jailed
//! (`jailer.rs`), the seccomp filter a VM gets (`seccomp.rs`), the
//! metadata service's tokens and request rules (`metadata.rs`; its
//! listener is `host/metadata_server.rs`), and the audit logs' format and
//! chain rules (`audit.rs`; the writer is `resources/audit_log.rs`).

pub mod audit;
pub mod cgroups;
pub mod jailer;
pub mod metadata;
pub mod seccomp;
pub mod secrets;
