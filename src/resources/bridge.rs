//! `node.bridge`: the one bridge every tenant tap hangs off, carrying the
//! gateway address. Address and link state change in place.

use super::{Attrs, Ctx, Desired, attr_bool};
use crate::observed::{BridgeObs, Observed};
use serde_json::Value;

pub const REPLACE_ON: &[&str] = &["name"];

pub fn desired(ctx: &Ctx) -> Desired {
    let b = &ctx.node.bridge;
    let mut d = Desired::default();
    d.set("name", b.name.clone());
    d.set(
        "addresses",
        vec![format!("{}/{}", b.gateway, b.subnet.prefix_len())],
    );
    d.set("up", true);
    d
}

pub fn observed(ctx: &Ctx) -> Option<Attrs> {
    let b = ctx.observed.bridge.as_ref()?;
    let mut a = Attrs::new();
    a.insert("name".into(), ctx.node.bridge.name.clone().into());
    a.insert("addresses".into(), b.addresses.clone().into());
    a.insert("up".into(), b.up.into());
    Some(a)
}

pub fn simulate(obs: &mut Observed, after: Option<&Attrs>) {
    obs.bridge = after.map(|a| BridgeObs {
        up: attr_bool(a, "up"),
        addresses: match a.get("addresses") {
            Some(Value::Array(v)) => v
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        },
    });
}
