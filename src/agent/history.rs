//! A tenant's history and the node's: audit logs (a tenant's live one
//! under its tree, or — for a tenant pruned from the node — the newest
//! archived one; the node's own in the state dir) and VM revisions.

use super::{AgentError, Node};
use crate::spec::types::TenantId;
use crate::state::{AUDIT_HEAD, AUDIT_LOG};
use std::path::PathBuf;

/// The largest audit log read (a log grows by well under 1 KiB a change).
pub const LOG_CAP: u64 = 1 << 30;

pub struct AuditLog {
    /// Whose log it is: a tenant's, or the node's (`None`).
    pub id: Option<TenantId>,
    pub path: PathBuf,
    /// Set when the tenant was pruned and this is its archived log.
    pub archived: bool,
    pub log: Vec<u8>,
    pub head: Option<Vec<u8>>,
}

/// The tenant's VM starts, oldest first, as `revisions.json` keeps them
/// (capped at `tenants.revision_history`); empty before its first start.
pub fn read_revisions(
    node: &Node,
    id: &TenantId,
) -> Result<Vec<crate::state::record::Revision>, AgentError> {
    use crate::state::record::REVISIONS_CAP;
    let path = node.layout.revisions(id);
    let Some(bytes) = node.host.files.read(&path, REVISIONS_CAP)? else {
        return Ok(Vec::new());
    };
    crate::spec::json::from_slice(&bytes).map_err(|e| AgentError::Corrupt {
        path,
        problem: e.to_string(),
    })
}

/// Finds and reads the tenant's log and head.
pub fn read_log(node: &Node, id: TenantId) -> Result<AuditLog, AgentError> {
    let layout = &node.layout;
    let files = &*node.host.files;
    let live = layout.audit_log(&id);
    let (dir, archived) = if files.exists(&live) {
        (layout.tenant_dir(&id), false)
    } else {
        let names = files.list(&layout.archive_dir())?;
        match layout.newest_archive(&id, &names) {
            Some(dir) => (dir, true),
            None => {
                return Err(AgentError::NoSuchTenant {
                    id,
                    archive: layout.archive_dir(),
                });
            }
        }
    };
    let path = dir.join(AUDIT_LOG);
    let log = files.read(&path, LOG_CAP)?.unwrap_or_default();
    let head = files.read(&dir.join(AUDIT_HEAD), 4096)?;
    Ok(AuditLog {
        id: Some(id),
        path,
        archived,
        log,
        head,
    })
}

/// The node's own audit log (bridge, firewall, metadata service); empty
/// before the first node change.
pub fn read_node_log(node: &Node) -> Result<AuditLog, AgentError> {
    let files = &*node.host.files;
    let path = node.layout.node_audit_log();
    let log = files.read(&path, LOG_CAP)?.unwrap_or_default();
    let head = files.read(&node.layout.node_audit_head(), 4096)?;
    Ok(AuditLog {
        id: None,
        path,
        archived: false,
        log,
        head,
    })
}

impl AuditLog {
    /// The log's owner, as the chain check takes it.
    pub fn owner(&self) -> crate::security::audit::Log<'_> {
        match &self.id {
            Some(id) => crate::security::audit::Log::Tenant(id),
            None => crate::security::audit::Log::Node,
        }
    }
}
