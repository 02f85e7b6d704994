//! mvm's nftables state: read with one `nft -j -t list ruleset` and the
//! tenant sets' elements dumped over nfnetlink, changed with one `nft -j
//! -f -` transaction, or — for tenant elements — one nfnetlink batch
//! straight to the kernel.
//!
//! mvm owns two tables, `bridge mvm_l2` and `inet mvm`; everything else in
//! the ruleset belongs to someone else and is ignored. Tenant elements are
//! filed under the tenant whose tap names them:
//!
//! | set / map | table | element | gives |
//! |---|---|---|---|
//! | `port_v4` | bridge mvm_l2 | tap . mac . ip | ip, mac |
//! | `port_mark` | bridge mvm_l2 | tap : mark | mark |
//! | `metadata_v4` | inet mvm | ip | metadata enabled |
//! | `ssh_v4` | inet mvm | ip | SSH from the gateway enabled |

use crate::net::ruleset;
use crate::observed::NftTableObs;
use crate::spec::types::{TAP_PREFIX, TenantId};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

pub const MVM_TABLES: &[(&str, &str)] = &[("bridge", "mvm_l2"), ("inet", "mvm")];

/// Tenant facts found in the sets, before being matched to tenants.
#[derive(Debug, Default, PartialEq)]
pub struct NftState {
    pub tables: BTreeMap<String, NftTableObs>,
    pub ports: HashMap<TenantId, (Option<String>, Option<String>)>,
    pub marks: HashMap<TenantId, u32>,
    pub metadata_ips: HashSet<Ipv4Addr>,
    pub ssh_ips: HashSet<Ipv4Addr>,
    /// Every element of the bridge table's tenant sets, as plans show it,
    /// under the tenant whose tap it names.
    pub elements: HashMap<TenantId, Vec<String>>,
}

/// Applies `commands` (`{"nftables": [...]}`) as one transaction with `nft
/// -j -f -`: all of it or, on any error, none of it. `Err` carries nft's
/// message.
pub fn apply(nft: &str, commands: &Value) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new(nft)
        .args(["-j", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{nft} is not installed (apt install nftables)")
            }
            _ => format!("cannot run {nft}: {e}"),
        })?;
    let input = commands.to_string();
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {nft}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let msg: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .collect();
        return Err(format!(
            "nft refused the transaction (nothing changed): {}",
            msg.join(" / ")
        ));
    }
    if let Some(Err(e)) = written {
        return Err(format!("cannot send the transaction to {nft}: {e}"));
    }
    Ok(())
}

/// The ruleset as `nft -j list ruleset` lists it, read as `nft -j -t list
/// ruleset` (everything but set elements) while the tenant sets' elements
/// are dumped over netlink beside it, then put in their sets: nft's own
/// listing of the elements is most of its time on a big node. `Err`
/// carries the fact to record.
pub fn list_ruleset(nft: &str) -> Result<Value, String> {
    let (out, elements) = std::thread::scope(|s| {
        let elements = s.spawn(super::nft_batch::list_elements);
        let out = std::process::Command::new(nft)
            .args(["-j", "-t", "list", "ruleset"])
            .stdin(std::process::Stdio::null())
            .output();
        let elements = elements
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (out, elements)
    });
    let out = out.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "not installed".to_string(),
        _ => format!("cannot run {nft}: {e}"),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(format!("nft failed: {}", first.trim()));
    }
    let mut ruleset: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("nft printed invalid JSON: {e}"))?;
    let elements = elements.map_err(|e| format!("cannot list the tenant sets' elements: {e}"))?;
    with_elements(&mut ruleset, elements);
    Ok(ruleset)
}

/// Puts each set's elements into the set of that name nft listed, as
/// nft's `"elem"` (left out when empty, as nft does).
fn with_elements(ruleset: &mut Value, elements: Vec<super::nft_batch::SetElements>) {
    let items = ruleset
        .get_mut("nftables")
        .and_then(Value::as_array_mut)
        .map(Vec::as_mut_slice)
        .unwrap_or(&mut []);
    for ((family, table, name), elems) in elements {
        if elems.is_empty() {
            continue;
        }
        let set = items.iter_mut().find_map(|item| {
            let kind = if item.get("set").is_some() {
                "set"
            } else {
                "map"
            };
            let set = item.get_mut(kind)?;
            let here = (s(set, "family"), s(set, "table"), s(set, "name"));
            (here == (family, table, name)).then_some(set)
        });
        if let Some(Value::Object(set)) = set {
            set.insert("elem".into(), Value::Array(elems));
        }
    }
}

fn is_mvm_table(family: &str, table: &str) -> bool {
    MVM_TABLES.contains(&(family, table))
}

/// Extracts mvm's tables, chains, sets, rules and tenant elements from
/// nft's JSON. A rule equal (canonically) to one of `known`'s in the same
/// chain is filed as that rule's text; any other as `(not mvm's) <json>`.
pub fn parse(ruleset: &Value, known: &ruleset::Ruleset) -> NftState {
    let names: HashMap<(String, String), String> = known
        .rules
        .iter()
        .map(|r| {
            (
                (
                    format!("{} {} {}", r.family, r.table, r.chain),
                    r.canonical(),
                ),
                r.display(),
            )
        })
        .collect();
    let mut st = NftState::default();
    let items = ruleset
        .get("nftables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for item in items {
        if let Some(t) = item.get("table") {
            let (f, n) = (s(t, "family"), s(t, "name"));
            if is_mvm_table(f, n) {
                st.tables.entry(format!("{f} {n}")).or_default();
            }
        } else if let Some(c) = item.get("chain") {
            let (f, t) = (s(c, "family"), s(c, "table"));
            if is_mvm_table(f, t) {
                let table = st.tables.entry(format!("{f} {t}")).or_default();
                let name = s(c, "name").to_string();
                let base = c.get("hook").map(|_| {
                    (
                        s(c, "type"),
                        s(c, "hook"),
                        c.get("prio").and_then(Value::as_i64).unwrap_or(0) as i32,
                        s(c, "policy"),
                    )
                });
                table.specs.insert(name.clone(), ruleset::spec_of(base));
                table.chains.insert(name);
            }
        } else if let Some(r) = item.get("rule") {
            let (f, t) = (s(r, "family"), s(r, "table"));
            if is_mvm_table(f, t) {
                let expr = r.get("expr").cloned().unwrap_or(Value::Null);
                let comment = r.get("comment").and_then(Value::as_str);
                let chain = s(r, "chain");
                let key = format!("{f} {t} {chain}");
                let canonical = ruleset::canonical_rule(&expr, comment);
                let shown = names
                    .get(&(key.clone(), canonical.clone()))
                    .cloned()
                    .unwrap_or_else(|| format!("{key}: (not mvm's) {canonical}"));
                st.tables
                    .entry(format!("{f} {t}"))
                    .or_default()
                    .rules
                    .entry(chain.to_string())
                    .or_default()
                    .push(shown);
            }
        } else if let Some(set) = item.get("set").or_else(|| item.get("map")) {
            let (f, t) = (s(set, "family"), s(set, "table"));
            if !is_mvm_table(f, t) {
                continue;
            }
            let name = s(set, "name");
            let spec = ruleset::set_spec(
                f,
                t,
                name,
                set.get("type").unwrap_or(&Value::Null),
                set.get("map").and_then(Value::as_str),
            );
            st.tables
                .entry(format!("{f} {t}"))
                .or_default()
                .sets
                .insert(name.to_string(), spec);
            let elems = set
                .get("elem")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for e in elems {
                let e = e.get("elem").and_then(|x| x.get("val")).unwrap_or(e);
                let tap = match e {
                    Value::Array(kv) => kv.first().and_then(Value::as_str),
                    v => v
                        .get("concat")
                        .and_then(|c| c.get(0))
                        .and_then(Value::as_str),
                };
                if let (Some(id), Some(line)) = (
                    tap.and_then(tenant_of_tap),
                    ruleset::element_display(f, t, name, e),
                ) {
                    st.elements.entry(id).or_default().push(line);
                }
            }
            match name {
                "port_v4" => {
                    for e in elems {
                        let parts = concat(e);
                        if let [tap, mac, ip] = parts.as_slice()
                            && let Some(id) = tenant_of_tap(tap)
                        {
                            st.ports.insert(id, (Some(mac.clone()), Some(ip.clone())));
                        }
                    }
                }
                "port_mark" => {
                    for e in elems {
                        // Map elements are [key, value].
                        if let Some([k, v]) = e.as_array().map(Vec::as_slice)
                            && let Some(id) = k.as_str().and_then(tenant_of_tap)
                            && let Some(mark) = v.as_u64()
                        {
                            st.marks.insert(id, mark as u32);
                        }
                    }
                }
                "metadata_v4" => st.metadata_ips.extend(elems.iter().filter_map(ipv4)),
                "ssh_v4" => st.ssh_ips.extend(elems.iter().filter_map(ipv4)),
                _ => {}
            }
        }
    }
    st
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn tenant_of_tap(tap: &str) -> Option<TenantId> {
    TenantId::parse(tap.strip_prefix(TAP_PREFIX)?).ok()
}

/// A set element's parts: `{"concat": [...]}`, or `{"elem": {"val": ...}}`
/// when nft adds per-element options, or a plain value.
fn concat(e: &Value) -> Vec<String> {
    let e = e.get("elem").and_then(|x| x.get("val")).unwrap_or(e);
    match e.get("concat").and_then(Value::as_array) {
        Some(parts) => parts.iter().map(scalar).collect(),
        None => vec![scalar(e)],
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ipv4(e: &Value) -> Option<Ipv4Addr> {
    concat(e).first()?.parse().ok()
}

impl crate::host::Firewall for crate::host::linux::LinuxHost {
    /// Tenant element changes go straight to the kernel (one nfnetlink
    /// batch); anything else through `nft -j -f -`. Both are one
    /// transaction.
    fn nft_apply(&self, commands: &serde_json::Value) -> crate::host::HostResult {
        if let Some(elements) = super::nft_batch::element_bytes(commands) {
            return super::nft_batch::apply_elements(&elements).map_err(|e| {
                crate::host::HostError::on("apply", "the nftables element changes", e)
            });
        }
        crate::host::net::nft::apply("nft", commands)
            .map_err(|e| crate::host::HostError::other_on("apply", "the nftables transaction", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mvm_tables_and_tenant_elements() {
        let j: Value = serde_json::from_str(
            r#"{"nftables":[
            {"metainfo":{"version":"1.0.6","json_schema_version":1}},
            {"table":{"family":"bridge","name":"mvm_l2","handle":1}},
            {"table":{"family":"inet","name":"filter","handle":2}},
            {"table":{"family":"inet","name":"mvm","handle":3}},
            {"chain":{"family":"bridge","table":"mvm_l2","name":"guest_ingress","handle":1}},
            {"chain":{"family":"inet","table":"filter","name":"input","handle":1}},
            {"set":{"family":"bridge","name":"port_v4","table":"mvm_l2","type":["ifname","ether_addr","ipv4_addr"],"handle":4,
              "elem":[{"concat":["tap-acme","02:00:0a:c8:00:0a","10.200.0.10"]},{"concat":["eth0","02:00:00:00:00:01","10.0.0.1"]}]}},
            {"map":{"family":"bridge","name":"port_mark","table":"mvm_l2","type":"ifname","map":"mark","handle":5,"elem":[["tap-acme",100000]]}},
            {"set":{"family":"inet","name":"metadata_v4","table":"mvm","type":"ipv4_addr","handle":6,"elem":["10.200.0.10"]}}
            ]}"#,
        )
        .unwrap();
        let st = parse(
            &j,
            &ruleset::render(&crate::spec::NodeConfig::default_config()),
        );
        assert_eq!(
            st.tables.keys().collect::<Vec<_>>(),
            ["bridge mvm_l2", "inet mvm"]
        );
        assert!(st.tables["bridge mvm_l2"].chains.contains("guest_ingress"));
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(
            st.ports[&acme],
            (Some("02:00:0a:c8:00:0a".into()), Some("10.200.0.10".into()))
        );
        assert_eq!(st.ports.len(), 1);
        assert_eq!(st.marks[&acme], 100000);
        assert!(st.metadata_ips.contains(&"10.200.0.10".parse().unwrap()));
        assert!(st.ssh_ips.is_empty());
    }
}
