//! `tenant.<id>.dirs`: the tenant's directory tree (`<state>/tenants/<id>`
//! with `jail/` and `secrets/`, root-owned, 0700; a missing subdirectory,
//! or a file or link in its place, is drift that apply repairs) and its record
//! `tenant.json`, which holds the identity the planner allocated: uid, gid,
//! IP and MAC. Everything else of the tenant lives inside this tree, so it
//! is created first and deleted last.

use crate::host::{HostError, HostResult};
use crate::observed::{DirObs, Observed};
use crate::resources::values::FileMode;
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, NodeView, PlanCtx, Provider, Resource, Scope,
    Subject,
};
use crate::security::audit::{AuditDetails, AuditEvent};
use crate::spec::TenantSpec;
use crate::spec::types::{MacAddr, TenantId};
use crate::state::{AUDIT_HEAD, AUDIT_LOG, TenantRecord};
use serde::Deserialize;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;

pub struct Dirs;

pub const MODE: &str = "0700";
pub const OWNER: &str = "0:0";
/// The directories inside the tenant's tree.
pub const SUBDIRS: &[&str] = &["jail", "logs", "secrets"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirsAttrs {
    pub path: String,
    pub mode: FileMode,
    pub owner: String,
    /// Comma-separated names of the subdirectories present.
    pub subdirs: String,
    pub uid: u32,
    pub gid: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

impl Resource for Dirs {
    type Attrs = DirsAttrs;
    const WORD: &'static str = "dirs";
    const SCOPE: Scope = Scope::Tenant;
    /// A new uid means every file and process of the tenant changes owner.
    const REPLACE_ON: &'static [&'static str] = &["path", "uid", "gid"];
    /// A tree whose record is lost adopts the planned identity in place:
    /// only a known uid that differs replaces it, so a missing record never
    /// destroys a tenant's files.
    const ADOPTS_UNKNOWN_PRIOR: bool = true;
    const UNIQUE: &'static [&'static str] = &["uid", "ip", "mac"];
    /// The tenant's tree and record: where its identity is planned.
    const DEFINES_IDENTITY: bool = true;

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[]
    }

    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        let mut d = Desired::default();
        d.set("path", ctx.layout.tenant_dir(t.id()).display().to_string());
        d.set("mode", MODE);
        d.set("owner", OWNER);
        d.set("subdirs", SUBDIRS.join(","));
        d.set("uid", t.uid);
        d.set("gid", t.gid);
        d.set("ip", t.ip.to_string());
        d.set("mac", t.mac.to_string());
        Some(d)
    }

    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs> {
        let At::Tenant(id, obs) = at else { return None };
        let dir = obs.dir.as_ref()?;
        let rec = obs.record.as_ref();
        let mut a = Attrs::new();
        a.insert(
            "path".into(),
            ctx.layout.tenant_dir(id).display().to_string().into(),
        );
        a.insert("mode".into(), dir.mode.clone().into());
        a.insert("owner".into(), format!("{}:{}", dir.uid, dir.gid).into());
        let present: Vec<&str> = [
            ("jail", obs.jail_dir.is_some()),
            ("logs", obs.logs_dir),
            ("secrets", obs.secrets_dir.is_some()),
        ]
        .into_iter()
        .filter(|(_, here)| *here)
        .map(|(n, _)| n)
        .collect();
        a.insert("subdirs".into(), present.join(",").into());
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

    fn warnings(&self, ctx: &PlanCtx, _: &NodeView) -> Vec<String> {
        ctx.observed
            .facts
            .get(crate::observed::fact::STATE_DIR)
            .map(|reason| format!("the state dir could not be read ({reason}): tenants already on this node are planned as if absent; plan as root, and put back any directory a link stands in for"))
            .into_iter()
            .collect()
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&DirsAttrs>,
        _: &Documents,
    ) {
        let t = crate::resources::tenant_mut(obs, id);
        let Some(a) = after else {
            t.dir = None;
            t.jail_dir = None;
            t.logs_dir = false;
            t.secrets_dir = None;
            t.record = None;
            t.record_error = None;
            return;
        };
        let root = DirObs {
            mode: a.mode.octal(),
            uid: 0,
            gid: 0,
        };
        t.dir = Some(root.clone());
        t.jail_dir = Some(root.clone());
        t.logs_dir = true;
        if t.secrets_dir.is_none() {
            t.secrets_dir = Some(root);
        }
        let id = id.expect("a tenant address");
        t.record = Some(TenantRecord::with_identity(
            t.record.take(),
            id,
            a.uid,
            a.gid,
            a.ip,
            a.mac,
        ));
    }

    fn identity(&self, a: &DirsAttrs) -> Vec<(&'static str, String)> {
        vec![
            ("uid", a.uid.to_string()),
            ("gid", a.gid.to_string()),
            ("ip", a.ip.to_string()),
            ("mac", a.mac.to_string()),
        ]
    }

    fn check(&self, ctx: &PlanCtx, id: Option<&TenantId>, a: &DirsAttrs) -> Result<(), String> {
        let id = id.ok_or("not a tenant address")?;
        let want = |name: &str, have: &str, want: &str| {
            if have == want {
                Ok(())
            } else {
                Err(format!("{name} is {have:?}; mvm only ever plans {want:?}"))
            }
        };
        want(
            "path",
            &a.path,
            &ctx.layout.tenant_dir(id).display().to_string(),
        )?;
        want("mode", &a.mode.octal(), MODE)?;
        want("owner", &a.owner, OWNER)?;
        want("subdirs", &a.subdirs, &SUBDIRS.join(","))?;
        crate::state::record::check_identity(ctx.node, a.uid, a.gid, a.ip, a.mac)
    }

    fn audit(&self, a: &DirsAttrs) -> AuditDetails {
        [
            ("ip".to_string(), a.ip.to_string()),
            ("mac".to_string(), a.mac.to_string()),
        ]
        .into()
    }
}

impl Provider<DirsAttrs> for Dirs {
    /// Creates the tree (never following a planted link) and writes the
    /// record with the planned identity, keeping what other resources
    /// recorded.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        _: Option<&DirsAttrs>,
        after: &DirsAttrs,
        _: &Documents,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        let files = &*ctx.host.files;
        let state = ctx.layout.root();
        let tree = ctx.layout.tenant_dir(id);
        if after.path != tree.display().to_string() {
            return Err(HostError::other(
                "use",
                &tree,
                format!(
                    "the plan names another path for this tenant's tree ({})",
                    after.path
                ),
            ));
        }
        ctx.host.ensure_state_dir(state)?;
        files.ensure_dir(state, Path::new("tenants"), 0o700, 0, 0)?;
        let tenant = Path::new("tenants").join(id.as_str());
        files.ensure_dir(state, &tenant, after.mode.0, 0, 0)?;
        for sub in SUBDIRS {
            // A file or link in a subdirectory's place is removed (a link,
            // never what it points to) and the directory made anew.
            let path = tree.join(sub);
            if files.exists(&path) && !files.is_dir(&path) {
                files.remove_tree(&path)?;
            }
            files.ensure_dir(state, &tenant.join(sub), after.mode.0, 0, 0)?;
        }
        ctx.edit_record(id, |existing| {
            Ok(TenantRecord::with_identity(
                existing, id, after.uid, after.gid, after.ip, after.mac,
            ))
        })
    }

    /// Archives the audit log (it outlives the tenant), then removes the
    /// tree. The log's last record, written before it moves, says the
    /// tenant's resources are gone and the log archived: the dirs are
    /// deleted last, after everything else of the tenant. Nothing is
    /// written in the archive itself, so a crash can leave no half-written
    /// file there.
    fn delete(&self, ctx: &ApplyCtx, id: Option<&TenantId>, _: Option<&DirsAttrs>) -> HostResult {
        let id = id.expect("a tenant address");
        let files = &*ctx.host.files;
        let dir = ctx.layout.tenant_dir(id);
        let log = ctx.layout.audit_log(id);
        if files.exists(&log) {
            let ev = AuditEvent {
                log: crate::security::audit::Log::Tenant(id),
                action: "archive",
                resource: format!("tenant.{id}.dirs"),
                error: None,
                details: AuditDetails::new(),
            };
            ctx.audit.append(&ctx.host, ev)?;
            let stamp = crate::state::StateLayout::archive_stamp(ctx.host.clock.now());
            let rel = ctx.layout.archive_rel(id, &stamp);
            let root = ctx.layout.root();
            files.ensure_dir(root, Path::new("archive"), 0o700, 0, 0)?;
            files.ensure_dir(root, &rel, 0o700, 0, 0)?;
            let to = root.join(&rel);
            // The log first, then its head: a crash between the two
            // leaves a head the next run recognises as the rest of this
            // archive (`AuditWriter` and the branch below).
            files.set_append_only(&log, false)?;
            files.rename(&log, &to.join(AUDIT_LOG))?;
            files.set_append_only(&to.join(AUDIT_LOG), true)?;
            let head = ctx.layout.audit_head(id);
            if files.exists(&head) {
                files.rename(&head, &to.join(AUDIT_HEAD))?;
            }
            // Its VM's logs go with it (bounded: `state/logs.rs`), the
            // FIFOs of its last run left behind.
            let logs = ctx.layout.logs_dir(id);
            if files.is_dir(&logs) {
                for fifo in [
                    crate::state::logs::LOG_FIFO,
                    crate::state::logs::METRICS_FIFO,
                ] {
                    if files.exists(&logs.join(fifo)) {
                        files.remove_tree(&logs.join(fifo))?;
                    }
                }
                files.rename(&logs, &to.join("logs"))?;
            }
        } else if files.exists(&ctx.layout.audit_head(id)) {
            // A run died between moving the log and its head: finish.
            let names = files.list(&ctx.layout.archive_dir())?;
            if let Some(to) = ctx.layout.newest_archive(id, &names)
                && files.exists(&to.join(AUDIT_LOG))
                && !files.exists(&to.join(AUDIT_HEAD))
            {
                files.rename(&ctx.layout.audit_head(id), &to.join(AUDIT_HEAD))?;
            }
        }
        files.remove_tree(&dir)
    }
}
