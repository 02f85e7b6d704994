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
//! Pure: no I/O. `render` is the whole policy; README's network section
//! explains it.

use crate::spec::NodeConfig;
use crate::spec::types::{MacAddr, TAP_PREFIX};
use ipnet::Ipv4Net;
use serde_json::{Value, json};
use std::net::Ipv4Addr;

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
fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}
fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}
fn is(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}
fn is_not(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}
fn ct_state(states: &[&str]) -> Value {
    let right = match states {
        [one] => json!(one),
        many => json!(many),
    };
    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": right}})
}
fn counter() -> Value {
    json!({"counter": {"packets": 0, "bytes": 0}})
}
fn verdict(v: &str) -> Value {
    json!({ v: null })
}
fn jump(target: &str) -> Value {
    json!({"jump": {"target": target}})
}
/// An anonymous set as nft lists it: one element stands alone.
fn anon(mut items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.pop().unwrap_or(Value::Null)
    } else {
        json!({ "set": items })
    }
}
fn addr(net: &Ipv4Net) -> Value {
    if net.prefix_len() == 32 {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
    }
}

fn text_list(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// The ruleset for this node.
pub fn render(node: &NodeConfig) -> Ruleset {
    let b = node.bridge.name.as_str();
    let gw = node.bridge.gateway;
    let subnet = node.bridge.subnet;
    let md = node.metadata.address;
    let md_port = node.metadata.port;
    let (bf, bt) = BRIDGE_TABLE;
    let (inf, int) = INET_TABLE;

    let sets = vec![
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
    ];

    let chain = |family, table, name, base| Chain {
        family,
        table,
        name,
        base,
    };
    let chains = vec![
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
    ];

    let mut r = Rules(Vec::new());

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
        "ether type != { arp, ip } counter drop",
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
    // In inet hooks a frame that came through the bridge has the bridge as
    // its interface; one with a tap as its interface reached the host
    // stack around the bridge. Dropped before conntrack sees it, and again
    // in every inet hook mvm owns that sees incoming packets.
    for chain in ["tap_guard", "input", "forward"] {
        r.tap_bypass(chain);
    }

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
    let (dns_here, dns_away): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) =
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

    // Whose tables these are: nft 1.0.6 lists no table comments, so the
    // mark is a rule's comment in a chain nothing jumps to.
    let mut rules = r.0;
    rules.push(owner_rule(node));
    Ruleset {
        sets,
        chains,
        rules,
    }
}

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
struct Rules(Vec<Rule>);

impl Rules {
    fn add(
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
    fn tap_bypass(&mut self, chain: &'static str) {
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

    fn established(&mut self, chain: &'static str) {
        let expr = vec![ct_state(&["established", "related"]), verdict("accept")];
        self.add(
            INET_TABLE,
            chain,
            "ct state established,related accept",
            None,
            expr,
        );
    }

    fn invalid(&mut self, chain: &'static str) {
        let expr = vec![ct_state(&["invalid"]), verdict("drop")];
        self.add(INET_TABLE, chain, "ct state invalid drop", None, expr);
    }
}

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
        let m: MacAddr = v.as_str()?.parse().ok()?;
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
        let (family, table, set) = TENANT_SETS.iter().copied().find(|(f, t, n)| {
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

/// A tenant's elements as a plan shows them, sorted.
pub fn tenant_element_lines(
    tap: &str,
    mac: MacAddr,
    ip: Ipv4Addr,
    mark: u32,
    metadata: bool,
    ssh: bool,
) -> Vec<String> {
    let mut out: Vec<String> = tenant_elements(tap, mac, ip, mark, metadata, ssh)
        .iter()
        .filter_map(|(f, t, n, e)| element_display(f, t, n, e))
        .collect();
    out.sort();
    out
}

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

type Element = (&'static str, &'static str, &'static str, Value);

/// The commands that move a tenant's elements from `before` to `after`
/// (each a list from `tenant_elements`): elements only in `before` are
/// deleted, those only in `after` added; a map key whose value changes is
/// deleted first.
pub fn element_changes(before: &[Element], after: &[Element]) -> Value {
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
    json!({ "nftables": cmds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_changes_encode_as_nft_does() {
        let mac: MacAddr = "02:00:0a:c8:00:0a".parse().unwrap();
        let ip: Ipv4Addr = "10.200.0.10".parse().unwrap();
        let add = tenant_elements("tap-acme", mac, ip, 100000, true, false);
        let b = element_bytes(&element_changes(&[], &add)).unwrap();
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
        let d = element_bytes(&element_changes(&add, &[])).unwrap();
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
}
