//! `node.metadata`: the metadata endpoint guests reach at the metadata
//! address, redirected by nftables to a listener on the gateway. It exists
//! only while some tenant enables metadata.

use super::{Attrs, Ctx, Desired, ResolvedTenant, attr_str};
use crate::observed::Observed;

pub const REPLACE_ON: &[&str] = &["listen"];

pub fn listen(ctx: &Ctx) -> String {
    format!("{}:{}", ctx.node.bridge.gateway, ctx.node.metadata.port)
}

pub fn desired(ctx: &Ctx, tenants: &[ResolvedTenant]) -> Option<Desired> {
    if !tenants.iter().any(|t| t.spec.metadata) {
        return None;
    }
    let mut d = Desired::default();
    d.set("listen", listen(ctx));
    Some(d)
}

pub fn observed(obs: &Observed) -> Option<Attrs> {
    let l = obs.metadata_listener.as_ref()?;
    let mut a = Attrs::new();
    a.insert("listen".into(), l.clone().into());
    Some(a)
}

pub fn simulate(obs: &mut Observed, after: Option<&Attrs>) {
    obs.metadata_listener = after.map(|a| attr_str(a, "listen"));
}
