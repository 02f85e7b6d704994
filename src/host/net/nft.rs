//! mvm's nftables state: read with one `nft -j list ruleset`, changed
//! with one `nft -j -f -` transaction, or — for tenant elements — one
//! nfnetlink batch straight to the kernel.
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

/// Runs `nft -j list ruleset`; `Err` carries the fact to record.
pub fn list_ruleset(nft: &str) -> Result<Value, String> {
    let out = std::process::Command::new(nft)
        .args(["-j", "list", "ruleset"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
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
    serde_json::from_slice(&out.stdout).map_err(|e| format!("nft printed invalid JSON: {e}"))
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

/// One element change as the kernel takes it: add or delete, where, the
/// key's bytes and (for a map's add) the data's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementBytes {
    pub add: bool,
    pub family: &'static str,
    pub table: &'static str,
    pub set: &'static str,
    pub key: Vec<u8>,
    pub data: Option<Vec<u8>>,
}

/// `commands` (what [`element_changes`] makes) as the kernel's bytes, or
/// `None` when any command is not an element change of one of mvm's
/// tenant sets in a shape mvm writes (the caller then lets nft do it).
/// As nft encodes them: each field of a concatenation padded to 4 bytes,
/// an interface name as 16 bytes (IFNAMSIZ, NUL-padded), MAC and IPv4 in
/// network order, a mark in host order.
pub fn element_bytes(commands: &Value) -> Option<Vec<ElementBytes>> {
    fn ifname(v: &Value) -> Option<Vec<u8>> {
        let s = v.as_str()?;
        (!s.is_empty() && s.len() < 16 && s.is_ascii()).then(|| {
            let mut b = s.as_bytes().to_vec();
            b.resize(16, 0);
            b
        })
    }
    fn mac(v: &Value) -> Option<Vec<u8>> {
        let m: crate::spec::types::MacAddr = v.as_str()?.parse().ok()?;
        let mut b = m
            .to_string()
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        b.resize(8, 0);
        Some(b)
    }
    fn ipv4(v: &Value) -> Option<Vec<u8>> {
        Some(v.as_str()?.parse::<Ipv4Addr>().ok()?.octets().to_vec())
    }
    let mut out = Vec::new();
    for cmd in commands.get("nftables")?.as_array()? {
        let (add, body) = match (cmd.get("add"), cmd.get("delete")) {
            (Some(b), None) => (true, b),
            (None, Some(b)) => (false, b),
            _ => return None,
        };
        let e = body.get("element")?;
        let (family, table, set) = ruleset::TENANT_SETS.iter().copied().find(|(f, t, n)| {
            e.get("family").and_then(Value::as_str) == Some(*f)
                && e.get("table").and_then(Value::as_str) == Some(*t)
                && e.get("name").and_then(Value::as_str) == Some(*n)
        })?;
        let [elem] = e.get("elem")?.as_array()?.as_slice() else {
            return None;
        };
        let fields = |n: usize| {
            elem.get("concat")
                .and_then(Value::as_array)
                .filter(|c| c.len() == n)
        };
        let (key, data) = match set {
            "port_v4" => {
                let c = fields(3)?;
                ([ifname(&c[0])?, mac(&c[1])?, ipv4(&c[2])?].concat(), None)
            }
            "port_arp" => {
                let c = fields(4)?;
                let k = [ifname(&c[0])?, mac(&c[1])?, mac(&c[2])?, ipv4(&c[3])?].concat();
                (k, None)
            }
            "port_mark" if add => {
                let [tap, mark] = elem.as_array()?.as_slice() else {
                    return None;
                };
                let mark = u32::try_from(mark.as_u64()?).ok()?;
                (ifname(tap)?, Some(mark.to_ne_bytes().to_vec()))
            }
            "port_mark" => (ifname(elem)?, None),
            _ => (ipv4(elem)?, None),
        };
        out.push(ElementBytes {
            add,
            family,
            table,
            set,
            key,
            data,
        });
    }
    Some(out)
}

/// Element changes straight over nfnetlink, as one batch (a transaction:
/// all or nothing), without nft: nft 1.0.6 fetches every element of every
/// set before it deletes one, which made each tenant's change cost time in
/// proportion to the node's size. `Err` names what the kernel refused.
pub fn apply_elements(changes: &[ElementBytes]) -> std::io::Result<()> {
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_NEWSETELEM: u16 = 12;
    const NFT_MSG_DELSETELEM: u16 = 14;
    const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
    const NFNL_MSG_BATCH_END: u16 = 0x11;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLM_F_CREATE: u16 = 0x400;
    const NLMSG_ERROR: u16 = 0x2;
    if changes.is_empty() {
        return Ok(());
    }
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let seq0: u32 = 1;
    let mut buf = Vec::new();
    message(
        &mut buf,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq0,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    for (i, c) in changes.iter().enumerate() {
        let family = match c.family {
            "bridge" => 7u8, // NFPROTO_BRIDGE
            _ => 1u8,        // NFPROTO_INET
        };
        let mut key = Vec::new();
        attr(&mut key, 1, &c.key); // NFTA_DATA_VALUE
        let mut elem = Vec::new();
        attr(&mut elem, 1 | NESTED, &key); // NFTA_SET_ELEM_KEY
        if let Some(d) = &c.data {
            let mut data = Vec::new();
            attr(&mut data, 1, d);
            attr(&mut elem, 2 | NESTED, &data); // NFTA_SET_ELEM_DATA
        }
        let mut list = Vec::new();
        attr(&mut list, 1 | NESTED, &elem); // NFTA_LIST_ELEM
        let mut body = Vec::new();
        attr(&mut body, 1, &cstr(c.table)); // NFTA_SET_ELEM_LIST_TABLE
        attr(&mut body, 2, &cstr(c.set)); // NFTA_SET_ELEM_LIST_SET
        attr(&mut body, 3 | NESTED, &list); // NFTA_SET_ELEM_LIST_ELEMENTS
        let (kind, flags) = if c.add {
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        };
        let t = (NFNL_SUBSYS_NFTABLES << 8) | kind;
        message(&mut buf, t, flags, seq0 + 1 + i as u32, family, 0, &body);
    }
    let end = seq0 + 1 + changes.len() as u32;
    message(
        &mut buf,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        end,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    socket.send(&buf, 0)?;

    // One acknowledgement (or error) per change; the first error wins.
    socket.set_non_blocking(false)?;
    let timeout = nix::sys::time::TimeVal::new(5, 0);
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)?;
    let mut acked = 0;
    let mut failure: Option<(usize, i32)> = None;
    let mut rx = vec![0u8; 64 * 1024];
    while acked < changes.len() {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(rx[off..off + 4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes(rx[off + 4..off + 6].try_into().expect("2 bytes"));
            let seq = u32::from_ne_bytes(rx[off + 8..off + 12].try_into().expect("4 bytes"));
            if len < 16 || off + len > n {
                break;
            }
            if kind == NLMSG_ERROR && off + 20 <= n {
                let code = i32::from_ne_bytes(rx[off + 16..off + 20].try_into().expect("4 bytes"));
                acked += 1;
                if code != 0 && failure.is_none() {
                    failure = Some(((seq.saturating_sub(seq0 + 1)) as usize, -code));
                }
            }
            off += (len + 3) & !3;
        }
        if failure.is_some() {
            break;
        }
    }
    match failure {
        None => Ok(()),
        Some((i, errno)) => {
            let what = changes
                .get(i)
                .map_or(String::from("an element change"), |c| {
                    format!(
                        "{} an element {} {} {}",
                        if c.add { "adding" } else { "deleting" },
                        c.family,
                        c.table,
                        c.set
                    )
                });
            Err(std::io::Error::new(
                std::io::Error::from_raw_os_error(errno).kind(),
                format!(
                    "the kernel refused {what} (nothing changed): {}",
                    std::io::Error::from_raw_os_error(errno)
                ),
            ))
        }
    }
}

const NESTED: u16 = 0x8000;

/// A NUL-terminated string attribute value.
fn cstr(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

/// Appends a netlink attribute (header, value, padding to 4 bytes).
fn attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
}

/// Appends one nfnetlink message: netlink header, `nfgenmsg` (family,
/// version 0, resource id in network order), attributes.
fn message(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: &[u8],
) {
    let len = 16 + 4 + body.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(body);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
}

impl crate::host::Firewall for crate::host::linux::LinuxHost {
    /// Tenant element changes go straight to the kernel (one nfnetlink
    /// batch); anything else through `nft -j -f -`. Both are one
    /// transaction.
    fn nft_apply(&self, commands: &serde_json::Value) -> crate::host::HostResult {
        if let Some(elements) = element_bytes(commands) {
            return crate::host::net::nft::apply_elements(&elements).map_err(|e| {
                crate::host::HostError::new(
                    "apply",
                    std::path::Path::new("the nftables element changes"),
                    e,
                )
            });
        }
        crate::host::net::nft::apply("nft", commands).map_err(|e| {
            crate::host::HostError::other(
                "apply",
                std::path::Path::new("the nftables transaction"),
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::MacAddr;
    use serde_json::json;
    use std::net::Ipv4Addr;

    #[test]
    fn element_changes_encode_as_nft_does() {
        let mac: MacAddr = "02:00:0a:c8:00:0a".parse().unwrap();
        let ip: Ipv4Addr = "10.200.0.10".parse().unwrap();
        let add = ruleset::tenant_elements("tap-acme", mac, ip, 100000, true, false);
        let b = element_bytes(&ruleset::element_changes(&[], &add)).unwrap();
        assert_eq!(b.len(), 4);
        let tap = {
            let mut t = b"tap-acme".to_vec();
            t.resize(16, 0);
            t
        };
        let mac_b = [2u8, 0, 10, 200, 0, 10, 0, 0];
        let ip_b = [10u8, 200, 0, 10];
        assert_eq!(b[0].set, "port_v4");
        assert_eq!(b[0].key, [&tap[..], &mac_b, &ip_b].concat());
        assert_eq!(b[0].key.len(), 28);
        assert_eq!(b[1].key, [&tap[..], &mac_b, &mac_b, &ip_b].concat());
        assert_eq!((b[2].set, b[2].key.clone()), ("port_mark", tap.clone()));
        assert_eq!(b[2].data, Some(100000u32.to_ne_bytes().to_vec()));
        assert_eq!(
            (b[3].family, b[3].table, b[3].set),
            ("inet", "mvm", "metadata_v4")
        );
        assert_eq!(b[3].key, ip_b);
        assert!(b.iter().all(|e| e.add));
        // Deleting: keys only, the map's too.
        let d = element_bytes(&ruleset::element_changes(&add, &[])).unwrap();
        assert!(d.iter().all(|e| !e.add && e.data.is_none()));
        assert_eq!(d[2].key, tap);
        // Anything else is left to nft.
        for other in [
            json!({"nftables": [{"flush": {"chain": {"family": "inet", "table": "mvm", "name": "input"}}}]}),
            json!({"nftables": [{"add": {"element": {"family": "inet", "table": "other", "name": "ssh_v4", "elem": ["10.0.0.1"]}}}]}),
            json!({"nftables": [{"add": {"element": {"family": "inet", "table": "mvm", "name": "ssh_v4", "elem": ["10.0.0.0/8"]}}}]}),
            json!({"nftables": [{"add": {"element": {"family": "bridge", "table": "mvm_l2", "name": "port_mark", "elem": [["a-very-long-interface", 1]]}}}]}),
        ] {
            assert_eq!(element_bytes(&other), None, "{other}");
        }
    }

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
