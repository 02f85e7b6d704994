//! Reading a tenant's audit log: the live one under its tree, or — for a
//! tenant pruned from the node — the newest archived one.

use super::{AgentError, Node};
use crate::spec::types::TenantId;
use crate::state::{AUDIT_HEAD, AUDIT_LOG};
use std::path::PathBuf;

/// The largest audit log read (a log grows by well under 1 KiB a change).
pub const LOG_CAP: u64 = 1 << 30;

pub struct TenantLog {
    pub id: TenantId,
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

pub fn parse_id(given: &str) -> Result<TenantId, AgentError> {
    TenantId::parse(given).map_err(|problem| AgentError::BadTenantId {
        given: given.to_string(),
        problem: problem.to_string(),
    })
}

/// Finds and reads the tenant's log and head.
pub fn read_log(node: &Node, id: TenantId) -> Result<TenantLog, AgentError> {
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
    Ok(TenantLog {
        id,
        path,
        archived,
        log,
        head,
    })
}
