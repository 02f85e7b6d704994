//! Tenant networking, as pure data: the nftables ruleset mvm renders from
//! the node config (`ruleset/`) and the kernel settings the policy relies
//! on (`sysctls`). The bridge, nft and tap kinds plan them, `host/`
//! applies them, `mvm net verify` checks a node against them.

pub mod ruleset;

use crate::spec::NodeConfig;

/// When a managed sysctl applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only where the kernel has it (the `bridge-nf-call-*` knobs exist
    /// only with br_netfilter loaded).
    Present,
    /// Only on hosts with IPv6 (`net.ipv6.conf.default.accept_ra` exists).
    Ipv6,
}

/// The IPv6 marker the probe reads (not managed).
pub const IPV6_MARKER: &str = "net.ipv6.conf.default.accept_ra";

/// The sysctls mvm sets, with their values:
/// forwarding on (egress is routed and masqueraded); no ICMP redirects
/// (the host would otherwise tell a tenant the direct path to another);
/// no router advertisements accepted on the bridge (a guest could change
/// host routes); the bridge not handing frames to iptables/nftables inet
/// hooks (L2 policy lives in the bridge family); marks of accepted TCP
/// sockets set from the packet (the metadata service's identity).
pub fn sysctls(node: &NodeConfig) -> Vec<(String, &'static str, When)> {
    let b = &node.bridge.name;
    vec![
        ("net.ipv4.ip_forward".into(), "1", When::Always),
        ("net.ipv4.conf.all.send_redirects".into(), "0", When::Always),
        (
            format!("net.ipv4.conf.{b}.send_redirects"),
            "0",
            When::Always,
        ),
        (format!("net.ipv6.conf.{b}.accept_ra"), "0", When::Ipv6),
        ("net.ipv4.tcp_fwmark_accept".into(), "1", When::Always),
        (
            "net.bridge.bridge-nf-call-iptables".into(),
            "0",
            When::Present,
        ),
        (
            "net.bridge.bridge-nf-call-ip6tables".into(),
            "0",
            When::Present,
        ),
        (
            "net.bridge.bridge-nf-call-arptables".into(),
            "0",
            When::Present,
        ),
    ]
}

/// The sysctls of a tenant's tap, with their values. A tap is a bridge
/// port: everything a guest sends should reach the host through the
/// bridge, and a frame the bridge hands up on the tap itself (a
/// link-local group address) must find no stack there: no IPv6 on the
/// tap at all (no address, no router advertisement, no neighbour
/// advertisement), no ARP answered on it, and no unicast IPv4 taken out
/// of an L2 multicast frame.
pub fn tap_sysctls(tap: &str) -> Vec<(String, &'static str, When)> {
    vec![
        (format!("net.ipv4.conf.{tap}.arp_ignore"), "8", When::Always),
        (
            format!("net.ipv4.conf.{tap}.drop_unicast_in_l2_multicast"),
            "1",
            When::Always,
        ),
        (format!("net.ipv6.conf.{tap}.disable_ipv6"), "1", When::Ipv6),
        (format!("net.ipv6.conf.{tap}.accept_ra"), "0", When::Ipv6),
    ]
}

/// Those of `managed` that apply on this host (`When`), by what the probe
/// found there, with their values.
pub fn applicable(
    managed: Vec<(String, &'static str, When)>,
    have: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    managed
        .into_iter()
        .filter(|(name, _, when)| match when {
            When::Always => true,
            When::Present => have.contains_key(name),
            When::Ipv6 => have.contains_key(IPV6_MARKER),
        })
        .map(|(n, v, _)| (n, v.to_string()))
        .collect()
}

/// The alias (IFLA_IFALIAS) mvm gives the bridge and the taps it
/// creates: names the node by its state dir, so a link mvm did not
/// create, or another mvm node's on the same host, is never managed.
pub fn owner_mark(node: &NodeConfig) -> String {
    format!("{OWNER_PREFIX}{}", node.state_dir.display())
}

/// What every mvm node's mark starts with.
pub const OWNER_PREFIX: &str = "mvm node ";
