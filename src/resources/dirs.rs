//! `tenant.<id>.dirs`: the tenant's directory tree (`<state>/tenants/<id>`
//! with `jail/` and `secrets/`, root-owned, 0700) and its record
//! `tenant.json`, which holds the identity the planner allocated: uid, gid,
//! IP and MAC. Everything else of the tenant lives inside this tree, so it
//! is created first and deleted last.

use super::{Attrs, Ctx, Desired, ResolvedTenant, attr_str, attr_u64};
use crate::observed::{DirObs, ObservedTenant};
use crate::spec::types::TenantId;
use crate::state::{RECORD_VERSION, TenantRecord};
use serde_json::Value;

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
    match &mut t.record {
        Some(r) => {
            r.uid = uid;
            r.gid = gid;
            r.ip = ip;
            r.mac = mac;
        }
        None => {
            t.record = Some(TenantRecord {
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
            })
        }
    }
}
