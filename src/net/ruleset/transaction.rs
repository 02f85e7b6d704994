//! The transactions that make mvm's tables hold a ruleset, or delete them.

use super::{BRIDGE_TABLE, Chain, INET_TABLE, Ruleset};
use serde_json::{Value, json};

/// The commands (for `nft -j -f -`) that make mvm's tables hold exactly
/// `rs`, keeping every set's elements: tables, sets and chains are added
/// (a no-op where they exist), chains in `replace` are deleted and made
/// anew (their spec changed), every chain is flushed and refilled, and
/// the chains and sets in `stale` (present, no longer rendered) go — all
/// in one transaction, so a failure leaves the old ruleset.
pub fn transaction(
    rs: &Ruleset,
    replace: &[String],
    stale_chains: &[String],
    stale_sets: &[String],
) -> Value {
    let mut cmds = Vec::new();
    for (f, t) in [BRIDGE_TABLE, INET_TABLE] {
        cmds.push(json!({"add": {"table": {"family": f, "name": t}}}));
    }
    for c in &rs.chains {
        if !replace.contains(&c.key()) {
            cmds.push(json!({"add": {"chain": chain_json(c)}}));
        }
    }
    for c in rs.chains.iter() {
        if !replace.contains(&c.key()) {
            cmds.push(
                json!({"flush": {"chain": {"family": c.family, "table": c.table, "name": c.name}}}),
            );
        }
    }
    for key in stale_chains.iter().chain(replace.iter()) {
        let mut parts = key.splitn(3, ' ');
        let (f, t, n) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        cmds.push(json!({"flush": {"chain": {"family": f, "table": t, "name": n}}}));
        cmds.push(json!({"delete": {"chain": {"family": f, "table": t, "name": n}}}));
    }
    for c in rs.chains.iter().filter(|c| replace.contains(&c.key())) {
        cmds.push(json!({"add": {"chain": chain_json(c)}}));
    }
    for key in stale_sets {
        let mut parts = key.splitn(3, ' ');
        let (f, t, n) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        cmds.push(json!({"delete": {"set": {"family": f, "table": t, "name": n}}}));
    }
    for s in &rs.sets {
        let mut set =
            json!({"family": s.family, "table": s.table, "name": s.name, "type": s.key_type});
        if let Some(data) = s.map {
            set["map"] = json!(data);
            cmds.push(json!({"add": {"map": set}}));
        } else {
            cmds.push(json!({"add": {"set": set}}));
        }
    }
    for r in &rs.rules {
        let mut rule =
            json!({"family": r.family, "table": r.table, "chain": r.chain, "expr": r.expr});
        if let Some(c) = &r.comment {
            rule["comment"] = json!(c);
        }
        cmds.push(json!({"add": {"rule": rule}}));
    }
    json!({ "nftables": cmds })
}

fn chain_json(c: &Chain) -> Value {
    let mut j = json!({"family": c.family, "table": c.table, "name": c.name});
    if let Some((t, h, p, pol)) = c.base {
        j["type"] = json!(t);
        j["hook"] = json!(h);
        j["prio"] = json!(p);
        j["policy"] = json!(pol);
    }
    j
}

/// The commands that delete mvm's tables (all of mvm's nft state).
pub fn delete_tables() -> Value {
    let cmds: Vec<Value> = [BRIDGE_TABLE, INET_TABLE]
        .iter()
        .flat_map(|(f, t)| {
            [
                // `add` first: deleting a table that is not there fails.
                json!({"add": {"table": {"family": f, "name": t}}}),
                json!({"delete": {"table": {"family": f, "name": t}}}),
            ]
        })
        .collect();
    json!({ "nftables": cmds })
}
