//! `node.metadata`: the metadata endpoint guests reach at the metadata
//! address, redirected by nftables to a listener on the gateway. It exists
//! while some tenant enables metadata — a desired one, or one kept on the
//! node though absent from desired.json (kept tenants keep what they
//! depend on).

use super::{At, Attrs, Ctx, Dep, Desired, Documents, Resource, Scope, Subject};
use crate::observed::Observed;
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use serde::Deserialize;

pub struct Metadata;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataAttrs {
    pub listen: String,
}

pub fn listen(ctx: &Ctx) -> String {
    format!("{}:{}", ctx.node.bridge.gateway, ctx.node.metadata.port)
}

impl Resource for Metadata {
    type Attrs = MetadataAttrs;
    const WORD: &'static str = "metadata";
    const SCOPE: Scope = Scope::Node;
    const REPLACE_ON: &'static [&'static str] = &["listen"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Node("bridge"), Dep::Node("nft")]
    }

    fn desired(&self, ctx: &Ctx, s: Subject) -> Option<Desired> {
        let Subject::Node(view) = s else { return None };
        let wanted = view.tenants.iter().any(|t| t.spec.metadata);
        // A kept tenant's metadata membership is what its nft elements say.
        let kept = view
            .kept
            .iter()
            .any(|t| t.nft.as_ref().is_some_and(|n| n.metadata));
        if !wanted && !kept {
            return None;
        }
        let mut d = Desired::default();
        d.set("listen", listen(ctx));
        Some(d)
    }

    fn observed(&self, ctx: &Ctx, _: At) -> Option<Attrs> {
        let l = ctx.observed.metadata_listener.as_ref()?;
        let mut a = Attrs::new();
        a.insert("listen".into(), l.clone().into());
        Some(a)
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        _: Option<&TenantId>,
        after: Option<&MetadataAttrs>,
        _: &Documents,
    ) {
        obs.metadata_listener = after.map(|a| a.listen.clone());
    }
}
