//! desired.json: the tenants the control plane wants on this node.
//!
//! Validation needs the node config (the subnet decides which IPs are
//! allowed) and reports every problem at once, each located by JSON path.

use super::node::NodeConfig;
use super::problems::{Fields, Problems, index, join, show};
use super::types::{CpuSet, MacAddr, TenantId, check_flake_ref, check_lock_hash};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::net::Ipv4Addr;

pub const VCPUS_MAX: u64 = 32;
pub const MEM_MIB_MIN: u64 = 128;
pub const MEM_MIB_MAX: u64 = 256 * 1024;
/// Firecracker runs a handful of threads (vmm, api, one per vCPU); 16 is
/// the least that leaves room for them, 4096 the most a tenant may ask.
pub const PIDS_MIN: u64 = 16;
pub const PIDS_MAX: u64 = 4096;
pub const DATA_MIB_MAX: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    pub tenants: Vec<TenantSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantSpec {
    pub tenant_id: TenantId,
    pub flake_ref: String,
    pub profile: Profile,
    pub vcpus: u8,
    pub mem_mib: u32,
    pub state: RunState,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub seccomp: SeccompLevel,
    pub metadata: bool,
    pub ssh_from_gateway: bool,
    pub cpuset: Option<CpuSet>,
    pub pids_max: u32,
    pub data_mib: Option<u32>,
    pub lock: Option<String>,
    /// The build a rollback must land on (its store path), set only by an
    /// operator's override (`spec::overrides`), never by desired.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_path: Option<String>,
}

/// Which guest image the tenant's flake builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// `.#mvm.minimal`: a kernel and a small rootfs, no SSH daemon.
    Minimal,
    /// `.#mvm.standard`: adds the SSH daemon and common tools.
    Standard,
}

impl Profile {
    pub const NAMES: &'static [&'static str] = &["minimal", "standard"];
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Minimal => "minimal",
            Profile::Standard => "standard",
        }
    }

    /// The profile one of [`Profile::NAMES`] names.
    pub fn named(name: &str) -> Option<Profile> {
        [Profile::Minimal, Profile::Standard]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Stopped,
}

impl RunState {
    pub const NAMES: &'static [&'static str] = &["running", "stopped"];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompLevel {
    /// Firecracker's built-in default filter.
    Baseline,
    /// The stricter filter file named in node.toml.
    Strict,
}

impl SeccompLevel {
    pub const NAMES: &'static [&'static str] = &["baseline", "strict"];
    pub fn as_str(self) -> &'static str {
        match self {
            SeccompLevel::Baseline => "baseline",
            SeccompLevel::Strict => "strict",
        }
    }
}

pub const DEFAULT_PIDS_MAX: u32 = 256;

const TENANT_FIELDS: &[&str] = &[
    "tenant_id",
    "flake_ref",
    "profile",
    "vcpus",
    "mem_mib",
    "state",
    "ip",
    "mac",
    "seccomp",
    "metadata",
    "ssh_from_gateway",
    "cpuset",
    "pids_max",
    "data_mib",
    "lock",
];

/// Validates a parsed desired.json against the node's config.
pub fn from_tree(tree: &Value, node: &NodeConfig, p: &mut Problems) -> Option<DesiredState> {
    let top = Fields::new(tree, "", &["tenants"], p)?;
    let items = match top.required("tenants", p)? {
        Value::Array(items) => items,
        other => {
            p.push(
                "tenants",
                format!("expected an array of tenants, found {}", show(other)),
            );
            return None;
        }
    };
    let mut tenants = Vec::with_capacity(items.len());
    let mut complete = true;
    // Uniqueness is checked on every id, IP and MAC that is itself valid,
    // whatever else is wrong with its tenant: one pass reports it all, in
    // the file's order.
    let mut seen = Seen::default();
    for (i, item) in items.iter().enumerate() {
        let before = p.0.len();
        match tenant(item, &index("tenants", i), node, p) {
            Some(t) => tenants.push((i, t)),
            None => complete = false,
        }
        let field_problems = p.0.split_off(before);
        seen.check(&Identity::of(i, item, node), p);
        p.0.extend(field_problems);
    }
    if !complete || !p.is_empty() {
        return None;
    }
    Some(DesiredState {
        tenants: tenants.into_iter().map(|(_, t)| t).collect(),
    })
}

fn tenant(v: &Value, path: &str, node: &NodeConfig, p: &mut Problems) -> Option<TenantSpec> {
    let problems_before = p.0.len();
    let f = Fields::new(v, path, TENANT_FIELDS, p)?;
    let id = f.req_parse("tenant_id", p, TenantId::parse);
    let flake_ref = f.req_parse("flake_ref", p, |s| {
        check_flake_ref(s).map(|()| s.to_string())
    });
    let profile = f
        .req_choice("profile", Profile::NAMES, p)
        .map(|s| Profile::named(s).expect("one of the names"));
    let vcpus = f.req_int("vcpus", 1, VCPUS_MAX, p).map(|n| n as u8);
    let mem_mib = f
        .req_int("mem_mib", MEM_MIB_MIN, MEM_MIB_MAX, p)
        .map(|n| n as u32);
    let state = f.req_choice("state", RunState::NAMES, p).map(|s| match s {
        "running" => RunState::Running,
        _ => RunState::Stopped,
    });
    let ip = f.parse("ip", p, |s| check_ip(s, node));
    let mac = f.parse("mac", p, |s| {
        let m: MacAddr = s.parse()?;
        if !m.is_unicast() {
            return Err("is not a unicast address; the first octet must be even and the address non-zero, e.g. 02:00:0a:c8:00:0a".into());
        }
        Ok(m)
    });
    let seccomp = match f.get("seccomp") {
        Some(_) => f
            .choice("seccomp", SeccompLevel::NAMES, p)
            .map(|s| match s {
                "baseline" => SeccompLevel::Baseline,
                _ => SeccompLevel::Strict,
            }),
        None => Some(SeccompLevel::Baseline),
    };
    let metadata = f.bool("metadata", p).unwrap_or(false);
    let ssh = f.bool("ssh_from_gateway", p).unwrap_or(false);
    let cpuset = f.parse("cpuset", p, |s| {
        let c: CpuSet = s.parse().map_err(|e| format!("is not a CPU list: {e}"))?;
        match vcpus {
            Some(v) if c.cpus().len() < usize::from(v) => Err(format!(
                "has {} CPU{}, fewer than the {v} vcpus asked for",
                c.cpus().len(),
                if c.cpus().len() == 1 { "" } else { "s" }
            )),
            _ => Ok(c),
        }
    });
    let pids_max = f.int("pids_max", PIDS_MIN, PIDS_MAX, p).map(|n| n as u32);
    let data_mib = f.int("data_mib", 1, DATA_MIB_MAX, p).map(|n| n as u32);
    let lock = f.parse("lock", p, |s| check_lock_hash(s).map(|()| s.to_string()));
    // Any problem in this tenant, even in an optional field, leaves it out.
    if p.0.len() > problems_before {
        return None;
    }
    Some(TenantSpec {
        tenant_id: id?,
        flake_ref: flake_ref?,
        profile: profile?,
        vcpus: vcpus?,
        mem_mib: mem_mib?,
        state: state?,
        ip,
        mac,
        seccomp: seccomp?,
        metadata,
        ssh_from_gateway: ssh,
        cpuset,
        pids_max: pids_max.unwrap_or(DEFAULT_PIDS_MAX),
        data_mib,
        lock,
        store_path: None,
    })
}

pub fn check_ip(s: &str, node: &NodeConfig) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| "is not an IPv4 address".to_string())?;
    let net = node.bridge.subnet;
    let why = if !net.contains(&ip) {
        format!("is outside the node subnet {net}")
    } else if ip == net.network() {
        format!("is the network address of {net}")
    } else if ip == net.broadcast() {
        format!("is the broadcast address of {net}")
    } else if ip == node.bridge.gateway {
        "is the gateway address".to_string()
    } else {
        return Ok(ip);
    };
    Err(format!(
        "{why}; pick a host address in {net} other than the gateway {}",
        node.bridge.gateway
    ))
}

/// The identity a tenant entry asks for, as far as each part is valid.
struct Identity {
    index: usize,
    id: Option<TenantId>,
    ip: Option<Ipv4Addr>,
    mac: Option<MacAddr>,
}

impl Identity {
    fn of(index: usize, item: &Value, node: &NodeConfig) -> Self {
        let text = |k: &str| item.get(k).and_then(Value::as_str);
        Self {
            index,
            id: text("tenant_id").and_then(|s| TenantId::parse(s).ok()),
            ip: text("ip").and_then(|s| check_ip(s, node).ok()),
            mac: text("mac")
                .and_then(|s| s.parse::<MacAddr>().ok())
                .filter(|m| m.is_unicast()),
        }
    }
}

/// The ids, IPs and MACs of the tenants so far: each must be unique
/// across the file.
#[derive(Default)]
struct Seen {
    ids: HashMap<TenantId, usize>,
    ips: HashMap<Ipv4Addr, usize>,
    macs: HashMap<MacAddr, usize>,
}

impl Seen {
    fn check(&mut self, t: &Identity, p: &mut Problems) {
        let at = index("tenants", t.index);
        if let Some(first) =
            t.id.as_ref()
                .and_then(|id| claim(&mut self.ids, id.clone(), t.index))
        {
            let id = t.id.as_ref().expect("claimed");
            p.push(
                join(&at, "tenant_id"),
                format!("\"{id}\" is already used by tenants[{first}]; tenant ids must be unique"),
            );
        }
        if let Some(ip) = t.ip
            && let Some(first) = claim(&mut self.ips, ip, t.index)
        {
            p.push(
                join(&at, "ip"),
                format!(
                    "\"{ip}\" is already used by tenants[{first}]; every tenant needs its own IP"
                ),
            );
        }
        if let Some(mac) = t.mac
            && let Some(first) = claim(&mut self.macs, mac, t.index)
        {
            p.push(
                join(&at, "mac"),
                format!(
                    "\"{mac}\" is already used by tenants[{first}]; every tenant needs its own MAC"
                ),
            );
        }
    }
}

/// Records `key` as `index`'s, or returns the tenant that has it already.
fn claim<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    key: K,
    index: usize,
) -> Option<usize> {
    match seen.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(index);
            None
        }
    }
}
