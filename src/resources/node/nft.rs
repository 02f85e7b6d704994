//! `node.nft`: mvm's two nftables tables, `bridge mvm_l2` (L2
//! anti-spoofing in bridge prerouting, before the FDB learns, and no
//! tap-to-tap forwarding) and `inet mvm` (what tenants may reach on the
//! host and beyond, and what may reach them), rendered from node.toml by
//! `net::ruleset`. Compared with the kernel chain by chain and rule by rule
//! (a rule deleted or altered by hand is drift), and applied as one `nft -j
//! -f -` transaction that refills mvm's chains and keeps every set's
//! elements — the tenant elements are `tenant.<id>.nft`. mvm never touches
//! another table.

use crate::host::HostResult;
use crate::net::ruleset::{self, Ruleset};
use crate::observed::{NftTableObs, Observed};
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, NodeView, PlanCtx, Provider, Resource, Scope,
    Subject,
};
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use serde::Deserialize;
use std::collections::BTreeMap;

pub struct NodeNft;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftAttrs {
    /// `"bridge mvm_l2"`, `"inet mvm"`.
    pub tables: Vec<String>,
    /// `"<family> <table> <chain>: <spec>"`.
    pub chains: Vec<String>,
    /// `"<family> <table> <set>: set|map <type>"`.
    pub sets: Vec<String>,
    /// `"<family> <table> <chain>: <rule>"`, chain by chain in order.
    pub rules: Vec<String>,
}

/// The attributes of a ruleset, in the order the probe reports them:
/// tables, then chains by name, each chain's rules in order.
fn attrs_of(rs: &Ruleset) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let mut tables: Vec<String> = [ruleset::BRIDGE_TABLE, ruleset::INET_TABLE]
        .iter()
        .map(|(f, t)| format!("{f} {t}"))
        .collect();
    tables.sort();
    let mut chains: Vec<String> = rs.chains.iter().map(|c| c.spec()).collect();
    chains.sort();
    let mut sets: Vec<String> = rs.sets.iter().map(|s| s.spec()).collect();
    sets.sort();
    let mut by_chain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rs.rules {
        by_chain
            .entry(format!("{} {} {}", r.family, r.table, r.chain))
            .or_default()
            .push(r.display());
    }
    let rules = by_chain.into_values().flatten().collect();
    (tables, chains, sets, rules)
}

/// The key (`"inet mvm forward"`) of a chain or set line.
fn key(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(k, _)| k)
}

/// Why mvm's tables on the host are not this node's to manage, if they
/// are not: their `owner` chain names another node (two mvm nodes in one
/// network namespace would rewrite and prune each other's rules and
/// elements). Tables without the chain are an mvm's before marks, and are
/// adopted.
pub fn foreign(ctx: &PlanCtx) -> Option<String> {
    let tables = ctx.observed.nft.as_ref()?;
    let (f, n) = ruleset::INET_TABLE;
    let t = tables.get(&format!("{f} {n}"))?;
    if !t.chains.contains(ruleset::OWNER_CHAIN) {
        return None;
    }
    let ours = ruleset::owner_rule(ctx.node).display();
    let have = t
        .rules
        .get(ruleset::OWNER_CHAIN)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if have == [ours.clone()] {
        return None;
    }
    Some(format!(
        "the nftables tables {f} {n} and bridge mvm_l2 belong to another mvm node: its {} chain holds {} where this node's mark is {ours:?}; run one mvm node per network namespace",
        ruleset::OWNER_CHAIN,
        if have.is_empty() {
            "no rule".to_string()
        } else {
            format!("{:?}", have.join("; "))
        }
    ))
}

impl Resource for NodeNft {
    type Attrs = NftAttrs;
    const WORD: &'static str = "nft";
    const NETWORK: bool = true;
    const SCOPE: Scope = Scope::Node;
    const REPLACE_ON: &'static [&'static str] = &[];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[]
    }

    /// Wanted while any tenant is on the node (planned or kept).
    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Node(view) = s else { return None };
        if view.tenants.is_empty() && view.kept.is_empty() {
            return None;
        }
        let (tables, chains, sets, rules) = attrs_of(&ruleset::render(ctx.node));
        let mut d = Desired::default();
        d.set("tables", tables);
        d.set("chains", chains);
        d.set("sets", sets);
        d.set("rules", rules);
        Some(d)
    }

    fn observed(&self, ctx: &PlanCtx, _: At) -> Option<Attrs> {
        let tables = ctx.observed.nft.as_ref()?;
        if tables.is_empty() || foreign(ctx).is_some() {
            return None;
        }
        let mut chains = Vec::new();
        let mut sets = Vec::new();
        let mut rules = Vec::new();
        for (table, t) in tables {
            for c in &t.chains {
                let spec = t.specs.get(c).cloned().unwrap_or_else(|| "regular".into());
                chains.push(format!("{table} {c}: {spec}"));
            }
            sets.extend(t.sets.values().cloned());
        }
        chains.sort();
        sets.sort();
        let mut by_chain: BTreeMap<String, &Vec<String>> = BTreeMap::new();
        for (table, t) in tables {
            for (c, rs) in &t.rules {
                by_chain.insert(format!("{table} {c}"), rs);
            }
        }
        for rs in by_chain.values() {
            rules.extend(rs.iter().cloned());
        }
        let mut a = Attrs::new();
        a.insert(
            "tables".into(),
            tables.keys().cloned().collect::<Vec<_>>().into(),
        );
        a.insert("chains".into(), chains.into());
        a.insert("sets".into(), sets.into());
        a.insert("rules".into(), rules.into());
        Some(a)
    }

    fn blocked(&self, ctx: &PlanCtx, _: Subject) -> Option<String> {
        ctx.observed
            .facts
            .get(crate::observed::fact::NFT)
            .filter(|f| f.as_str() == "not installed")
            .map(|_| "nft is not installed on this node (apt install nftables)".into())
            .or_else(|| foreign(ctx))
    }

    fn warnings(&self, ctx: &PlanCtx, _: &NodeView) -> Vec<String> {
        ctx.observed
            .facts
            .get(crate::observed::fact::NFT)
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
        let Some(a) = after else {
            obs.nft = Some(BTreeMap::new());
            return;
        };
        let mut tables: BTreeMap<String, NftTableObs> = a
            .tables
            .iter()
            .map(|t| (t.clone(), NftTableObs::default()))
            .collect();
        // "family table name: spec" → the table "family table".
        let split = |line: &str| {
            let k = key(line);
            let mut parts = k.rsplitn(2, ' ');
            let name = parts.next().unwrap_or_default().to_string();
            let table = parts.next().unwrap_or_default().to_string();
            (table, name)
        };
        for c in &a.chains {
            let (table, name) = split(c);
            let t = tables.entry(table).or_default();
            t.specs.insert(
                name.clone(),
                c.split_once(": ").map_or("", |x| x.1).to_string(),
            );
            t.chains.insert(name);
        }
        for s in &a.sets {
            let (table, name) = split(s);
            tables
                .entry(table)
                .or_default()
                .sets
                .insert(name, s.clone());
        }
        for r in &a.rules {
            let (table, chain) = split(r);
            tables
                .entry(table)
                .or_default()
                .rules
                .entry(chain)
                .or_default()
                .push(r.clone());
        }
        obs.nft = Some(tables);
    }

    fn check(&self, ctx: &PlanCtx, _: Option<&TenantId>, a: &NftAttrs) -> Result<(), String> {
        let (tables, chains, sets, rules) = attrs_of(&ruleset::render(ctx.node));
        if a.tables != tables || a.chains != chains || a.sets != sets || a.rules != rules {
            return Err("the tables, chains, sets or rules are not what node.toml renders".into());
        }
        Ok(())
    }
}

impl Provider<NftAttrs> for NodeNft {
    /// One transaction: tables, sets and chains added where missing, a
    /// chain whose spec differs made anew, chains and sets mvm no longer
    /// renders removed, every chain flushed and refilled from node.toml.
    /// Set elements stay; nothing outside mvm's two tables is touched.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        _: Option<&TenantId>,
        prior: Option<&NftAttrs>,
        _: &NftAttrs,
        _: &Documents,
    ) -> HostResult {
        let rs = ruleset::render(&ctx.node);
        let (mut replace, mut stale_chains, mut stale_sets) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(p) = prior {
            let want: Vec<String> = rs.chains.iter().map(|c| c.spec()).collect();
            for c in &p.chains {
                let k = key(c).to_string();
                match want.iter().find(|w| key(w) == k) {
                    Some(w) if w != c => replace.push(k),
                    Some(_) => {}
                    None => stale_chains.push(k),
                }
            }
            let want_sets: Vec<String> = rs.sets.iter().map(|s| s.spec()).collect();
            for s in &p.sets {
                if !want_sets.contains(s) {
                    stale_sets.push(key(s).to_string());
                }
            }
        }
        ctx.host.firewall.nft_apply(&ruleset::transaction(
            &rs,
            &replace,
            &stale_chains,
            &stale_sets,
        ))
    }

    /// Deletes mvm's two tables, and with them every tenant element.
    fn delete(&self, ctx: &ApplyCtx, _: Option<&TenantId>, _: Option<&NftAttrs>) -> HostResult {
        ctx.host.firewall.nft_apply(&ruleset::delete_tables())
    }
}
