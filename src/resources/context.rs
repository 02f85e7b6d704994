//! What providers need while changing the host: the host's capabilities,
//! the node config and state layout the plan was made with, the cgroup2
//! mount the plan was made against, and the audit writer. Built by the
//! executor from a plan's apply context; nothing else.

use super::audit_log::AuditWriter;
use crate::host::{Host, HostError, HostResult};
use crate::spec::NodeConfig;
use crate::spec::types::TenantId;
use crate::state::record::{RECORD_CAP, parse_record};
use crate::state::{StateLayout, TenantRecord};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct ApplyCtx {
    pub host: Host,
    pub node: NodeConfig,
    pub layout: StateLayout,
    pub cgroup_mount: Option<PathBuf>,
    pub audit: AuditWriter,
    /// Steps of one tenant run concurrently (its cgroup beside its build)
    /// and each records what it did in the one `tenant.json`: their
    /// read-modify-writes take turns, or one would lose the other's. One
    /// turn per tenant: other tenants' records are written meanwhile.
    records: Mutex<HashMap<TenantId, Arc<Mutex<()>>>>,
    /// What a step measured of itself (the VM's phases, in µs), for its
    /// audit record.
    timings: Mutex<HashMap<TenantId, Vec<(&'static str, u64)>>>,
}

impl ApplyCtx {
    pub fn new(
        host: Host,
        node: NodeConfig,
        cgroup_mount: Option<PathBuf>,
        node_id: String,
        command: String,
    ) -> Self {
        let layout = StateLayout::new(&node.state_dir);
        Self {
            audit: AuditWriter::new(layout.clone(), node_id, command),
            host,
            layout,
            cgroup_mount,
            node,
            records: Mutex::new(HashMap::new()),
            timings: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps what a step of `id` measured (replacing what it kept before).
    pub fn keep_timings(&self, id: &TenantId, t: Vec<(&'static str, u64)>) {
        self.timings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), t);
    }

    /// What a step of `id` measured, taken.
    pub fn take_timings(&self, id: &TenantId) -> Vec<(&'static str, u64)> {
        self.timings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .unwrap_or_default()
    }
}

impl ApplyCtx {
    /// The tenant's record, `None` when it has none; one that cannot be
    /// read or is not the tenant's is an error, never taken as absent.
    pub fn record(&self, id: &TenantId) -> HostResult<Option<TenantRecord>> {
        let path = self.layout.record(id);
        match self.host.files.read(&path, RECORD_CAP)? {
            Some(bytes) => parse_record(&path, &bytes, id)
                .map(Some)
                .map_err(|e| HostError::other("read", &path, e)),
            None => Ok(None),
        }
    }

    /// Reads the tenant's record, lets `f` change it, writes it back (the
    /// providers that record what they did: cgroup, artifact, jail, VM).
    pub fn update_record(&self, id: &TenantId, f: impl FnOnce(&mut TenantRecord)) -> HostResult {
        let path = self.layout.record(id);
        self.edit_record(id, |rec| {
            let mut rec =
                rec.ok_or_else(|| HostError::other("update", &path, "the tenant has no record"))?;
            f(&mut rec);
            Ok(rec)
        })
    }

    /// Writes the record `f` makes of the current one (or of none), taking
    /// turns with every other step of the tenant that edits it: concurrent
    /// steps of one tenant never lose each other's update.
    pub fn edit_record(
        &self,
        id: &TenantId,
        f: impl FnOnce(Option<TenantRecord>) -> HostResult<TenantRecord>,
    ) -> HostResult {
        let turn = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_default()
            .clone();
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let rec = f(self.record(id)?)?;
        let text = crate::spec::json::file_text(&rec);
        self.host
            .files
            .write_file(&self.layout.record(id), &text, 0o600)
    }
}
