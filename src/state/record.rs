//! `tenant.json`: what mvm last applied for a tenant. The host itself
//! cannot tell mvm a running VM's revision or the uid it was given, so the
//! record carries those facts between runs. The record is versioned; a
//! newer version than this build understands is refused, never rewritten.

use crate::spec::NodeConfig;
use crate::spec::types::{MacAddr, TenantId};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::Path;

pub const RECORD_VERSION: u32 = 1;

/// A record larger than this is refused: records are a few KiB.
pub const RECORD_CAP: u64 = 1024 * 1024;

/// Parses `tenant.json` read from `path` for tenant `id`: a record of a
/// newer version, of another tenant, or not a record is an error naming
/// the file.
pub fn parse_record(path: &Path, bytes: &[u8], id: &TenantId) -> Result<TenantRecord, String> {
    let value: serde_json::Value = crate::spec::json::parse_slice(bytes).map_err(|e| {
        format!(
            "{}:{}:{}: not valid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    match value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v > u64::from(RECORD_VERSION) => {
            return Err(format!(
                "{}: written by a newer mvm (format_version {v}; this mvm reads {RECORD_VERSION})",
                path.display()
            ));
        }
        None => return Err(format!("{}: has no format_version", path.display())),
        _ => {}
    }
    let rec: TenantRecord = serde_json::from_value(value)
        .map_err(|e| format!("{}: not a valid tenant record: {e}", path.display()))?;
    if &rec.tenant_id != id {
        return Err(format!(
            "{}: belongs to tenant {:?}, not {id:?}",
            path.display(),
            rec.tenant_id.as_str()
        ));
    }
    Ok(rec)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    pub format_version: u32,
    pub tenant_id: TenantId,
    pub uid: u32,
    pub gid: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    #[serde(default)]
    pub artifact: Option<ArtifactRecord>,
    #[serde(default)]
    pub jail: Option<JailRecord>,
    #[serde(default)]
    pub vm: Option<VmRecord>,
    /// The secrets generation its VM last started with (0: none yet);
    /// the next `secrets set` stages a higher one, even once the tmpfs is
    /// empty (after a reboot).
    #[serde(default)]
    pub secrets_generation: u64,
    /// The limit files the cgroup step wrote (`memory.max` → value); the
    /// VM's audit record quotes these, never a recomputation. A limit
    /// whose controller the host lacks is not here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<std::collections::BTreeMap<String, String>>,
    /// How many times its VM was launched (`mvm node metrics`' starts and
    /// restarts).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vm_starts: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The build the tenant's VM boots from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRecord {
    pub flake_ref: String,
    pub profile: String,
    pub lock: String,
    pub store_path: String,
    /// The contract's files (`vmlinux`, `rootfs.ext4`, `config.json`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ArtifactFile>,
}

/// One file of a built artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactFile {
    pub name: String,
    pub store_path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailRecord {
    pub exec: String,
    pub jailer: bool,
}

/// The VM as launched: the values it cannot change without a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRecord {
    pub flake_ref: String,
    pub lock: String,
    pub profile: String,
    pub vcpus: u8,
    pub mem_mib: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_mib: Option<u32>,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub seccomp: String,
    pub jailer: bool,
    pub fc_config: serde_json::Value,
    pub fc_config_sha256: String,
    /// The secrets generation it was started with; none (and a record of
    /// an mvm before secrets) is the empty drive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<VmSecrets>,
    pub pid: u32,
    /// Process start time in clock ticks since boot (`/proc/<pid>/stat`
    /// field 22): with the pid, it identifies the process across pid reuse.
    pub start_time: u64,
    /// When mvm launched it (RFC 3339): its uptime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

/// What the last reconcile of the node did (`<state>/last-reconcile.json`,
/// for `mvm node metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReconcile {
    /// When it finished (RFC 3339).
    pub at: String,
    /// `converged` (nothing to do, or every step done), `failed` (a step
    /// failed or was blocked), `interrupted`.
    pub result: String,
    pub duration_ms: u64,
    /// Steps done, Terraform's way: a replace adds one and destroys one.
    pub added: usize,
    pub changed: usize,
    pub destroyed: usize,
    pub failed: usize,
    pub blocked: usize,
}

/// The secrets generation a VM runs with: which, how many files, and
/// the keyed fingerprint (never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSecrets {
    pub generation: u64,
    pub files: usize,
    pub fingerprint: String,
}

/// One successful VM start, as `revisions.json` keeps it (newest last,
/// at most `tenants.revision_history`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    pub started_at: String,
    pub flake_ref: String,
    pub lock: String,
    pub profile: String,
    pub files: Vec<ArtifactFile>,
    pub fc_config_sha256: String,
    pub seccomp: String,
    pub jailer: bool,
}

/// The cap of `revisions.json`.
pub const REVISIONS_CAP: u64 = 4 << 20;

impl TenantRecord {
    /// The record once the tenant's identity is written: a prior record
    /// keeps what other resources recorded in it (artifact, jail, VM);
    /// without one, a fresh record.
    pub fn with_identity(
        prior: Option<TenantRecord>,
        id: &TenantId,
        uid: u32,
        gid: u32,
        ip: Ipv4Addr,
        mac: MacAddr,
    ) -> Self {
        match prior {
            Some(r) => TenantRecord {
                uid,
                gid,
                ip,
                mac,
                ..r
            },
            None => TenantRecord {
                format_version: RECORD_VERSION,
                tenant_id: id.clone(),
                uid,
                gid,
                ip,
                mac,
                artifact: None,
                jail: None,
                vm: None,
                secrets_generation: 0,
                cgroup: None,
                vm_starts: 0,
            },
        }
    }
}

/// A tenant's identity as node.toml allows it: uid and gid in the tenant
/// range, the IP a host address of the subnet other than the gateway, the
/// MAC unicast. Held to planned attributes and to records read from disk.
pub fn check_identity(
    node: &NodeConfig,
    uid: u32,
    gid: u32,
    ip: Ipv4Addr,
    mac: MacAddr,
) -> Result<(), String> {
    check_in_tenant_range(node, "uid", uid)?;
    check_in_tenant_range(node, "gid", gid)?;
    check_address(node, ip, mac)
}

/// `v` (a uid, gid or packet mark, called `name`) is in node.toml's tenant
/// range.
pub fn check_in_tenant_range(node: &NodeConfig, name: &str, v: u32) -> Result<(), String> {
    let (lo, hi) = (node.tenants.uid_min, node.tenants.uid_max);
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "{name} {v} is outside the tenant range {lo}..={hi} of node.toml"
        ))
    }
}

/// The IP is a tenant address of the bridge subnet; the MAC is unicast.
pub fn check_address(node: &NodeConfig, ip: Ipv4Addr, mac: MacAddr) -> Result<(), String> {
    crate::spec::desired::check_ip(&ip.to_string(), node).map_err(|e| format!("ip {ip} {e}"))?;
    if !mac.is_unicast() {
        return Err(format!("mac {mac} is not a unicast address"));
    }
    Ok(())
}

/// Records whose identity node.toml does not allow (a uid outside the
/// tenant range — 0, say — an IP outside the subnet) or that another
/// record also holds: the jail, tap and nft rules would use them as they
/// are, so such a record stops the plan like an unreadable one.
pub fn identity_problems<'a>(
    node: &NodeConfig,
    records: impl IntoIterator<Item = (&'a TenantId, &'a TenantRecord)>,
) -> Vec<(TenantId, String)> {
    let mut out = Vec::new();
    let mut holders: std::collections::HashMap<(&str, String), &TenantId> =
        std::collections::HashMap::new();
    for (id, r) in records {
        if let Err(e) = check_identity(node, r.uid, r.gid, r.ip, r.mac) {
            out.push((
                id.clone(),
                format!("its recorded identity is not valid on this node: {e}"),
            ));
        }
        for (what, value) in [
            ("uid", r.uid.to_string()),
            ("ip", r.ip.to_string()),
            ("mac", r.mac.to_string()),
        ] {
            if let Some(other) = holders.insert((what, value.clone()), id) {
                out.push((
                    id.clone(),
                    format!("its recorded {what} {value} is also tenant {other}'s"),
                ));
            }
        }
    }
    out
}
