//! `node.bridge`: the one bridge every tenant tap hangs off, carrying the
//! gateway address. Address and link state change in place.

use super::{At, Attrs, Ctx, Dep, Desired, Resource, Scope, Subject};
use crate::observed::{BridgeObs, Observed};
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use serde::Deserialize;

pub struct Bridge;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeAttrs {
    pub name: String,
    pub addresses: Vec<String>,
    pub up: bool,
}

impl Resource for Bridge {
    type Attrs = BridgeAttrs;
    const WORD: &'static str = "bridge";
    const SCOPE: Scope = Scope::Node;
    const REPLACE_ON: &'static [&'static str] = &["name"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[]
    }

    fn desired(&self, ctx: &Ctx, _: Subject) -> Option<Desired> {
        let b = &ctx.node.bridge;
        let mut d = Desired::default();
        d.set("name", b.name.clone());
        d.set(
            "addresses",
            vec![format!("{}/{}", b.gateway, b.subnet.prefix_len())],
        );
        d.set("up", true);
        Some(d)
    }

    fn observed(&self, ctx: &Ctx, _: At) -> Option<Attrs> {
        let b = ctx.observed.bridge.as_ref()?;
        let mut a = Attrs::new();
        a.insert("name".into(), ctx.node.bridge.name.clone().into());
        a.insert("addresses".into(), b.addresses.clone().into());
        a.insert("up".into(), b.up.into());
        Some(a)
    }

    fn warnings(&self, ctx: &Ctx, _: &super::NodeView) -> Vec<String> {
        ctx.observed
            .facts
            .get("netlink")
            .map(|reason| format!("network links could not be read ({reason}): node.bridge and tenant.*.tap are planned as if absent"))
            .into_iter()
            .collect()
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        _: Option<&TenantId>,
        after: Option<&BridgeAttrs>,
        _: &super::Documents,
    ) {
        obs.bridge = after.map(|a| BridgeObs {
            up: a.up,
            addresses: a.addresses.clone(),
        });
    }
}
