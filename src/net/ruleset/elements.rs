//! A tenant's set and map elements: what they are for its tap, MAC, IP
//! and mark, how they read (`inet mvm ssh_v4: 10.200.0.2`), and the
//! commands that move a tenant from one set of elements to another.

use super::{BRIDGE_TABLE, INET_TABLE};
use crate::spec::types::{MacAddr, TAP_PREFIX};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

/// A tenant's elements, by set: `(family, table, set, element)`.
pub fn tenant_elements(
    tap: &str,
    mac: MacAddr,
    ip: Ipv4Addr,
    mark: u32,
    metadata: bool,
    ssh: bool,
) -> Vec<(&'static str, &'static str, &'static str, Value)> {
    debug_assert!(tap.starts_with(TAP_PREFIX));
    let (bf, bt) = BRIDGE_TABLE;
    let (inf, int) = INET_TABLE;
    let (mac, ip_s) = (mac.to_string(), ip.to_string());
    let mut out = vec![
        (bf, bt, "port_v4", json!({"concat": [tap, mac, ip_s]})),
        (bf, bt, "port_arp", json!({"concat": [tap, mac, mac, ip_s]})),
        (bf, bt, "port_mark", json!([tap, mark])),
    ];
    if metadata {
        out.push((inf, int, "metadata_v4", json!(ip_s)));
    }
    if ssh {
        out.push((inf, int, "ssh_v4", json!(ip_s)));
    }
    out
}

/// The named sets and maps that hold tenant elements.
pub const TENANT_SETS: &[(&str, &str, &str)] = &[
    ("bridge", "mvm_l2", "port_v4"),
    ("bridge", "mvm_l2", "port_arp"),
    ("bridge", "mvm_l2", "port_mark"),
    ("inet", "mvm", "metadata_v4"),
    ("inet", "mvm", "ssh_v4"),
];

/// An element as a plan shows it: `bridge mvm_l2 port_v4: tap-a .
/// 02:00:0a:c8:00:0a . 10.200.0.10`, `bridge mvm_l2 port_mark: tap-a :
/// 100000`, `inet mvm ssh_v4: 10.200.0.10`. `None` for a set mvm does not
/// keep tenant elements in, or an element of a shape it never writes.
pub fn element_display(family: &str, table: &str, set: &str, elem: &Value) -> Option<String> {
    let known = TENANT_SETS
        .iter()
        .any(|(f, t, n)| (*f, *t, *n) == (family, table, set));
    if !known {
        return None;
    }
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let body = match (set, elem) {
        ("port_mark", Value::Array(kv)) if kv.len() == 2 => {
            format!("{} : {}", scalar(&kv[0])?, scalar(&kv[1])?)
        }
        ("port_v4" | "port_arp", v) => {
            let parts = v.get("concat")?.as_array()?;
            let parts: Option<Vec<String>> = parts.iter().map(scalar).collect();
            parts?.join(" . ")
        }
        ("metadata_v4" | "ssh_v4", v) => scalar(v)?,
        _ => return None,
    };
    Some(format!("{family} {table} {set}: {body}"))
}

/// The element `element_display` printed, back as `(family, table, set,
/// element)` for nft commands.
pub fn element_parse(s: &str) -> Option<(&'static str, &'static str, &'static str, Value)> {
    let (head, body) = s.split_once(": ")?;
    let &(family, table, set) = TENANT_SETS
        .iter()
        .find(|(f, t, n)| format!("{f} {t} {n}") == head)?;
    let elem = match set {
        "port_mark" => {
            let (k, v) = body.split_once(" : ")?;
            json!([k, v.parse::<u32>().ok()?])
        }
        "port_v4" | "port_arp" => json!({"concat": body.split(" . ").collect::<Vec<_>>()}),
        _ => json!(body),
    };
    Some((family, table, set, elem))
}

/// A tenant's elements as a plan shows them, sorted: what
/// `element_display` prints for each of `tenant_elements`, written
/// directly (a plan of 10,000 tenants makes 40,000 of them).
pub fn tenant_element_lines(
    tap: &str,
    mac: MacAddr,
    ip: Ipv4Addr,
    mark: u32,
    metadata: bool,
    ssh: bool,
) -> Vec<String> {
    debug_assert!(tap.starts_with(TAP_PREFIX));
    let (bf, bt) = BRIDGE_TABLE;
    let (inf, int) = INET_TABLE;
    let mut out = vec![
        format!("{bf} {bt} port_v4: {tap} . {mac} . {ip}"),
        format!("{bf} {bt} port_arp: {tap} . {mac} . {mac} . {ip}"),
        format!("{bf} {bt} port_mark: {tap} : {mark}"),
    ];
    if metadata {
        out.push(format!("{inf} {int} metadata_v4: {ip}"));
    }
    if ssh {
        out.push(format!("{inf} {int} ssh_v4: {ip}"));
    }
    out.sort();
    out
}

type Element = (&'static str, &'static str, &'static str, Value);

/// The commands that move a tenant's elements from `before` to `after`
/// (each a list from `tenant_elements`): elements only in `before` are
/// deleted, those only in `after` added; a map key whose value changes is
/// deleted first.
pub fn element_changes(before: &[Element], after: &[Element]) -> Value {
    json!({ "nftables": element_commands(before, after) })
}

/// `element_changes`'s commands, to join with others in one transaction.
pub fn element_commands(before: &[Element], after: &[Element]) -> Vec<Value> {
    let mut cmds = Vec::new();
    for b in before {
        if !after.contains(b) {
            let elem = match (b.2, &b.3) {
                // A map element is deleted by its key.
                ("port_mark", Value::Array(kv)) => kv.first().cloned().unwrap_or(Value::Null),
                (_, e) => e.clone(),
            };
            cmds.push(json!({"delete": {"element": {"family": b.0, "table": b.1, "name": b.2, "elem": [elem]}}}));
        }
    }
    for a in after {
        if !before.contains(a) {
            cmds.push(json!({"add": {"element": {"family": a.0, "table": a.1, "name": a.2, "elem": [a.3]}}}));
        }
    }
    cmds
}
