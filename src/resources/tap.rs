//! `tenant.<id>.tap`: the tenant's persistent tap `tap-<id>`, owned by its
//! uid/gid, enslaved to the node bridge as an isolated port with learning
//! off (guest-to-guest L2 traffic is impossible; the static FDB entry comes
//! with it). Port flags change in place; a new owner needs a new device.

use super::{Attrs, Ctx, Desired, ResolvedTenant, attr_bool, attr_str, attr_u64};
use crate::observed::{ObservedTenant, TapObs};
use crate::spec::types::TenantId;
use serde_json::Value;

pub const REPLACE_ON: &[&str] = &["name", "owner", "group"];

pub fn desired(ctx: &Ctx, t: &ResolvedTenant) -> Desired {
    let mut d = Desired::default();
    d.set("name", t.id().tap_name());
    d.set("master", ctx.node.bridge.name.clone());
    d.set("up", true);
    d.set("isolated", true);
    d.set("learning", false);
    d.set("owner", t.uid);
    d.set("group", t.gid);
    d
}

pub fn observed(id: &TenantId, obs: &ObservedTenant) -> Option<Attrs> {
    let tap = obs.tap.as_ref()?;
    let opt = |v: Option<bool>| v.map_or(Value::Null, Value::from);
    let mut a = Attrs::new();
    a.insert("name".into(), id.tap_name().into());
    a.insert(
        "master".into(),
        tap.master.clone().map_or(Value::Null, Value::from),
    );
    a.insert("up".into(), tap.up.into());
    a.insert("isolated".into(), opt(tap.isolated));
    a.insert("learning".into(), opt(tap.learning));
    a.insert("owner".into(), tap.owner.map_or(Value::Null, Value::from));
    a.insert("group".into(), tap.group.map_or(Value::Null, Value::from));
    Some(a)
}

pub fn simulate(t: &mut ObservedTenant, after: Option<&Attrs>) {
    t.tap = after.map(|a| TapObs {
        master: Some(attr_str(a, "master")),
        up: attr_bool(a, "up"),
        isolated: Some(attr_bool(a, "isolated")),
        learning: Some(attr_bool(a, "learning")),
        owner: Some(attr_u64(a, "owner") as u32),
        group: Some(attr_u64(a, "group") as u32),
    });
}
