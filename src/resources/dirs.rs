//! `tenant.<id>.dirs`: the tenant's directory tree (`<state>/tenants/<id>`
//! with `jail/` and `secrets/`, root-owned, 0700) and its record
//! `tenant.json`, which holds the identity the planner allocated: uid, gid,
//! IP and MAC. Everything else of the tenant lives inside this tree, so it
//! is created first and deleted last.

use super::{Attrs, Ctx, Desired, ResolvedTenant, attr_str, attr_u64};
use crate::apply::context::ApplyCtx;
use crate::observed::{DirObs, ObservedTenant};
use crate::providers::host::{HostError, HostResult};
use crate::security::audit::{AuditDetails, AuditEvent, HEAD_FILE, LOG_FILE};
use crate::spec::types::TenantId;
use crate::state::TenantRecord;
use serde_json::Value;
use std::path::Path;

/// A new uid means every file and process of the tenant changes owner.
pub const REPLACE_ON: &[&str] = &["path", "uid", "gid"];

pub const MODE: &str = "0700";
pub const OWNER: &str = "0:0";

pub fn desired(ctx: &Ctx, t: &ResolvedTenant) -> Desired {
    let mut d = Desired::default();
    d.set("path", ctx.layout.tenant_dir(t.id()).display().to_string());
    d.set("mode", MODE);
    d.set("owner", OWNER);
    d.set("uid", t.uid);
    d.set("gid", t.gid);
    d.set("ip", t.ip.to_string());
    d.set("mac", t.mac.to_string());
    d
}

pub fn observed(ctx: &Ctx, id: &TenantId, obs: &ObservedTenant) -> Option<Attrs> {
    let dir = obs.dir.as_ref()?;
    let rec = obs.record.as_ref();
    let mut a = Attrs::new();
    a.insert(
        "path".into(),
        ctx.layout.tenant_dir(id).display().to_string().into(),
    );
    a.insert("mode".into(), dir.mode.clone().into());
    a.insert("owner".into(), format!("{}:{}", dir.uid, dir.gid).into());
    a.insert("uid".into(), rec.map_or(Value::Null, |r| r.uid.into()));
    a.insert("gid".into(), rec.map_or(Value::Null, |r| r.gid.into()));
    a.insert(
        "ip".into(),
        rec.map_or(Value::Null, |r| r.ip.to_string().into()),
    );
    a.insert(
        "mac".into(),
        rec.map_or(Value::Null, |r| r.mac.to_string().into()),
    );
    Some(a)
}

pub fn simulate(t: &mut ObservedTenant, id: &TenantId, after: Option<&Attrs>) {
    let Some(a) = after else {
        t.dir = None;
        t.jail_dir = None;
        t.record = None;
        t.record_error = None;
        return;
    };
    let root = DirObs {
        mode: MODE.into(),
        uid: 0,
        gid: 0,
    };
    t.dir = Some(root.clone());
    t.jail_dir = Some(root);
    let uid = attr_u64(a, "uid") as u32;
    let gid = attr_u64(a, "gid") as u32;
    let ip = attr_str(a, "ip").parse().expect("planned ip");
    let mac = attr_str(a, "mac").parse().expect("planned mac");
    t.record = Some(TenantRecord::with_identity(
        t.record.take(),
        id,
        uid,
        gid,
        ip,
        mac,
    ));
}

fn parse_mode(a: &Attrs) -> u32 {
    u32::from_str_radix(&attr_str(a, "mode"), 8).unwrap_or(0o700)
}

/// Creates the state dir itself (its parent must exist), root-owned 0755.
pub fn ensure_state_dir(host: &dyn crate::providers::host::Host, state: &Path) -> HostResult {
    let parent = state.parent().unwrap_or(Path::new("/"));
    let name = state.file_name().map(Path::new).unwrap_or(Path::new("."));
    host.ensure_dir(parent, name, 0o755, 0, 0)
}

/// Creates the tree (never following a planted link) and writes the record
/// with the planned identity, keeping what other resources recorded.
pub fn apply(ctx: &ApplyCtx, id: &TenantId, after: &Attrs) -> HostResult {
    let host = &*ctx.host;
    let state = ctx.layout.root();
    ensure_state_dir(host, state)?;
    host.ensure_dir(state, Path::new("tenants"), 0o700, 0, 0)?;
    let mode = parse_mode(after);
    let tenant = Path::new("tenants").join(id.as_str());
    for rel in [tenant.clone(), tenant.join("jail"), tenant.join("secrets")] {
        host.ensure_dir(state, &rel, mode, 0, 0)?;
    }
    let path = ctx.layout.record(id);
    let existing = crate::providers::probe::read_record(&path, id)
        .map_err(|e| HostError::new("read", &path, std::io::Error::other(e)))?;
    let ip = attr_str(after, "ip").parse().map_err(|_| {
        HostError::new(
            "plan",
            &path,
            std::io::Error::other("planned ip is invalid"),
        )
    })?;
    let mac = attr_str(after, "mac").parse().map_err(|_| {
        HostError::new(
            "plan",
            &path,
            std::io::Error::other("planned mac is invalid"),
        )
    })?;
    let (uid, gid) = (attr_u64(after, "uid") as u32, attr_u64(after, "gid") as u32);
    let record = TenantRecord::with_identity(existing, id, uid, gid, ip, mac);
    let mut text = serde_json::to_vec_pretty(&record).expect("record serializes");
    text.push(b'\n');
    host.write_file(&path, &text, 0o600)
}

/// Archives the audit log (it outlives the tenant), then removes the tree.
/// The log's last record, written before it moves, says the tenant's
/// resources are gone and the log archived: the dirs are deleted last, after
/// everything else of the tenant. Nothing is written in the archive itself,
/// so a crash can leave no half-written file there.
pub fn delete(ctx: &ApplyCtx, id: &TenantId) -> HostResult {
    let host = &*ctx.host;
    let dir = ctx.layout.tenant_dir(id);
    let log = dir.join(LOG_FILE);
    if log.exists() {
        let ev = AuditEvent {
            tenant: id,
            action: "archive",
            resource: format!("tenant.{id}.dirs"),
            error: None,
            details: AuditDetails::default(),
        };
        ctx.audit.append(host, ev)?;
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%S%.6fZ")
            .to_string();
        let rel = Path::new("archive").join(format!("{id}-{stamp}"));
        host.ensure_dir(ctx.layout.root(), Path::new("archive"), 0o700, 0, 0)?;
        host.ensure_dir(ctx.layout.root(), &rel, 0o700, 0, 0)?;
        let to = ctx.layout.root().join(&rel);
        if dir.join(HEAD_FILE).exists() {
            host.rename(&dir.join(HEAD_FILE), &to.join(HEAD_FILE))?;
        }
        host.set_append_only(&log, false)?;
        host.rename(&log, &to.join(LOG_FILE))?;
        host.set_append_only(&to.join(LOG_FILE), true)?;
    }
    host.remove_tree(&dir)
}
