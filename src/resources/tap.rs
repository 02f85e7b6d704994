//! `tenant.<id>.tap`: the tenant's persistent tap `tap-<id>`, owned by its
//! uid/gid, enslaved to the node bridge as an isolated port with learning
//! off (guest-to-guest L2 traffic is impossible; the static FDB entry comes
//! with it). Port flags change in place; a new owner needs a new device.

use super::{At, Attrs, Ctx, Dep, Desired, Documents, Resource, Scope, Subject};
use crate::observed::{Observed, TapObs};
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use serde::Deserialize;
use serde_json::Value;

pub struct Tap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapAttrs {
    pub name: String,
    pub master: String,
    pub up: bool,
    pub isolated: bool,
    pub learning: bool,
    pub owner: u32,
    pub group: u32,
}

impl Resource for Tap {
    type Attrs = TapAttrs;
    const WORD: &'static str = "tap";
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &["name", "owner", "group"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Node("bridge"), Dep::Tenant("dirs")]
    }

    fn desired(&self, ctx: &Ctx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        let mut d = Desired::default();
        d.set("name", t.id().tap_name());
        d.set("master", ctx.node.bridge.name.clone());
        d.set("up", true);
        d.set("isolated", true);
        d.set("learning", false);
        d.set("owner", t.uid);
        d.set("group", t.gid);
        Some(d)
    }

    fn observed(&self, _: &Ctx, at: At) -> Option<Attrs> {
        let At::Tenant(id, obs) = at else { return None };
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

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&TapAttrs>,
        _: &Documents,
    ) {
        let t = super::tenant_mut(obs, id);
        t.tap = after.map(|a| TapObs {
            master: Some(a.master.clone()),
            up: a.up,
            isolated: Some(a.isolated),
            learning: Some(a.learning),
            owner: Some(a.owner),
            group: Some(a.group),
        });
    }
}
