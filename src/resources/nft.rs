//! `node.nft`: mvm's two nftables tables, `bridge mvm_l2` (L2 anti-spoofing
//! and port isolation, evaluated in bridge prerouting before the FDB learns)
//! and `inet mvm` (what tenants may reach on the host and beyond). Tables
//! are replaced as a whole in one `nft -f` transaction, which nft treats as
//! an in-place update; tenant elements are separate resources.

use super::{At, Attrs, Ctx, Dep, Desired, Documents, NodeView, Resource, Scope, Subject};
use crate::observed::{NftTableObs, Observed};
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use serde::Deserialize;
use std::collections::BTreeMap;

pub struct NodeNft;

/// mvm's tables and the chains each must have.
pub const TABLES: &[(&str, &[&str])] = &[
    ("bridge mvm_l2", &["guest_ingress", "guest_lateral"]),
    (
        "inet mvm",
        &["dstnat", "forward", "input", "srcnat", "tenant_to_host"],
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftAttrs {
    pub tables: Vec<String>,
    /// `"<family> <table> <chain>"`.
    pub chains: Vec<String>,
}

fn chains_of(tables: impl Iterator<Item = (String, Vec<String>)>) -> Vec<String> {
    tables
        .flat_map(|(t, cs)| cs.into_iter().map(move |c| format!("{t} {c}")))
        .collect()
}

impl Resource for NodeNft {
    type Attrs = NftAttrs;
    const WORD: &'static str = "nft";
    const SCOPE: Scope = Scope::Node;
    const REPLACE_ON: &'static [&'static str] = &[];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[]
    }

    fn desired(&self, _: &Ctx, _: Subject) -> Option<Desired> {
        let mut d = Desired::default();
        d.set(
            "tables",
            TABLES
                .iter()
                .map(|(t, _)| t.to_string())
                .collect::<Vec<_>>(),
        );
        d.set(
            "chains",
            chains_of(
                TABLES
                    .iter()
                    .map(|(t, cs)| (t.to_string(), cs.iter().map(|c| c.to_string()).collect())),
            ),
        );
        Some(d)
    }

    fn observed(&self, ctx: &Ctx, _: At) -> Option<Attrs> {
        let tables = ctx.observed.nft.as_ref()?;
        if tables.is_empty() {
            return None;
        }
        let mut a = Attrs::new();
        a.insert(
            "tables".into(),
            tables.keys().cloned().collect::<Vec<_>>().into(),
        );
        a.insert(
            "chains".into(),
            chains_of(
                tables
                    .iter()
                    .map(|(t, o)| (t.clone(), o.chains.iter().cloned().collect())),
            )
            .into(),
        );
        Some(a)
    }

    fn warnings(&self, ctx: &Ctx, _: &NodeView) -> Vec<String> {
        ctx.observed
            .facts
            .get("nft")
            .map(|reason| format!("nftables could not be read ({reason}): node.nft and tenant.*.nft are planned as if absent"))
            .into_iter()
            .collect()
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        _: Option<&TenantId>,
        after: Option<&NftAttrs>,
        _: &Documents,
    ) {
        let mut tables = BTreeMap::new();
        for c in after.map(|a| a.chains.as_slice()).unwrap_or_default() {
            let mut parts = c.rsplitn(2, ' ');
            let chain = parts.next().unwrap_or_default();
            let table = parts.next().unwrap_or_default();
            tables
                .entry(table.to_string())
                .or_insert_with(NftTableObs::default)
                .chains
                .insert(chain.to_string());
        }
        obs.nft = Some(tables);
    }
}
