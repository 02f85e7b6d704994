//! The links, from one netlink dump (and one route, neighbour and FDB dump
//! each): the bridge, the host's other networks, each tenant's tap.

use super::filing::tenant;
use crate::host::net::netlink;
use crate::observed::{BridgeObs, Observed, TapObs};
use crate::spec::NodeConfig;
use crate::spec::types::{TAP_PREFIX, TenantId};
use std::collections::BTreeMap;

/// The netlink dumps the links are filed from (one link dump with the
/// addresses, the bridge's permanent neighbours, the routes, the FDB), and
/// the facts of what could not be read. Only reads: it runs beside the
/// state dir's probe.
pub(super) fn dump_links(node: &NodeConfig) -> (Option<LinkDumps>, Vec<(String, String)>) {
    let mut facts = Vec::new();
    let links = match netlink::dump() {
        Ok(l) => l,
        Err(e) => {
            facts.push((crate::observed::fact::NETLINK.into(), e.to_string()));
            return (None, facts);
        }
    };
    let bridge = links
        .get(&node.bridge.name)
        .filter(|b| b.kind.as_deref() == Some("bridge"));
    // The bridge's permanent neighbour entries (one filtered dump).
    let neighbours = match bridge.map(|b| netlink::dump_permanent_neighbours(b.index)) {
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            facts.push((crate::observed::fact::NEIGHBOURS.into(), e.to_string()));
            Default::default()
        }
        None => Default::default(),
    };
    let dumps = LinkDumps {
        routes: netlink::dump_routes().map_err(|e| e.to_string()),
        // One FDB dump for every tap's static entries.
        fdb: netlink::dump_fdb().map_err(|e| e.to_string()),
        neighbours,
        links,
    };
    (Some(dumps), facts)
}

/// What the netlink dumps returned: every link by name, the main table's
/// routes, the bridge's permanent neighbours, the FDB.
pub struct LinkDumps {
    pub links: std::collections::HashMap<String, netlink::Link>,
    pub routes: Result<Vec<(Option<u32>, ipnet::Ipv4Net)>, String>,
    pub neighbours: std::collections::HashMap<std::net::Ipv4Addr, [u8; 6]>,
    pub fdb: Result<Vec<netlink::FdbEntry>, String>,
}

/// Files the netlink dumps into `obs`: the bridge, the networks of the
/// host's other links, and each tenant's tap. Pure: the recording host
/// files its model's links through this same function.
pub fn file_links(node: &NodeConfig, dumps: &LinkDumps, obs: &mut Observed) {
    let links = &dumps.links;
    let by_index: BTreeMap<u32, &str> =
        links.values().map(|l| (l.index, l.name.as_str())).collect();
    if let Some(b) = links.get(&node.bridge.name)
        && b.kind.as_deref() == Some("bridge")
    {
        let mut addresses = b.ipv4.clone();
        addresses.sort();
        let mut ports: Vec<String> = links
            .values()
            .filter(|l| l.master == Some(b.index))
            .map(|l| l.name.clone())
            .collect();
        ports.sort();
        obs.bridge = Some(BridgeObs {
            up: b.up,
            addresses,
            mac: b.mac.map(crate::spec::types::MacAddr),
            ports,
            alias: b.alias.clone(),
        });
    }
    // What the host's other links already have: the bridge subnet must
    // not overlap it.
    let bridge_index = links.get(&node.bridge.name).map(|b| b.index);
    let mut nets = Vec::new();
    for l in links
        .values()
        .filter(|l| Some(l.index) != bridge_index && l.name != "lo")
    {
        for a in &l.ipv4 {
            if let Ok(net) = a.parse::<ipnet::Ipv4Net>() {
                nets.push(crate::observed::HostNetwork {
                    net: net.trunc(),
                    link: l.name.clone(),
                    source: "address".into(),
                });
            }
        }
    }
    match &dumps.routes {
        Ok(routes) => {
            for &(oif, net) in routes {
                if oif.is_some() && oif == bridge_index {
                    continue;
                }
                let link = oif.and_then(|i| by_index.get(&i)).copied().unwrap_or("?");
                if link == "lo" {
                    continue;
                }
                nets.push(crate::observed::HostNetwork {
                    net,
                    link: link.to_string(),
                    source: "route".into(),
                });
            }
        }
        Err(e) => {
            obs.facts
                .insert(crate::observed::fact::ROUTES.into(), e.clone());
        }
    }
    nets.sort();
    nets.dedup();
    obs.host_networks = nets;
    let neighbours = &dumps.neighbours;
    // One FDB dump for every tap's static entries.
    let mut fdb: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    match &dumps.fdb {
        Ok(entries) => {
            for e in entries.iter().filter(|e| e.fixed) {
                fdb.entry(e.ifindex)
                    .or_default()
                    .push(crate::spec::types::MacAddr(e.mac).to_string());
            }
        }
        Err(e) => {
            obs.facts
                .insert(crate::observed::fact::FDB.into(), e.clone());
        }
    }
    for l in links.values() {
        let Some(id) = l
            .name
            .strip_prefix(TAP_PREFIX)
            .and_then(|s| TenantId::parse(s).ok())
        else {
            continue;
        };
        if l.kind.as_deref() != Some("tun") {
            obs.ignored.push(format!(
                "link {}: named like a tenant tap but is not a tap",
                l.name
            ));
            continue;
        }
        let master = l
            .master
            .and_then(|i| by_index.get(&i))
            .map(|s| s.to_string());
        let mut macs = fdb.remove(&l.index).unwrap_or_default();
        macs.sort();
        macs.dedup();
        // The tap's own sysctls, from the link dump (no file read per tap).
        let sysctls = crate::net::tap_sysctls(&l.name)
            .into_iter()
            .filter_map(|(name, _, _)| l.conf.get(&name).map(|v| (name, v.clone())))
            .collect();
        let t = tenant(obs, &id);
        // The neighbour entry for the address the tenant's record names.
        let neighbour = t
            .record
            .as_ref()
            .and_then(|r| neighbours.get(&r.ip).map(|mac| (r.ip, *mac)))
            .map(|(ip, mac)| format!("{ip} {}", crate::spec::types::MacAddr(mac)));
        t.tap = Some(TapObs {
            master,
            up: l.up,
            isolated: l.isolated,
            learning: l.learning,
            owner: l.owner,
            group: l.group,
            fdb: macs,
            sysctls,
            neighbour,
            alias: l.alias.clone(),
        });
    }
}
