//! `node.bridge`: the one bridge every tenant tap hangs off, carrying the
//! gateway address, and the network sysctls the policy relies on
//! (`net::sysctls`: forwarding, no redirects, no RA on the bridge, no
//! br_netfilter hand-off, fwmark on accept). Created and changed over
//! rtnetlink; address, link state and sysctls change in place, and a
//! sysctl that drifted is an update.

use crate::host::{HostError, HostResult};
use crate::net;
use crate::observed::{BridgeObs, Observed};
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, NodeView, PlanCtx, Provider, Resource, Scope,
    Subject,
};
use crate::spec::TenantSpec;
use crate::spec::types::{MacAddr, TenantId};
use serde::Deserialize;
use std::collections::BTreeMap;

pub struct Bridge;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeAttrs {
    pub name: String,
    pub mac: Option<MacAddr>,
    pub addresses: Vec<ipnet::Ipv4Net>,
    pub up: bool,
    /// Sysctl name to value.
    pub sysctls: BTreeMap<String, String>,
    /// The link's alias, mvm's mark.
    pub alias: Option<String>,
}

/// Why the bridge of node.toml's name on the host is not this node's to
/// manage, if it is not: another alias, or none and not mvm's fixed MAC
/// (a bridge of an mvm before marks has that MAC, and is adopted).
pub fn foreign(ctx: &PlanCtx) -> Option<String> {
    let b = ctx.observed.bridge.as_ref()?;
    let name = &ctx.node.bridge.name;
    let ours = net::owner_mark(ctx.node);
    match &b.alias {
        Some(a) if *a == ours => None,
        Some(a) => Some(format!(
            "{name} exists with the alias {a:?}, not this node's ({ours:?}): another mvm node or other software owns it; set bridge.name in node.toml to a bridge of this node's own"
        )),
        None if b.mac == Some(bridge_mac(ctx.node)) => None,
        None => Some(format!(
            "{name} exists and mvm did not create it (no mvm mark, MAC {}); set bridge.name in node.toml to a name no link has",
            b.mac.map_or("unknown".to_string(), |m| m.to_string())
        )),
    }
}

/// The bridge's MAC: fixed (a bridge without one takes its lowest port's,
/// which changes under the guests' ARP caches as tenants come and go) and
/// derived from the gateway address like tenant MACs are from theirs.
pub fn bridge_mac(node: &crate::spec::NodeConfig) -> MacAddr {
    MacAddr::from_ipv4(node.bridge.gateway)
}

/// The sysctls to manage on this host, with their values: those that
/// apply here (`When`), read from what the probe found.
fn wanted_sysctls(ctx: &PlanCtx) -> BTreeMap<String, String> {
    net::applicable(net::sysctls(ctx.node), &ctx.observed.sysctls)
}

/// Why the bridge's subnet cannot be used here, if it cannot: it
/// overlaps an address or route another link of the host already has
/// (tenants would shadow those hosts, or the host would route them away).
fn overlap(ctx: &PlanCtx) -> Option<String> {
    let subnet = ctx.node.bridge.subnet;
    let clash: Vec<String> = ctx
        .observed
        .host_networks
        .iter()
        .filter(|h| subnet.contains(&h.net.network()) || h.net.contains(&subnet.network()))
        .map(|h| format!("{} on {} ({})", h.net, h.link, h.source))
        .collect();
    (!clash.is_empty()).then(|| {
        format!(
            "bridge.subnet {subnet} overlaps what the host already has: {}; choose another bridge.subnet in node.toml",
            clash.join(", ")
        )
    })
}

impl Resource for Bridge {
    type Attrs = BridgeAttrs;
    const WORD: &'static str = "bridge";
    const NETWORK: bool = true;
    const SCOPE: Scope = Scope::Node;
    const REPLACE_ON: &'static [&'static str] = &["name"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[]
    }

    /// Wanted while any tenant is on the node (planned or kept).
    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Node(view) = s else { return None };
        if view.tenants.is_empty() && view.kept.is_empty() {
            return None;
        }
        let b = &ctx.node.bridge;
        let mut d = Desired::default();
        d.set("name", b.name.clone());
        d.set("mac", bridge_mac(ctx.node).to_string());
        d.set(
            "addresses",
            vec![format!("{}/{}", b.gateway, b.subnet.prefix_len())],
        );
        d.set("up", true);
        d.set(
            "sysctls",
            serde_json::to_value(wanted_sysctls(ctx)).unwrap_or_default(),
        );
        d.set("alias", net::owner_mark(ctx.node));
        Some(d)
    }

    fn blocked(&self, ctx: &PlanCtx, s: Subject) -> Option<String> {
        let Subject::Node(_) = s else { return None };
        foreign(ctx).or_else(|| overlap(ctx))
    }

    fn observed(&self, ctx: &PlanCtx, _: At) -> Option<Attrs> {
        let b = ctx.observed.bridge.as_ref()?;
        if foreign(ctx).is_some() {
            return None;
        }
        // The managed sysctls as they are; one the kernel lacks is absent.
        let sysctls: BTreeMap<String, String> = wanted_sysctls(ctx)
            .into_keys()
            .filter_map(|k| ctx.observed.sysctls.get(&k).map(|v| (k, v.clone())))
            .collect();
        let mut a = Attrs::new();
        a.insert("name".into(), ctx.node.bridge.name.clone().into());
        a.insert(
            "mac".into(),
            b.mac
                .map_or(serde_json::Value::Null, |m| m.to_string().into()),
        );
        a.insert("addresses".into(), b.addresses.clone().into());
        a.insert("up".into(), b.up.into());
        a.insert(
            "sysctls".into(),
            serde_json::to_value(sysctls).unwrap_or_default(),
        );
        a.insert(
            "alias".into(),
            b.alias
                .clone()
                .map_or(serde_json::Value::Null, serde_json::Value::from),
        );
        Some(a)
    }

    fn warnings(&self, ctx: &PlanCtx, _: &NodeView) -> Vec<String> {
        ctx.observed
            .facts
            .get(crate::observed::fact::NETLINK)
            .map(|reason| format!("network links could not be read ({reason}): node.bridge and tenant.*.tap are planned as if absent"))
            .into_iter()
            .collect()
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        _: Option<&TenantId>,
        after: Option<&BridgeAttrs>,
        _: &Documents,
    ) {
        let ports = obs
            .bridge
            .as_ref()
            .map(|b| b.ports.clone())
            .unwrap_or_default();
        obs.bridge = after.map(|a| BridgeObs {
            up: a.up,
            addresses: a.addresses.iter().map(|n| n.to_string()).collect(),
            mac: a.mac,
            ports,
            alias: a.alias.clone(),
        });
        if let Some(a) = after {
            obs.sysctls.extend(a.sysctls.clone());
        }
    }

    fn check(&self, ctx: &PlanCtx, _: Option<&TenantId>, a: &BridgeAttrs) -> Result<(), String> {
        let b = &ctx.node.bridge;
        if a.name != b.name {
            return Err(format!(
                "name is {:?}; node.toml names {:?}",
                a.name, b.name
            ));
        }
        let want: ipnet::Ipv4Net = format!("{}/{}", b.gateway, b.subnet.prefix_len())
            .parse()
            .map_err(|e| format!("{e}"))?;
        if a.addresses != [want] {
            return Err(format!("addresses are not [{want}]"));
        }
        if !a.up {
            return Err("up is false; mvm only ever plans the bridge up".into());
        }
        if a.mac != Some(bridge_mac(ctx.node)) {
            return Err(format!(
                "mac is {:?}; mvm only ever plans {}",
                a.mac,
                bridge_mac(ctx.node)
            ));
        }
        let ours = net::owner_mark(ctx.node);
        if a.alias.as_deref() != Some(ours.as_str()) {
            return Err(format!("alias {:?}; mvm only ever plans {ours:?}", a.alias));
        }
        let managed = net::sysctls(ctx.node);
        for (k, v) in &a.sysctls {
            match managed.iter().find(|(n, _, _)| n == k) {
                Some((_, want, _)) if want == v => {}
                Some((_, want, _)) => {
                    return Err(format!("sysctl {k} = {v:?}; mvm only ever plans {want:?}"));
                }
                None => return Err(format!("sysctl {k} is not one mvm manages")),
            }
        }
        Ok(())
    }
}

impl Provider<BridgeAttrs> for Bridge {
    /// Creates the bridge (if missing) with exactly the gateway address,
    /// up; then writes every managed sysctl — the bridge's own ones exist
    /// only once it does.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        _: Option<&TenantId>,
        _: Option<&BridgeAttrs>,
        after: &BridgeAttrs,
        _: &Documents,
    ) -> HostResult {
        let name = &ctx.node.bridge.name;
        if after.name != *name {
            return Err(HostError::other_on(
                "create bridge",
                name,
                format!("the plan names another bridge ({})", after.name),
            ));
        }
        ctx.host.links.bridge_ensure(
            name,
            bridge_mac(&ctx.node).0,
            &after.addresses,
            &net::owner_mark(&ctx.node),
        )?;
        for (k, v) in &after.sysctls {
            ctx.host.links.sysctl_write(k, v)?;
        }
        Ok(())
    }

    /// Deletes the bridge (its ports are detached by the kernel) — only
    /// one with this node's mark. The sysctls stay as they are: other
    /// software may rely on forwarding.
    fn delete(&self, ctx: &ApplyCtx, _: Option<&TenantId>, _: Option<&BridgeAttrs>) -> HostResult {
        ctx.host.links.bridge_delete(
            &ctx.node.bridge.name,
            bridge_mac(&ctx.node).0,
            &net::owner_mark(&ctx.node),
        )
    }
}
