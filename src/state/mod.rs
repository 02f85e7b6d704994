//! The node's state directory: where each file lives (`StateLayout`, the
//! one place a state path is spelled), and the formats of the records mvm
//! writes there. Layout and formats only: reading and writing them is
//! `host/`'s work. Paths derive from the configured `state_dir` only,
//! so tests can run against a temporary root.
//!
//! ```text
//! <state>/node-id
//! <state>/desired.json                  what the last reconcile converged to
//! <state>/overrides.json                the operator's overrides (pins, stop/start)
//! <state>/agent-desired.json           the last good document `mvm agent run` received
//! <state>/secrets.key                   the node's key for secrets fingerprints (0400)
//! <state>/audit.log, audit.head         the node's audit log (bridge, nft, metadata)
//! <state>/metadata.json, metadata.log   the metadata service and its log
//! <state>/metadata.stats.json           its request counters
//! <state>/last-reconcile.json           what the last reconcile did
//! <state>/tenants/<id>/tenant.json      applied spec, identity, allocations
//! <state>/tenants/<id>/revisions.json   last N builds
//! <state>/tenants/<id>/audit.log        append-only JSON lines
//! <state>/tenants/<id>/logs/            vm.log, firecracker.log, metrics.json (+ .1, .2: earlier runs), build.log
//! <state>/tenants/<id>/jail/            jailer chroot base
//! <state>/tenants/<id>/secrets/         tmpfs mount: gen-<n>/{files/,secrets.img,manifest.json}
//! <state>/archive/<id>-<time>/          audit logs of pruned tenants
//! <state>/lock                          the node lock
//! <state>/dev/                          `mvm dev`: the developer VM (never a tenant's)
//! ```

pub mod logs;
pub mod record;

pub use record::{
    ArtifactRecord, JailRecord, LastReconcile, RECORD_VERSION, TenantRecord, VmRecord,
};

use crate::spec::types::TenantId;
use std::path::{Path, PathBuf};

/// The audit log's file name, in a tenant dir and in its archive.
pub const AUDIT_LOG: &str = "audit.log";
/// The audit head's file name.
pub const AUDIT_HEAD: &str = "audit.head";
/// The file counting a failure's repeats, beside its log.
pub const AUDIT_REPEATS: &str = "audit.repeats";

/// How an archive directory's name spells its time: `20261201T103000.123456Z`.
pub const ARCHIVE_STAMP: &str = "%Y%m%dT%H%M%S%.6fZ";

/// Whether `s` is exactly a stamp written with `ARCHIVE_STAMP`.
fn is_archive_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 23
        && b.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'T',
            15 => *c == b'.',
            22 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

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

    /// The desired state the last successful `reconcile --desired`
    /// converged to (what `mvm net verify` checks against by default).
    pub fn applied_desired(&self) -> PathBuf {
        self.root.join("desired.json")
    }

    /// The metadata service mvm started: pid, start time, version.
    pub fn metadata_service(&self) -> PathBuf {
        self.root.join("metadata.json")
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub fn archive_dir(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// A pruned tenant's archived audit log directory, relative to the root
    /// (created component by component from it).
    pub fn archive_rel(&self, id: &TenantId, stamp: &str) -> PathBuf {
        Path::new("archive").join(format!("{id}-{stamp}"))
    }

    /// The newest archive directory of `id` among `names` (the entries of
    /// `archive_dir`): exactly `<id>-<stamp>`, so tenant `a` never gets
    /// tenant `a-3`'s archive. Names sort by time.
    pub fn newest_archive(&self, id: &TenantId, names: &[String]) -> Option<PathBuf> {
        let prefix = format!("{id}-");
        names
            .iter()
            .filter(|n| n.strip_prefix(&prefix).is_some_and(is_archive_stamp))
            .max()
            .map(|n| self.archive_dir().join(n))
    }

    /// The stamp of an archive made now, as `archive_rel` takes it.
    pub fn archive_stamp(now: jiff::Timestamp) -> String {
        now.strftime(ARCHIVE_STAMP).to_string()
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
        self.tenant_dir(id).join(AUDIT_LOG)
    }

    pub fn audit_head(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join(AUDIT_HEAD)
    }

    /// How often the log's last record (a failure) repeated since it was
    /// written, unrecorded (`audit.repeats`).
    pub fn audit_repeats(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join(AUDIT_REPEATS)
    }

    /// The operator's overrides (`spec::overrides`).
    pub fn overrides(&self) -> PathBuf {
        self.root.join("overrides.json")
    }

    /// The last good document `mvm agent run` received, with its etcd
    /// revision and sha256: what it reconciles from when it starts.
    pub fn agent_desired(&self) -> PathBuf {
        self.root.join("agent-desired.json")
    }

    /// The node's key for secrets fingerprints (root-only, never shown).
    pub fn secrets_key(&self) -> PathBuf {
        self.root.join("secrets.key")
    }

    /// The node's own audit log: changes to the bridge, the firewall and
    /// the metadata service.
    pub fn node_audit_log(&self) -> PathBuf {
        self.root.join(AUDIT_LOG)
    }

    pub fn node_audit_head(&self) -> PathBuf {
        self.root.join(AUDIT_HEAD)
    }

    pub fn node_audit_repeats(&self) -> PathBuf {
        self.root.join(AUDIT_REPEATS)
    }

    /// The tenant's persistent data volume (an ext4 image).
    pub fn data_volume(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("data.ext4")
    }

    /// The tenant's logs and metrics (`logs.rs`): they outlive its jail.
    pub fn logs_dir(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("logs")
    }

    /// A file of `logs_dir`, `previous` runs back (0: the current run).
    pub fn log_file(&self, id: &TenantId, file: &str, previous: u32) -> PathBuf {
        self.logs_dir(id).join(logs::run_file(file, previous))
    }

    /// The VM's own output (the jailer's and Firecracker's, the console).
    pub fn vm_log(&self, id: &TenantId) -> PathBuf {
        self.log_file(id, logs::VM_LOG, 0)
    }

    /// The log of the tenant's last build.
    pub fn build_log(&self, id: &TenantId) -> PathBuf {
        self.log_file(id, logs::BUILD_LOG, 0)
    }

    /// What the last reconcile of the node did (`mvm node metrics`).
    pub fn last_reconcile(&self) -> PathBuf {
        self.root.join("last-reconcile.json")
    }

    /// The metadata service's request counters (`mvm node metrics`).
    pub fn metadata_stats(&self) -> PathBuf {
        self.root.join("metadata.stats.json")
    }

    /// The developer VM's own directory (`mvm dev`): nothing of a tenant's
    /// is ever under it, nothing under it is a tenant's.
    pub fn dev_dir(&self) -> PathBuf {
        self.root.join("dev")
    }

    /// The metadata service's log.
    pub fn metadata_log(&self) -> PathBuf {
        self.root.join("metadata.log")
    }

    pub fn jail(&self, id: &TenantId) -> PathBuf {
        crate::spec::jail::chroot_base(&self.root, id.as_str())
    }

    pub fn secrets(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("secrets")
    }
}

/// The node id as `<state>/node-id` holds it: 32 hex digits (and a
/// newline). Anything else was not written by mvm.
pub fn parse_node_id(bytes: &[u8]) -> Result<String, String> {
    let id = String::from_utf8_lossy(bytes).trim().to_string();
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err("is not a 32-digit hex node id".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bug fixed: `tenant audit a` showed the archive of tenant `a-3`.
    #[test]
    fn archive_lookup_matches_the_exact_tenant_id() {
        let l = StateLayout::new("/s");
        let names: Vec<String> = [
            "a-3-20261201T103000.000000Z",
            "a-20261130T000000.000000Z",
            "a-20261201T000000.000000Z",
            "a-2026",
            "ab-20261202T000000.000000Z",
        ]
        .map(String::from)
        .to_vec();
        let a = TenantId::parse("a").unwrap();
        assert_eq!(
            l.newest_archive(&a, &names),
            Some(PathBuf::from("/s/archive/a-20261201T000000.000000Z"))
        );
        let a3 = TenantId::parse("a-3").unwrap();
        assert_eq!(
            l.newest_archive(&a3, &names),
            Some(PathBuf::from("/s/archive/a-3-20261201T103000.000000Z"))
        );
        let stamp =
            StateLayout::archive_stamp(jiff::Timestamp::from_second(1_796_000_000).unwrap());
        assert!(is_archive_stamp(&stamp), "{stamp}");
    }
}
