//! The policy: which sets and chains mvm's tables have, and every rule in
//! them, table by table and chain by chain. `render` is the whole of it;
//! README's network section explains it.

use super::expr::*;
use super::{
    BRIDGE_TABLE, Chain, INET_TABLE, LINK_LOCAL_GROUP_FIRST, LINK_LOCAL_GROUP_LAST, OWNER_CHAIN,
    Rules, Ruleset, SetDef, TAP_GLOB, owner_rule,
};
use crate::spec::NodeConfig;
use serde_json::json;
use std::net::Ipv4Addr;

/// The ruleset for this node.
pub fn render(node: &NodeConfig) -> Ruleset {
    let mut r = Rules(Vec::new());
    bridge_l2(node, &mut r);
    tap_guard(&mut r);
    inet_routed(node, &mut r);
    tenant_to_host(node, &mut r);
    tenant_egress(node, &mut r);
    host_to_tenant(node, &mut r);
    // Whose tables these are: nft 1.0.6 lists no table comments, so the
    // mark is a rule's comment in a chain nothing jumps to.
    let mut rules = r.0;
    rules.push(owner_rule(node));
    Ruleset {
        sets: sets(node),
        chains: chains(node),
        rules,
    }
}

/// The sets and maps tenants' elements go in.
fn sets(node: &NodeConfig) -> Vec<SetDef> {
    let _b = node.bridge.name.as_str();
    let _gw = node.bridge.gateway;
    let _subnet = node.bridge.subnet;
    let _md = node.metadata.address;
    let _md_port = node.metadata.port;
    let (bf, bt) = BRIDGE_TABLE;
    let (inf, int) = INET_TABLE;
    vec![
        SetDef {
            family: bf,
            table: bt,
            name: "port_v4",
            key_type: json!(["ifname", "ether_addr", "ipv4_addr"]),
            map: None,
        },
        SetDef {
            family: bf,
            table: bt,
            name: "port_arp",
            key_type: json!(["ifname", "ether_addr", "ether_addr", "ipv4_addr"]),
            map: None,
        },
        SetDef {
            family: bf,
            table: bt,
            name: "port_mark",
            key_type: json!("ifname"),
            map: Some("mark"),
        },
        SetDef {
            family: inf,
            table: int,
            name: "metadata_v4",
            key_type: json!("ipv4_addr"),
            map: None,
        },
        SetDef {
            family: inf,
            table: int,
            name: "ssh_v4",
            key_type: json!("ipv4_addr"),
            map: None,
        },
    ]
}

/// The chains, base chains with their hooks.
fn chains(node: &NodeConfig) -> Vec<Chain> {
    let _b = node.bridge.name.as_str();
    let _gw = node.bridge.gateway;
    let _subnet = node.bridge.subnet;
    let _md = node.metadata.address;
    let _md_port = node.metadata.port;
    let (bf, bt) = BRIDGE_TABLE;
    let (inf, int) = INET_TABLE;
    let chain = |family, table, name, base| Chain {
        family,
        table,
        name,
        base,
    };
    vec![
        chain(
            bf,
            bt,
            "guest_ingress",
            Some(("filter", "prerouting", -200, "accept")),
        ),
        chain(
            bf,
            bt,
            "guest_lateral",
            Some(("filter", "forward", -200, "accept")),
        ),
        chain(
            bf,
            bt,
            "guest_local",
            Some(("filter", "input", -200, "accept")),
        ),
        chain(
            inf,
            int,
            "tap_guard",
            Some(("filter", "prerouting", -300, "accept")),
        ),
        chain(
            inf,
            int,
            "dstnat",
            Some(("nat", "prerouting", -100, "accept")),
        ),
        chain(inf, int, "input", Some(("filter", "input", 0, "accept"))),
        chain(inf, int, "tenant_to_host", None),
        chain(
            inf,
            int,
            "forward",
            Some(("filter", "forward", 0, "accept")),
        ),
        chain(inf, int, "tenant_out", None),
        chain(inf, int, "tenant_in", None),
        chain(inf, int, "output", Some(("filter", "output", 0, "accept"))),
        chain(inf, int, "host_to_tenant", None),
        chain(
            inf,
            int,
            "srcnat",
            Some(("nat", "postrouting", 100, "accept")),
        ),
        chain(inf, int, OWNER_CHAIN, None),
    ]
}

/// `bridge mvm_l2`: L2 anti-spoofing per tap before the bridge learns,
/// no tap-to-tap forwarding, link-local group frames dropped.
fn bridge_l2(node: &NodeConfig, r: &mut Rules) {
    let _b = node.bridge.name.as_str();
    let _gw = node.bridge.gateway;
    let _subnet = node.bridge.subnet;
    let _md = node.metadata.address;
    let _md_port = node.metadata.port;
    let (_bf, _bt) = BRIDGE_TABLE;
    let (_inf, _int) = INET_TABLE;
    // bridge mvm_l2 guest_ingress: every frame a tap sends, before the
    // bridge learns from it.
    r.add(
        BRIDGE_TABLE,
        "guest_ingress",
        format!("iifname != \"{TAP_GLOB}\" accept"),
        Some("not a tenant tap"),
        vec![is_not(meta("iifname"), json!(TAP_GLOB)), verdict("accept")],
    );
    r.add(
        BRIDGE_TABLE,
        "guest_ingress",
        "meta mark set iifname map @port_mark",
        None,
        vec![json!({"mangle": {"key": meta("mark"), "value": {"map": {"key": meta("iifname"), "data": "@port_mark"}}}})],
    );
    r.add(
        BRIDGE_TABLE,
        "guest_ingress",
        "ether type != { ip, arp } counter drop",
        Some("only ARP and IPv4 (no IPv6, no VLAN tags)"),
        vec![
            is_not(payload("ether", "type"), json!({"set": ["ip", "arp"]})),
            counter(),
            verdict("drop"),
        ],
    );
    r.add(
        BRIDGE_TABLE,
        "guest_ingress",
        "iifname . ether saddr . arp saddr ether . arp saddr ip @port_arp accept",
        None,
        vec![
            is(
                json!({"concat": [meta("iifname"), payload("ether", "saddr"), payload("arp", "saddr ether"), payload("arp", "saddr ip")]}),
                json!("@port_arp"),
            ),
            verdict("accept"),
        ],
    );
    r.add(
        BRIDGE_TABLE,
        "guest_ingress",
        "ether type arp counter drop",
        Some("ARP not from the tenant's own MAC and IP"),
        vec![
            is(payload("ether", "type"), json!("arp")),
            counter(),
            verdict("drop"),
        ],
    );
    r.add(
        BRIDGE_TABLE,
        "guest_ingress",
        "udp sport 67 counter drop",
        Some("DHCP server replies"),
        vec![
            is(payload("udp", "sport"), json!(67)),
            counter(),
            verdict("drop"),
        ],
    );
    r.add(
        BRIDGE_TABLE,
        "guest_ingress",
        "iifname . ether saddr . ip saddr @port_v4 accept",
        None,
        vec![
            is(
                json!({"concat": [meta("iifname"), payload("ether", "saddr"), payload("ip", "saddr")]}),
                json!("@port_v4"),
            ),
            verdict("accept"),
        ],
    );
    r.add(
        BRIDGE_TABLE,
        "guest_ingress",
        "counter drop",
        Some("IPv4 not from the tenant's own tap, MAC and IP"),
        vec![counter(), verdict("drop")],
    );
    r.add(
        BRIDGE_TABLE,
        "guest_lateral",
        format!("iifname \"{TAP_GLOB}\" oifname \"{TAP_GLOB}\" counter drop"),
        Some("tenant to tenant"),
        vec![
            is(meta("iifname"), json!(TAP_GLOB)),
            is(meta("oifname"), json!(TAP_GLOB)),
            counter(),
            verdict("drop"),
        ],
    );

    // Frames to an IEEE link-local group address (01:80:c2:00:00:0X) skip
    // bridge prerouting: the bridge hands them to the host stack on the
    // tap itself, past guest_ingress and the inet rules keyed on the
    // bridge. Those that pass the bridge's input hook stop here; the rest
    // (LLDP, STP) have no bridge hook at all and stop at tap_guard.
    r.add(
        BRIDGE_TABLE,
        "guest_local",
        format!(
            "iifname \"{TAP_GLOB}\" ether daddr {LINK_LOCAL_GROUP_FIRST}-{LINK_LOCAL_GROUP_LAST} counter drop"
        ),
        Some("link-local group frames, handed up on the tap"),
        vec![
            is(meta("iifname"), json!(TAP_GLOB)),
            is(
                payload("ether", "daddr"),
                json!({"range": [LINK_LOCAL_GROUP_FIRST, LINK_LOCAL_GROUP_LAST]}),
            ),
            counter(),
            verdict("drop"),
        ],
    );
}

/// The taps' own traffic in the inet hooks.
fn tap_guard(r: &mut Rules) {
    // In inet hooks a frame that came through the bridge has the bridge as
    // its interface; one with a tap as its interface reached the host
    // stack around the bridge. Dropped before conntrack sees it, and again
    // in every inet hook mvm owns that sees incoming packets.
    for chain in ["tap_guard", "input", "forward"] {
        r.tap_bypass(chain);
    }
}

/// `inet mvm`: the metadata redirect, and what a tenant may send to the
/// host and through it.
fn inet_routed(node: &NodeConfig, r: &mut Rules) {
    let b = node.bridge.name.as_str();
    let gw = node.bridge.gateway;
    let _subnet = node.bridge.subnet;
    let md = node.metadata.address;
    let md_port = node.metadata.port;
    let (_bf, _bt) = BRIDGE_TABLE;
    let (_inf, _int) = INET_TABLE;
    // inet mvm: routed traffic, by the bridge as interface (in inet hooks
    // the tap is invisible; the L2 guard pinned every source already).
    r.add(
        INET_TABLE,
        "dstnat",
        format!("iifname \"{b}\" ip saddr @metadata_v4 ip daddr {md} tcp dport 80 redirect to :{md_port}"),
        Some("metadata, for member tenants"),
        vec![
            is(meta("iifname"), json!(b)),
            is(payload("ip", "saddr"), json!("@metadata_v4")),
            is(payload("ip", "daddr"), json!(md.to_string())),
            is(payload("tcp", "dport"), json!(80)),
            json!({"redirect": {"port": md_port}}),
        ],
    );
    r.add(
        INET_TABLE,
        "input",
        format!("iifname \"{b}\" jump tenant_to_host"),
        None,
        vec![is(meta("iifname"), json!(b)), jump("tenant_to_host")],
    );
    r.established("tenant_to_host");
    r.invalid("tenant_to_host");
    r.add(
        INET_TABLE,
        "tenant_to_host",
        "meta nfproto != ipv4 drop",
        None,
        vec![is_not(meta("nfproto"), json!("ipv4")), verdict("drop")],
    );
    r.add(
        INET_TABLE,
        "tenant_to_host",
        format!("tcp dport {md_port} ct original ip daddr {md} accept"),
        Some("metadata, only through the redirect"),
        vec![
            is(payload("tcp", "dport"), json!(md_port)),
            is(
                json!({"ct": {"key": "ip daddr", "dir": "original"}}),
                json!(md.to_string()),
            ),
            verdict("accept"),
        ],
    );
    let (dns_here, _dns_away): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) =
        node.bridge.dns.iter().partition(|d| **d == gw);
    if !dns_here.is_empty() {
        r.add(
            INET_TABLE,
            "tenant_to_host",
            format!("ip daddr {gw} meta l4proto {{ tcp, udp }} th dport 53 accept"),
            Some("DNS on the gateway"),
            vec![
                is(payload("ip", "daddr"), json!(gw.to_string())),
                is(meta("l4proto"), json!({"set": ["tcp", "udp"]})),
                is(payload("th", "dport"), json!(53)),
                verdict("accept"),
            ],
        );
    }
    r.add(
        INET_TABLE,
        "tenant_to_host",
        format!("ip daddr {gw} icmp type echo-request accept"),
        Some("ping the gateway"),
        vec![
            is(payload("ip", "daddr"), json!(gw.to_string())),
            is(payload("icmp", "type"), json!("echo-request")),
            verdict("accept"),
        ],
    );
    r.add(
        INET_TABLE,
        "tenant_to_host",
        "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept",
        Some("essential ICMP"),
        vec![
            is(
                payload("icmp", "type"),
                json!({"set": ["destination-unreachable", "time-exceeded", "parameter-problem"]}),
            ),
            verdict("accept"),
        ],
    );
    r.add(
        INET_TABLE,
        "tenant_to_host",
        "counter drop",
        Some("the rest of the host"),
        vec![counter(), verdict("drop")],
    );

    r.add(
        INET_TABLE,
        "forward",
        format!("iifname \"{b}\" jump tenant_out"),
        None,
        vec![is(meta("iifname"), json!(b)), jump("tenant_out")],
    );
    r.add(
        INET_TABLE,
        "forward",
        format!("oifname \"{b}\" jump tenant_in"),
        None,
        vec![is(meta("oifname"), json!(b)), jump("tenant_in")],
    );
}

/// What a tenant may reach on the host itself.
fn tenant_to_host(node: &NodeConfig, r: &mut Rules) {
    let b = node.bridge.name.as_str();
    let gw = node.bridge.gateway;
    let _subnet = node.bridge.subnet;
    let _md = node.metadata.address;
    let _md_port = node.metadata.port;
    let (_bf, _bt) = BRIDGE_TABLE;
    let (_inf, _int) = INET_TABLE;
    let dns_away: Vec<Ipv4Addr> = node
        .bridge
        .dns
        .iter()
        .filter(|d| **d != gw)
        .copied()
        .collect();
    // Tenant to tenant through the gateway goes before any conntrack
    // accept: a forged ICMP error quoting another tenant's flow is
    // "related" to it, and would otherwise be forwarded to that tenant.
    r.add(
        INET_TABLE,
        "tenant_out",
        format!("oifname \"{b}\" counter drop"),
        Some("tenant to tenant through the gateway"),
        vec![is(meta("oifname"), json!(b)), counter(), verdict("drop")],
    );
    r.established("tenant_out");
    r.invalid("tenant_out");
    r.add(
        INET_TABLE,
        "tenant_out",
        "ip daddr 169.254.0.0/16 counter drop",
        Some("link-local: the host's cloud metadata"),
        vec![
            is(
                payload("ip", "daddr"),
                json!({"prefix": {"addr": "169.254.0.0", "len": 16}}),
            ),
            counter(),
            verdict("drop"),
        ],
    );
    if !dns_away.is_empty() {
        let mut away = dns_away.clone();
        away.sort();
        away.dedup();
        r.add(
            INET_TABLE,
            "tenant_out",
            format!(
                "ip daddr {} meta l4proto {{ tcp, udp }} th dport 53 accept",
                text_list(&away.iter().map(|a| a.to_string()).collect::<Vec<_>>())
            ),
            Some("DNS servers of node.toml"),
            vec![
                is(
                    payload("ip", "daddr"),
                    anon(away.iter().map(|a| json!(a.to_string())).collect()),
                ),
                is(meta("l4proto"), json!({"set": ["tcp", "udp"]})),
                is(payload("th", "dport"), json!(53)),
                verdict("accept"),
            ],
        );
    }
}

/// What a tenant may reach beyond the host, and what may reach it.
fn tenant_egress(node: &NodeConfig, r: &mut Rules) {
    let _b = node.bridge.name.as_str();
    let _gw = node.bridge.gateway;
    let _subnet = node.bridge.subnet;
    let _md = node.metadata.address;
    let _md_port = node.metadata.port;
    let (_bf, _bt) = BRIDGE_TABLE;
    let (_inf, _int) = INET_TABLE;
    let mut deny = node.network.egress_deny.clone();
    deny.sort_by_key(|n| (u32::from(n.network()), n.prefix_len()));
    if !deny.is_empty() {
        r.add(
            INET_TABLE,
            "tenant_out",
            format!(
                "ip daddr {} counter drop",
                text_list(&deny.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            ),
            Some("egress_deny"),
            vec![
                is(
                    payload("ip", "daddr"),
                    anon(deny.iter().map(addr).collect()),
                ),
                counter(),
                verdict("drop"),
            ],
        );
    }
    r.add(
        INET_TABLE,
        "tenant_out",
        "meta nfproto ipv4 accept",
        Some("egress"),
        vec![is(meta("nfproto"), json!("ipv4")), verdict("accept")],
    );
    r.add(
        INET_TABLE,
        "tenant_out",
        "counter drop",
        None,
        vec![counter(), verdict("drop")],
    );
    r.established("tenant_in");
    r.add(
        INET_TABLE,
        "tenant_in",
        "counter drop",
        Some("inbound that is not a reply"),
        vec![counter(), verdict("drop")],
    );
}

/// What the host may send a tenant, and the masquerade of its egress.
fn host_to_tenant(node: &NodeConfig, r: &mut Rules) {
    let b = node.bridge.name.as_str();
    let gw = node.bridge.gateway;
    let subnet = node.bridge.subnet;
    let _md = node.metadata.address;
    let _md_port = node.metadata.port;
    let (_bf, _bt) = BRIDGE_TABLE;
    let (_inf, _int) = INET_TABLE;
    r.add(
        INET_TABLE,
        "output",
        format!("oifname \"{b}\" jump host_to_tenant"),
        None,
        vec![is(meta("oifname"), json!(b)), jump("host_to_tenant")],
    );
    r.established("host_to_tenant");
    r.add(
        INET_TABLE,
        "host_to_tenant",
        format!("ip saddr {gw} ip daddr @ssh_v4 tcp dport 22 accept"),
        Some("SSH from the gateway"),
        vec![
            is(payload("ip", "saddr"), json!(gw.to_string())),
            is(payload("ip", "daddr"), json!("@ssh_v4")),
            is(payload("tcp", "dport"), json!(22)),
            verdict("accept"),
        ],
    );
    r.add(
        INET_TABLE,
        "host_to_tenant",
        "counter drop",
        Some("inbound that is not a reply"),
        vec![counter(), verdict("drop")],
    );
    r.add(
        INET_TABLE,
        "srcnat",
        format!("oifname != \"{b}\" ip saddr {subnet} masquerade"),
        None,
        vec![
            is_not(meta("oifname"), json!(b)),
            is(payload("ip", "saddr"), addr(&subnet)),
            json!({"masquerade": null}),
        ],
    );
}
