//! Tenant elements straight over nfnetlink, without an `nft` process:
//! changed as one batch — the changes `ruleset::element_changes` makes,
//! encoded as nft would encode them (`tests/host_net.rs` proves nft lists
//! them back the same), all of a batch or none of it — and read with one
//! dump per set, decoded as nft lists them.

use crate::net::ruleset;
use serde_json::Value;
use std::net::Ipv4Addr;

/// A tenant set's `(family, table, set)` and its elements, as nft lists
/// them.
pub type SetElements = ((&'static str, &'static str, &'static str), Vec<Value>);

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
    use super::nlmsg::{NLM_F_REQUEST, NLMSG_ERROR, messages, status};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_NEWSETELEM: u16 = 12;
    const NFT_MSG_DELSETELEM: u16 = 14;
    const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
    const NFNL_MSG_BATCH_END: u16 = 0x11;
    const NLM_F_ACK: u16 = 0x4;
    const NLM_F_CREATE: u16 = 0x400;
    if changes.is_empty() {
        return Ok(());
    }
    let socket = super::nlmsg::socket(netlink_sys::protocols::NETLINK_NETFILTER)?;
    // Each acknowledgement without a copy of the message it answers, and
    // room for all of them: a big batch's acknowledgements overflowing the
    // socket would be lost, and the batch look as if it had failed.
    socket.set_cap_ack(true)?;
    socket.set_rx_buf_sz(1 << 20)?;
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
        let family = nfproto(c.family);
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
    let mut acked = 0;
    let mut failure: Option<(usize, i32)> = None;
    let mut rx = vec![0u8; 64 * 1024];
    while acked < changes.len() {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        for (kind, seq, payload) in messages(&rx[..n]) {
            if kind != NLMSG_ERROR || payload.len() < 4 {
                continue;
            }
            acked += 1;
            if let (Err(e), None) = (status(payload), &failure) {
                let errno = e.raw_os_error().unwrap_or(nix::libc::EIO);
                failure = Some(((seq.saturating_sub(seq0 + 1)) as usize, errno));
            }
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

/// Every element of mvm's tenant sets, by `(family, table, set)`, as `nft
/// -j list ruleset` lists them (`{"concat": [tap, mac, ip]}`, `[tap,
/// mark]`, `"10.200.0.2"`): one `GETSETELEM` dump per set, no `nft`
/// process. nft's listing of a node's elements costs time in proportion to
/// the node's size (~25 ms for 500 tenants); the dumps, a few hundred µs.
/// A set that does not exist is left out; an element whose bytes are not
/// of the set's layout (a set redefined by someone else) is left out, as
/// nft's listing of it would not be filed under a tenant either.
pub fn list_elements() -> std::io::Result<Vec<SetElements>> {
    use super::nlmsg::{NLM_F_DUMP, NLM_F_REQUEST, attrs, dump};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETSETELEM: u16 = 13;
    let socket = super::nlmsg::socket(netlink_sys::protocols::NETLINK_NETFILTER)?;
    let mut out = Vec::new();
    for (i, &(family, table, set)) in ruleset::TENANT_SETS.iter().enumerate() {
        let mut body = Vec::new();
        attr(&mut body, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
        attr(&mut body, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
        let mut req = Vec::new();
        let seq = 1 + i as u32;
        let t = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM;
        message(
            &mut req,
            t,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            nfproto(family),
            0,
            &body,
        );
        let mut elems = Vec::new();
        // nfgenmsg, then the attributes.
        let listed = dump(&socket, &req, seq, |payload| {
            let lists = attrs(payload.get(4..).unwrap_or(&[]))
                .filter(|&(k, _)| k == 3) // NFTA_SET_ELEM_LIST_ELEMENTS
                .flat_map(|(_, list)| attrs(list));
            elems.extend(lists.filter_map(|(_, elem)| element_value(set, elem)));
        });
        match listed {
            Ok(()) => out.push(((family, table, set), elems)),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("the kernel refused to list {family} {table} {set}: {e}"),
                ));
            }
        }
    }
    Ok(out)
}

/// One element (`NFTA_LIST_ELEM`'s attributes) as nft lists it, when its
/// key (and a map's data) have the layout `element_bytes` writes.
fn element_value(set: &str, elem: &[u8]) -> Option<Value> {
    use super::nlmsg::attrs;
    let value = |kind: u16| {
        attrs(elem)
            .find(|&(k, _)| k == kind)
            .and_then(|(_, nested)| attrs(nested).find(|&(k, _)| k == 1)) // NFTA_DATA_VALUE
            .map(|(_, v)| v)
    };
    let key = value(1)?; // NFTA_SET_ELEM_KEY
    let ifname = |b: &[u8]| {
        std::str::from_utf8(super::nlmsg::until_nul(b))
            .ok()
            .map(Value::from)
    };
    let mac = |b: &[u8]| {
        let octets: [u8; 6] = b.get(..6)?.try_into().ok()?;
        Some(Value::from(crate::spec::types::MacAddr(octets).to_string()))
    };
    let ipv4 = |b: &[u8]| {
        Some(Value::from(
            Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        ))
    };
    let concat = |parts: Option<Vec<Value>>| Some(serde_json::json!({ "concat": parts? }));
    match (set, key.len()) {
        ("port_v4", 28) => concat(
            [ifname(&key[..16]), mac(&key[16..24]), ipv4(&key[24..])]
                .into_iter()
                .collect(),
        ),
        ("port_arp", 36) => concat(
            [
                ifname(&key[..16]),
                mac(&key[16..24]),
                mac(&key[24..32]),
                ipv4(&key[32..]),
            ]
            .into_iter()
            .collect(),
        ),
        ("port_mark", 16) => {
            let mark = value(2)?; // NFTA_SET_ELEM_DATA
            let mark = u32::from_ne_bytes(mark.try_into().ok()?);
            Some(Value::from(vec![ifname(key)?, Value::from(mark)]))
        }
        ("metadata_v4" | "ssh_v4", 4) => ipv4(key),
        _ => None,
    }
}

/// The nfgenmsg family of mvm's tables.
fn nfproto(family: &str) -> u8 {
    match family {
        "bridge" => 7, // NFPROTO_BRIDGE
        _ => 1,        // NFPROTO_INET
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
    super::nlmsg::header(buf, kind, flags, seq, 4 + body.len());
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(body);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
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
}
