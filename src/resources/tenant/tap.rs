//! `tenant.<id>.tap`: the tenant's persistent tap `tap-<id>`, created
//! through /dev/net/tun and owned by its uid/gid (so the jailed Firecracker
//! can open it), a port of the node bridge that is isolated (no frame
//! reaches another tenant's port) and does not learn, with one static FDB
//! entry: the tenant's MAC (the bridge never has to learn it, so a guest
//! cannot poison it). No host stack listens on the tap itself (its
//! sysctls: no IPv6, no ARP answered, `net::tap_sysctls`), and the bridge
//! has a permanent neighbour entry for the tenant, so the host never
//! floods a who-has for it to every tap. The link carries mvm's mark
//! (`net::owner_mark`): a tap mvm did not create, or another node's, is
//! neither managed nor deleted. Port flags, sysctls, the FDB and
//! neighbour entries change in place; a new owner needs a new device.

use crate::host::{HostError, HostResult, TapSpec};
use crate::net;
use crate::observed::{Observed, TapObs};
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, PlanCtx, Provider, Resource, Scope, Subject,
};
use crate::spec::TenantSpec;
use crate::spec::types::{MacAddr, TenantId};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

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
    /// The tap's own sysctls, name to value.
    pub sysctls: BTreeMap<String, String>,
    /// The bridge's permanent neighbour entry: `"<ip> <mac>"`.
    pub neighbour: Option<String>,
    /// The link's alias, mvm's mark.
    pub alias: Option<String>,
}

/// Why the tap on the host is not this node's to manage, if it is not:
/// another mark, or no mark and no record of the tenant here (a tap of
/// an mvm before marks is adopted only where its tenant has a record).
pub fn foreign(ctx: &PlanCtx, id: &TenantId) -> Option<String> {
    let t = ctx.observed.tenants.get(id)?;
    let tap = t.tap.as_ref()?;
    let ours = net::owner_mark(ctx.node);
    match &tap.alias {
        Some(a) if *a == ours => None,
        Some(a) => Some(format!(
            "{} exists with the alias {a:?}, not this node's ({ours:?}): another mvm node or other software owns it; delete it or give the tenant another id",
            id.tap_name()
        )),
        None if t.record.is_some() => None,
        None => Some(format!(
            "{} exists, has no mvm mark and this node has no record of {id}: it is not mvm's; delete it or give the tenant another id",
            id.tap_name()
        )),
    }
}

/// `"<ip> <mac>"` back into its parts.
fn parse_neighbour(s: &str) -> Option<(Ipv4Addr, MacAddr)> {
    let (ip, mac) = s.split_once(' ')?;
    Some((ip.parse().ok()?, mac.parse().ok()?))
}

fn wanted_sysctls(ctx: &PlanCtx, id: &TenantId) -> BTreeMap<String, String> {
    net::applicable(net::tap_sysctls(&id.tap_name()), &ctx.observed.sysctls)
}

impl Resource for Tap {
    type Attrs = TapAttrs;
    const WORD: &'static str = "tap";
    const NETWORK: bool = true;
    const DELETES_TOGETHER: bool = true;
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &["name", "owner", "group"];
    /// Whoever owns a tap can open it: never two tenants' the same.
    const UNIQUE: &'static [&'static str] = &["owner"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Node("bridge"), Dep::Tenant("dirs")]
    }

    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
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
        d.set(
            "sysctls",
            serde_json::to_value(wanted_sysctls(ctx, t.id())).unwrap_or_default(),
        );
        d.set("neighbour", format!("{} {}", t.ip, t.mac));
        d.set("alias", net::owner_mark(ctx.node));
        Some(d)
    }

    fn blocked(&self, ctx: &PlanCtx, s: Subject) -> Option<String> {
        let Subject::Tenant(t) = s else { return None };
        foreign(ctx, t.id())
    }

    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs> {
        let At::Tenant(id, obs) = at else { return None };
        let tap = obs.tap.as_ref()?;
        if foreign(ctx, id).is_some() {
            return None;
        }
        let sysctls: BTreeMap<String, String> = wanted_sysctls(ctx, id)
            .into_keys()
            .filter_map(|k| tap.sysctls.get(&k).map(|v| (k, v.clone())))
            .collect();
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
        a.insert(
            "sysctls".into(),
            serde_json::to_value(sysctls).unwrap_or_default(),
        );
        let opt_s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::from);
        a.insert("neighbour".into(), opt_s(&tap.neighbour));
        a.insert("alias".into(), opt_s(&tap.alias));
        Some(a)
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&TapAttrs>,
        _: &Documents,
    ) {
        let t = crate::resources::tenant_mut(obs, id);
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
            sysctls: a.sysctls.clone(),
            neighbour: a.neighbour.clone(),
            alias: a.alias.clone(),
        });
        if let Some(a) = after {
            obs.sysctls.extend(a.sysctls.clone());
        }
    }

    fn identity(&self, a: &TapAttrs) -> Vec<(&'static str, String)> {
        let mut out = vec![("mac", a.fdb.clone())];
        out.extend(a.owner.map(|u| ("uid", u.to_string())));
        out.extend(a.group.map(|g| ("gid", g.to_string())));
        out.extend(
            a.neighbour
                .as_deref()
                .and_then(parse_neighbour)
                .map(|(ip, mac)| [("ip", ip.to_string()), ("mac", mac.to_string())])
                .into_iter()
                .flatten(),
        );
        out
    }

    fn check(&self, ctx: &PlanCtx, id: Option<&TenantId>, a: &TapAttrs) -> Result<(), String> {
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
        let mac = match a.fdb.parse::<MacAddr>() {
            Ok(m) if m.is_unicast() => m,
            _ => return Err(format!("fdb {:?} is not one unicast MAC", a.fdb)),
        };
        let managed = net::tap_sysctls(&id.tap_name());
        for (k, v) in &a.sysctls {
            match managed.iter().find(|(n, _, _)| n == k) {
                Some((_, want, _)) if want == v => {}
                _ => return Err(format!("sysctl {k} = {v:?} is not one mvm plans for a tap")),
            }
        }
        match a.neighbour.as_deref().map(parse_neighbour) {
            Some(Some((ip, m))) if m == mac && ctx.node.bridge.subnet.contains(&ip) => {}
            _ => {
                return Err(format!(
                    "neighbour {:?} is not \"<ip in {}> {mac}\"",
                    a.neighbour, ctx.node.bridge.subnet
                ));
            }
        }
        let ours = net::owner_mark(ctx.node);
        if a.alias.as_deref() != Some(ours.as_str()) {
            return Err(format!("alias {:?}; mvm only ever plans {ours:?}", a.alias));
        }
        Ok(())
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
        let bad = |why: String| HostError::other_on("create tap", &name, why);
        let (Some(owner), Some(group)) = (after.owner, after.group) else {
            return Err(bad("the plan gives the tap no owner".into()));
        };
        let mac: MacAddr = after
            .fdb
            .parse()
            .map_err(|e| bad(format!("the plan's fdb is not a MAC: {e}")))?;
        let neighbour = match after.neighbour.as_deref().map(parse_neighbour) {
            Some(Some((ip, m))) if m == mac => ip,
            _ => {
                return Err(bad(
                    "the plan's neighbour is not the tenant's IP and MAC".into()
                ));
            }
        };
        ctx.host.links.tap_ensure(&TapSpec {
            name: name.clone(),
            owner,
            group,
            master: ctx.node.bridge.name.clone(),
            mac: mac.0,
            sysctls: after.sysctls.clone().into_iter().collect(),
            neighbour,
            alias: net::owner_mark(&ctx.node),
        })
    }

    /// Removes the bridge's neighbour entry for the tenant, then the tap —
    /// only a tap with this node's mark (or none: a tap of an mvm before
    /// marks, which the plan adopted from the tenant's record).
    fn delete(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        before: Option<&TapAttrs>,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        delete_neighbour(ctx, before)?;
        ctx.host
            .links
            .tap_delete(&id.tap_name(), &net::owner_mark(&ctx.node))
    }

    /// Each tenant's neighbour entry, then all the taps in one request
    /// (`Links::taps_delete`): a prune of 500 tenants' taps waits for the
    /// kernel once, not 500 times.
    fn delete_together(
        &self,
        ctx: &ApplyCtx,
        items: &[(Option<&TenantId>, Option<&TapAttrs>)],
    ) -> Vec<HostResult> {
        let mut out: Vec<HostResult> = Vec::with_capacity(items.len());
        let mut names: Vec<String> = Vec::new();
        let mut slots: Vec<usize> = Vec::new();
        for (i, (id, before)) in items.iter().enumerate() {
            let id = id.expect("a tenant address");
            let neighbour = delete_neighbour(ctx, *before);
            if neighbour.is_ok() {
                names.push(id.tap_name());
                slots.push(i);
            }
            out.push(neighbour);
        }
        let deleted = ctx
            .host
            .links
            .taps_delete(&names, &net::owner_mark(&ctx.node));
        for (i, r) in slots.into_iter().zip(deleted) {
            out[i] = r;
        }
        out
    }
}

/// Removes the bridge's neighbour entry the tap had, if it had one.
fn delete_neighbour(ctx: &ApplyCtx, before: Option<&TapAttrs>) -> HostResult {
    match before
        .and_then(|b| b.neighbour.as_deref())
        .and_then(parse_neighbour)
    {
        Some((ip, _)) => ctx.host.links.neighbour_delete(&ctx.node.bridge.name, ip),
        None => Ok(()),
    }
}
