//! `mvm tenant secrets set`: a new generation of a tenant's secrets
//! staged on its tmpfs under the node lock, recorded in its audit log
//! (names, sizes, fingerprint; never a value), the VM untouched. Making it
//! live is `secrets rotate`, a reconcile (`Goal::RotateSecrets`).

use super::{AgentError, Node};
use crate::security::secrets::{self, Manifest, SecretFile};
use crate::spec::types::TenantId;
use std::time::Duration;

/// What `set` stages, and for whom.
pub struct SetRequest<'a> {
    pub id: TenantId,
    pub files: Vec<SecretFile>,
    pub lock_timeout: Duration,
    pub command_line: &'a str,
    pub operator: &'a str,
}

/// What `set` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Staged {
    pub tenant_id: TenantId,
    pub generation: u64,
    pub files: Vec<secrets::FileEntry>,
    pub fingerprint: String,
    /// The generation the running VM has, if one runs (it keeps it until
    /// `rotate`).
    pub live: Option<u64>,
    /// Older staged generations this one supersedes, now removed.
    pub superseded: Vec<u64>,
}

/// How `set` talks to whoever runs it.
pub trait SetUi {
    fn waiting_for_lock(&self, holder: &str);
    /// Whether to stage `m` (shown first) for `id`.
    fn confirm(&self, id: &TenantId, m: &Manifest, live: Option<u64>) -> Result<bool, AgentError>;
}

/// The secrets generation the tenant's running VM has (none: no VM mvm
/// launched runs, or it runs without secrets).
pub fn live_generation(t: &crate::observed::ObservedTenant) -> Option<u64> {
    let p = t.vm.as_ref()?;
    let r = t.record.as_ref()?.vm.as_ref()?;
    (r.pid == p.pid && r.start_time == p.start_time)
        .then(|| r.secrets.as_ref().map(|s| s.generation))
        .flatten()
}

/// Stages `req.files` as the tenant's next generation. `None`: the
/// operator said no.
pub fn set(node: &Node, req: SetRequest, ui: &dyn SetUi) -> Result<Option<Staged>, AgentError> {
    secrets::check_generation(&req.files).map_err(AgentError::SecretsInput)?;
    let (host, layout) = (&node.host, &node.layout);
    let id = &req.id;
    if !host.files.is_dir(&layout.tenant_dir(id)) {
        return Err(AgentError::UnknownTenant { id: id.clone() });
    }
    let _lock = node.lock(req.command_line, req.lock_timeout, &mut |holder| {
        ui.waiting_for_lock(holder)
    })?;
    let observed = host.probe.observe(&node.config);
    let t = observed
        .tenants
        .get(id)
        .ok_or_else(|| AgentError::UnknownTenant { id: id.clone() })?;
    let rec = t
        .record
        .as_ref()
        .ok_or_else(|| AgentError::UnknownTenant { id: id.clone() })?;
    let dir = layout.secrets(id);
    if t.secrets.is_none() {
        return Err(AgentError::NoSecretsTmpfs {
            id: id.clone(),
            path: dir,
        });
    }
    let key = node_key(node)?;
    let newest = t.newest_secrets().map_or(0, |m| m.generation);
    let generation = newest.max(rec.secrets_generation) + 1;
    let now = host.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let manifest = Manifest::new(generation, &key[..], &req.files, now);
    let live = live_generation(t);
    if !ui.confirm(id, &manifest, live)? {
        return Ok(None);
    }
    host.secrets.stage_secrets(
        &dir,
        &crate::host::SecretsStage {
            generation,
            files: &req.files,
            manifest: manifest.to_bytes(),
            uid: rec.uid,
            gid: rec.gid,
            image_bytes: secrets::image_bytes(&manifest.files),
            inodes: secrets::inode_count(&manifest.files),
        },
    )?;
    let writer = crate::resources::audit_log::AuditWriter::new(
        layout.clone(),
        node.ensure_node_id()?,
        req.command_line.to_string(),
    );
    let mut details = audit_details(&manifest);
    details.insert("by".into(), req.operator.to_string());
    writer.append(
        host,
        crate::security::audit::AuditEvent {
            log: crate::security::audit::Log::Tenant(id),
            action: "secrets-set",
            resource: format!("tenant.{id}.secrets"),
            error: None,
            details,
        },
    )?;
    // Older staged generations the VM does not run are superseded: only
    // the newest goes live.
    let superseded: Vec<u64> = t
        .secrets_generations
        .iter()
        .map(|m| m.generation)
        .filter(|g| Some(*g) != live)
        .collect();
    host.secrets
        .prune_secrets(&dir, generation, &live.into_iter().collect::<Vec<_>>())?;
    Ok(Some(Staged {
        tenant_id: id.clone(),
        generation,
        files: manifest.files.clone(),
        fingerprint: manifest.fingerprint.clone(),
        live,
        superseded,
    }))
}

/// What an audit record says of a generation: its number, files by name
/// and size, and fingerprint.
pub fn audit_details(m: &Manifest) -> crate::security::audit::AuditDetails {
    let files: Vec<String> = m
        .files
        .iter()
        .map(|f| format!("{} ({} bytes)", f.name, f.bytes))
        .collect();
    [
        ("generation".to_string(), m.generation.to_string()),
        ("files".to_string(), files.join(", ")),
        ("bytes".to_string(), m.total_bytes().to_string()),
        ("fingerprint".to_string(), m.fingerprint.clone()),
    ]
    .into()
}

/// The node's fingerprint key (`<state>/secrets.key`, root-only 0400):
/// read, or made from the host's randomness on first use.
fn node_key(node: &Node) -> Result<zeroize::Zeroizing<Vec<u8>>, AgentError> {
    let path = node.layout.secrets_key();
    if let Some(bytes) = node.host.files.read(&path, 4096)? {
        if bytes.len() != secrets::KEY_BYTES {
            return Err(AgentError::Corrupt {
                path,
                problem: format!(
                    "{} bytes; the secrets fingerprint key is {}",
                    bytes.len(),
                    secrets::KEY_BYTES
                ),
            });
        }
        return Ok(zeroize::Zeroizing::new(bytes));
    }
    let mut key = zeroize::Zeroizing::new(Vec::with_capacity(secrets::KEY_BYTES));
    while key.len() < secrets::KEY_BYTES {
        key.extend_from_slice(&node.host.identity.random_id()?);
    }
    key.truncate(secrets::KEY_BYTES);
    node.host.files.write_file(&path, &key, 0o400)?;
    Ok(key)
}
