//! The node's state directory: where each file lives, and the records mvm
//! writes there. Paths derive from the configured `state_dir` only, so tests
//! can run against a temporary root.
//!
//! ```text
//! <state>/node-id
//! <state>/tenants/<id>/tenant.json      applied spec, identity, allocations
//! <state>/tenants/<id>/revisions.json   last N builds
//! <state>/tenants/<id>/audit.log        append-only JSON lines
//! <state>/tenants/<id>/jail/            jailer chroot base
//! <state>/tenants/<id>/secrets/         tmpfs mount
//! ```

pub mod record;
pub mod store;

pub use record::{ArtifactRecord, JailRecord, RECORD_VERSION, TenantRecord, VmRecord};

use crate::spec::types::TenantId;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    root: PathBuf,
}

impl StateLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn node_id(&self) -> PathBuf {
        self.root.join("node-id")
    }

    pub fn tenants_dir(&self) -> PathBuf {
        self.root.join("tenants")
    }

    pub fn tenant_dir(&self, id: &TenantId) -> PathBuf {
        self.tenants_dir().join(id.as_str())
    }

    pub fn record(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("tenant.json")
    }

    pub fn revisions(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("revisions.json")
    }

    pub fn audit_log(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("audit.log")
    }

    pub fn jail(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("jail")
    }

    pub fn secrets(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("secrets")
    }
}
