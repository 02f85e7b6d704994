//! mvm's nftables ruleset, rendered from the node config: two tables,
//! `bridge mvm_l2` (L2 anti-spoofing in bridge prerouting, before the FDB
//! learns, and no tap-to-tap forwarding) and `inet mvm` (what tenants may
//! reach on the host and beyond, what may reach them). Per-tenant facts are
//! elements of sets and maps keyed by tap, so the chains hold the same
//! rules for one tenant or five thousand.
//!
//! Each rule is written twice: as nft text (what a reviewer reads in a
//! plan) and as the JSON nft lists for it (`nft -j list ruleset`, with no
//! handles and zeroed counters). The JSON is what is applied (`nft -j -f -`)
//! and what the live ruleset is compared with, rule by rule;
//! `tests/host_net.rs` loads the rendered ruleset into a scratch network
//! namespace and checks that nft lists exactly this JSON back.
//!
//! Pure: no I/O. Here the types and their canonical form; the policy in
//! `policy.rs` (`render`), nft expressions in `expr.rs`, tenants' set
//! elements in `elements.rs`, the apply and delete transactions in
//! `transaction.rs`. README's network section explains the policy.

mod elements;
mod expr;
mod policy;
mod transaction;

pub use elements::{
    TENANT_SETS, element_changes, element_commands, element_display, element_parse,
    tenant_element_lines, tenant_elements,
};
pub use policy::render;
pub use transaction::{delete_tables, transaction};

use crate::spec::NodeConfig;
use expr::{counter, ct_state, is, meta, verdict};
use serde_json::{Value, json};

pub const BRIDGE_TABLE: (&str, &str) = ("bridge", "mvm_l2");
pub const INET_TABLE: (&str, &str) = ("inet", "mvm");
/// Every tap of a tenant matches this.
pub const TAP_GLOB: &str = "tap-*";
/// IEEE 802.1D's reserved link-local group addresses (STP, pause, LACP,
/// 802.1X, LLDP, …), which a bridge never forwards by default.
pub const LINK_LOCAL_GROUP_FIRST: &str = "01:80:c2:00:00:00";
pub const LINK_LOCAL_GROUP_LAST: &str = "01:80:c2:00:00:0f";

/// A chain; `base` is `(type, hook, priority, policy)` for a base chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub family: &'static str,
    pub table: &'static str,
    pub name: &'static str,
    pub base: Option<(&'static str, &'static str, i32, &'static str)>,
}

impl Chain {
    /// `"inet mvm forward"`.
    pub fn key(&self) -> String {
        format!("{} {} {}", self.family, self.table, self.name)
    }

    /// How a plan shows it: `inet mvm forward: type filter hook forward
    /// priority 0; policy accept`, or `inet mvm tenant_out: regular`.
    pub fn spec(&self) -> String {
        format!("{}: {}", self.key(), spec_of(self.base))
    }
}

/// A base chain's spec as text.
pub fn spec_of(base: Option<(&str, &str, i32, &str)>) -> String {
    match base {
        Some((t, h, p, pol)) => format!("type {t} hook {h} priority {p}; policy {pol}"),
        None => "regular".to_string(),
    }
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq)]
pub struct SetDef {
    pub family: &'static str,
    pub table: &'static str,
    pub name: &'static str,
    /// nft's `type` (a string, or a list for a concatenation).
    pub key_type: Value,
    /// For a map, the data type.
    pub map: Option<&'static str>,
}

impl SetDef {
    /// `"bridge mvm_l2 port_mark: ifname : mark"`.
    pub fn spec(&self) -> String {
        set_spec(self.family, self.table, self.name, &self.key_type, self.map)
    }
}

/// A set's spec as text.
pub fn set_spec(family: &str, table: &str, name: &str, key: &Value, map: Option<&str>) -> String {
    let key = match key {
        Value::Array(parts) => parts
            .iter()
            .map(|p| p.as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(" . "),
        other => other.as_str().unwrap_or("?").to_string(),
    };
    match map {
        Some(data) => format!("{family} {table} {name}: map {key} : {data}"),
        None => format!("{family} {table} {name}: set {key}"),
    }
}

/// One rule: where, as text, and as nft lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub family: &'static str,
    pub table: &'static str,
    pub chain: &'static str,
    pub text: String,
    pub comment: Option<String>,
    pub expr: Value,
}

impl Rule {
    /// The rule as a plan shows it: `inet mvm forward: iifname "mvmbr0"
    /// jump tenant_out`.
    pub fn display(&self) -> String {
        let comment = self
            .comment
            .as_ref()
            .map(|c| format!(" comment \"{c}\""))
            .unwrap_or_default();
        format!(
            "{} {} {}: {}{comment}",
            self.family, self.table, self.chain, self.text
        )
    }

    /// The canonical form compared with the live ruleset.
    pub fn canonical(&self) -> String {
        canonical_rule(&self.expr, self.comment.as_deref())
    }
}

/// The whole ruleset.
#[derive(Debug, Clone, PartialEq)]
pub struct Ruleset {
    pub sets: Vec<SetDef>,
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
}

/// A rule's canonical text: its expressions (counters zeroed) and comment
/// as JSON with sorted keys, whatever the JSON came from.
pub fn canonical_rule(expr: &Value, comment: Option<&str>) -> String {
    let mut v = json!({ "expr": zero_counters(expr) });
    if let Some(c) = comment {
        v["comment"] = Value::String(c.to_string());
    }
    canonical(&v)
}

fn zero_counters(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    if k == "counter" && x.is_object() {
                        (k.clone(), json!({"packets": 0, "bytes": 0}))
                    } else {
                        (k.clone(), zero_counters(x))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(zero_counters).collect()),
        other => other.clone(),
    }
}

/// JSON with object keys sorted, so equal values print equally.
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json may keep insertion order (preserve_order); build the
    // string by hand from a sorted walk instead of trusting the map.
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[*k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(&sorted(v), &mut out);
    out
}

// Expression builders, in the shape nft lists them.
/// The chain that names the node owning mvm's tables.
pub const OWNER_CHAIN: &str = "owner";

/// `inet mvm owner: counter comment "mvm node <state dir>"`.
pub fn owner_rule(node: &NodeConfig) -> Rule {
    Rule {
        family: INET_TABLE.0,
        table: INET_TABLE.1,
        chain: OWNER_CHAIN,
        text: "counter".into(),
        comment: Some(crate::net::owner_mark(node)),
        expr: Value::Array(vec![counter()]),
    }
}

/// The rules being rendered, in order.
pub(super) struct Rules(pub(super) Vec<Rule>);

impl Rules {
    pub(super) fn add(
        &mut self,
        (family, table): (&'static str, &'static str),
        chain: &'static str,
        text: impl Into<String>,
        comment: Option<&'static str>,
        expr: Vec<Value>,
    ) {
        self.0.push(Rule {
            family,
            table,
            chain,
            text: text.into(),
            comment: comment.map(str::to_string),
            expr: Value::Array(expr),
        });
    }

    /// `iifname "tap-*" counter drop`: a tap's traffic in an inet hook.
    pub(super) fn tap_bypass(&mut self, chain: &'static str) {
        let expr = vec![
            is(meta("iifname"), json!(TAP_GLOB)),
            counter(),
            verdict("drop"),
        ];
        self.add(
            INET_TABLE,
            chain,
            format!("iifname \"{TAP_GLOB}\" counter drop"),
            Some("a tap reaches the host only through the bridge"),
            expr,
        );
    }

    pub(super) fn established(&mut self, chain: &'static str) {
        let expr = vec![ct_state(&["established", "related"]), verdict("accept")];
        self.add(
            INET_TABLE,
            chain,
            "ct state established,related accept",
            None,
            expr,
        );
    }

    pub(super) fn invalid(&mut self, chain: &'static str) {
        let expr = vec![ct_state(&["invalid"]), verdict("drop")];
        self.add(INET_TABLE, chain, "ct state invalid drop", None, expr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::MacAddr;
    use std::net::Ipv4Addr;

    #[test]
    fn the_policy_has_the_same_rules_for_any_number_of_tenants_and_no_duplicates() {
        let node = NodeConfig::default_config();
        let rs = render(&node);
        let mut seen = std::collections::HashSet::new();
        for r in &rs.rules {
            assert!(
                rs.chains
                    .iter()
                    .any(|c| c.name == r.chain && c.table == r.table),
                "{}",
                r.display()
            );
            seen.insert((r.chain, r.canonical()));
        }
        assert!(rs.rules.len() < 45, "{}", rs.rules.len());
        // Rules in a chain are distinct except where position matters.
        assert!(seen.len() >= rs.rules.len() - 3);
    }

    #[test]
    fn canonical_ignores_key_order_and_counter_values() {
        let a = json!([{"counter": {"packets": 5, "bytes": 900}}, {"drop": null}]);
        let b = json!([{"counter": {"bytes": 0, "packets": 0}}, {"drop": null}]);
        assert_eq!(canonical_rule(&a, None), canonical_rule(&b, None));
        assert_ne!(canonical_rule(&a, Some("x")), canonical_rule(&b, None));
    }

    #[test]
    fn element_changes_delete_what_went_and_add_what_came() {
        let mac: MacAddr = "02:00:0a:c8:00:0a".parse().unwrap();
        let ip: Ipv4Addr = "10.200.0.10".parse().unwrap();
        let before = tenant_elements("tap-a", mac, ip, 100000, true, false);
        let after = tenant_elements("tap-a", mac, ip, 100001, false, true);
        let cmds = element_changes(&before, &after);
        let text = cmds.to_string();
        assert!(
            text.contains(
                r#"{"delete":{"element":{"elem":["tap-a"],"family":"bridge","name":"port_mark""#
            ) || text.contains("\"delete\""),
            "{text}"
        );
        let n = cmds["nftables"].as_array().unwrap().len();
        assert_eq!(n, 4, "{text}"); // -mark, -metadata, +mark, +ssh
        assert_eq!(
            element_changes(&after, &after)["nftables"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn elements_print_and_parse_back() {
        let mac: MacAddr = "02:00:0a:c8:00:0a".parse().unwrap();
        let ip: Ipv4Addr = "10.200.0.10".parse().unwrap();
        let elems = tenant_elements("tap-a", mac, ip, 100000, true, true);
        assert_eq!(elems.len(), 5);
        for (f, t, n, e) in &elems {
            let line = element_display(f, t, n, e).unwrap();
            assert_eq!(
                element_parse(&line),
                Some((*f, *t, *n, e.clone())),
                "{line}"
            );
        }
        let lines = tenant_element_lines("tap-a", mac, ip, 100000, false, false);
        assert_eq!(
            lines[0],
            "bridge mvm_l2 port_arp: tap-a . 02:00:0a:c8:00:0a . 02:00:0a:c8:00:0a . 10.200.0.10"
        );
        assert!(element_parse("inet filter x: 1").is_none());
    }

    /// The plan's lines are written directly; they must be what
    /// `element_display` prints for the elements nft is given.
    #[test]
    fn element_lines_are_the_elements_displayed() {
        let mac: MacAddr = "02:00:0a:c8:00:0a".parse().unwrap();
        let ip: Ipv4Addr = "10.200.0.10".parse().unwrap();
        for (metadata, ssh) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut shown: Vec<String> = tenant_elements("tap-a", mac, ip, 100000, metadata, ssh)
                .iter()
                .filter_map(|(f, t, n, e)| element_display(f, t, n, e))
                .collect();
            shown.sort();
            assert_eq!(
                tenant_element_lines("tap-a", mac, ip, 100000, metadata, ssh),
                shown
            );
        }
    }
}
