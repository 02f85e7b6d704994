//! `node.nft`: mvm's two nftables tables, `bridge mvm_l2` (L2 anti-spoofing
//! and port isolation, evaluated in bridge prerouting before the FDB learns)
//! and `inet mvm` (what tenants may reach on the host and beyond). Tables
//! are replaced as a whole in one `nft -f` transaction, which nft treats as
//! an in-place update; tenant elements are separate resources.

use super::{Attrs, Desired};
use crate::observed::{NftTableObs, Observed};
use serde_json::Value;
use std::collections::BTreeMap;

pub const REPLACE_ON: &[&str] = &[];

/// mvm's tables and the chains each must have.
pub const TABLES: &[(&str, &[&str])] = &[
    ("bridge mvm_l2", &["guest_ingress", "guest_lateral"]),
    (
        "inet mvm",
        &["dstnat", "forward", "input", "srcnat", "tenant_to_host"],
    ),
];

fn chains_of(tables: impl Iterator<Item = (String, Vec<String>)>) -> Vec<String> {
    tables
        .flat_map(|(t, cs)| cs.into_iter().map(move |c| format!("{t} {c}")))
        .collect()
}

pub fn desired() -> Desired {
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
    d
}

pub fn observed(obs: &Observed) -> Option<Attrs> {
    let tables = obs.nft.as_ref()?;
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

pub fn simulate(obs: &mut Observed, after: Option<&Attrs>) {
    let mut tables = BTreeMap::new();
    if let Some(Value::Array(chains)) = after.and_then(|a| a.get("chains")) {
        for c in chains.iter().filter_map(Value::as_str) {
            let mut parts = c.rsplitn(2, ' ');
            let chain = parts.next().unwrap_or_default();
            let table = parts.next().unwrap_or_default();
            tables
                .entry(table.to_string())
                .or_insert_with(NftTableObs::default)
                .chains
                .insert(chain.to_string());
        }
    }
    obs.nft = Some(tables);
}
