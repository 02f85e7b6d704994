//! `tenant.<id>.tap`: the tenant's persistent tap `tap-<id>`, created
//! through /dev/net/tun and owned by its uid/gid (so the jailed Firecracker
//! can open it), a port of the node bridge that is isolated (no frame
//! reaches another tenant's port) and does not learn, with one static FDB
//! entry: the tenant's MAC (the bridge never has to learn it, so a guest
//! cannot poison it). Port flags and the FDB entry change in place; a new
//! owner needs a new device.

use super::{
    ApplyCtx, At, Attrs, Ctx, Dep, Desired, Documents, Provider, Resource, Scope, Subject,
};
use crate::observed::{Observed, TapObs};
use crate::providers::host::{HostError, HostResult, TapSpec};
use crate::spec::TenantSpec;
use crate::spec::types::{MacAddr, TenantId};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

pub struct Tap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapAttrs {
    pub name: String,
    pub master: Option<String>,
    pub up: bool,
    pub isolated: Option<bool>,
    pub learning: Option<bool>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    /// The static FDB entries, comma-separated MACs.
    pub fdb: String,
}

impl Resource for Tap {
    type Attrs = TapAttrs;
    const WORD: &'static str = "tap";
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &["name", "owner", "group"];
    /// Whoever owns a tap can open it: never two tenants' the same.
    const UNIQUE: &'static [&'static str] = &["owner"];

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
        d.set("fdb", t.mac.to_string());
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
        a.insert("fdb".into(), tap.fdb.join(",").into());
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
            master: a.master.clone(),
            up: a.up,
            isolated: a.isolated,
            learning: a.learning,
            owner: a.owner,
            group: a.group,
            fdb: a
                .fdb
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }

    fn provider(&self) -> Option<&dyn Provider<TapAttrs>> {
        Some(self)
    }

    fn check(&self, ctx: &Ctx, id: Option<&TenantId>, a: &TapAttrs) -> Result<(), String> {
        let id = id.ok_or("not a tenant address")?;
        if a.name != id.tap_name() {
            return Err(format!(
                "name is {:?}; this tenant's tap is {}",
                a.name,
                id.tap_name()
            ));
        }
        if a.master.as_deref() != Some(ctx.node.bridge.name.as_str()) {
            return Err(format!(
                "master is {:?}; node.toml names {}",
                a.master, ctx.node.bridge.name
            ));
        }
        if !a.up || a.isolated != Some(true) || a.learning != Some(false) {
            return Err("a tap is always planned up, isolated, not learning".into());
        }
        let (lo, hi) = (ctx.node.tenants.uid_min, ctx.node.tenants.uid_max);
        for (name, v) in [("owner", a.owner), ("group", a.group)] {
            match v {
                Some(v) if (lo..=hi).contains(&v) => {}
                _ => {
                    return Err(format!(
                        "{name} {v:?} is outside the tenant range {lo}..={hi}"
                    ));
                }
            }
        }
        match a.fdb.parse::<MacAddr>() {
            Ok(m) if m.is_unicast() => Ok(()),
            _ => Err(format!("fdb {:?} is not one unicast MAC", a.fdb)),
        }
    }
}

impl Provider<TapAttrs> for Tap {
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        _: Option<&TapAttrs>,
        after: &TapAttrs,
        _: &Documents,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        let name = id.tap_name();
        let bad = |why: String| HostError::other("create tap", Path::new(&name), why);
        let (Some(owner), Some(group)) = (after.owner, after.group) else {
            return Err(bad("the plan gives the tap no owner".into()));
        };
        let mac: MacAddr = after
            .fdb
            .parse()
            .map_err(|e| bad(format!("the plan's fdb is not a MAC: {e}")))?;
        ctx.host.links.tap_ensure(&TapSpec {
            name: name.clone(),
            owner,
            group,
            master: ctx.node.bridge.name.clone(),
            mac: mac.0,
        })
    }

    fn delete(&self, ctx: &ApplyCtx, id: Option<&TenantId>, _: Option<&TapAttrs>) -> HostResult {
        let id = id.expect("a tenant address");
        ctx.host.links.link_delete(&id.tap_name())
    }
}
