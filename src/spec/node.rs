//! node.toml: the node's own configuration.
//!
//! mvm runs with no config file at all: an embedded default is always loaded
//! first and a user file overrides it key by key. Validation collects every
//! problem with its `section.key` location.

use super::problems::{Fields, Problems, expect_str, index, show};
use super::types::TENANT_ID_MAX;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub const DEFAULT_NODE_TOML: &str = include_str!("default-node.toml");

/// `tenants.revision_history` in the embedded defaults.
pub const DEFAULT_REVISION_HISTORY: u32 = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    pub state_dir: PathBuf,
    pub cgroup: CgroupConfig,
    pub bridge: BridgeConfig,
    pub network: NetworkConfig,
    pub metadata: MetadataConfig,
    pub firecracker: FirecrackerConfig,
    pub nix: NixConfig,
    pub tenants: TenantPolicy,
    pub apply: ApplyConfig,
    /// Absent from a config written before it (an observed file): the
    /// defaults.
    #[serde(default)]
    pub logs: LogsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CgroupConfig {
    pub parent: String,
    pub allow_missing_controllers: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeConfig {
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Destinations tenants may never reach (beyond the node's own
    /// addresses and other tenants, which are always denied).
    pub egress_deny: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataConfig {
    pub address: Ipv4Addr,
    pub port: u16,
    /// Requests per second each tenant may make, sustained.
    pub rate_per_sec: u32,
    /// Requests each tenant may make at once.
    pub burst: u32,
    /// Whether a read needs a session token (IMDSv2 only, the default) or
    /// not (IMDSv1 too, for cloud-init on a platform it does not know).
    pub tokens: Tokens,
}

/// Whether a GET needs a session token (EC2's `HttpTokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokens {
    /// IMDSv2 only: a read without a valid token is 401. The default: a
    /// guest program tricked into fetching a URL (SSRF) cannot read
    /// metadata, since it would have to PUT first with a custom header.
    #[default]
    Required,
    /// A read without a token header is answered too (IMDSv1), as
    /// cloud-init 22.4 reads on a platform it does not identify as AWS —
    /// every Firecracker guest. A token that is sent must still be valid.
    /// Identity never depends on it (the tap's mark and the address do).
    Optional,
}

impl Tokens {
    pub fn as_str(self) -> &'static str {
        match self {
            Tokens::Required => "required",
            Tokens::Optional => "optional",
        }
    }
}

impl std::str::FromStr for Tokens {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "required" => Ok(Tokens::Required),
            "optional" => Ok(Tokens::Optional),
            _ => Err(format!("{s:?}: tokens are \"required\" or \"optional\"")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirecrackerConfig {
    pub binary: PathBuf,
    pub jailer: PathBuf,
    pub strict_seccomp_filter: PathBuf,
    /// How long a stopping guest gets after Ctrl-Alt-Del before SIGKILL.
    pub stop_timeout_secs: u64,
}

/// How tenant artifacts are built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NixConfig {
    pub binary: PathBuf,
    /// `local`: this node's Nix, builds running as its unprivileged build
    /// users (group `nixbld`); `container`: an ephemeral hardened
    /// container (`container_runtime`, `container_image`).
    pub builder: String,
    /// Binary caches to substitute from; `[]` builds everything locally.
    pub substituters: Vec<String>,
    pub container_runtime: PathBuf,
    pub container_image: String,
}

pub const NIX_BUILDERS: &[&str] = &["local", "container"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantPolicy {
    pub uid_min: u32,
    pub uid_max: u32,
    pub revision_history: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyConfig {
    pub parallelism: usize,
}

/// How much of each VM's logs the node keeps (`state/logs.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsConfig {
    /// The most bytes one log file of one run may hold.
    pub max_bytes: u64,
    /// How many runs before the current one keep their files.
    pub previous_runs: u32,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            max_bytes: 4 << 20,
            previous_runs: 2,
        }
    }
}

impl NodeConfig {
    /// The embedded default configuration.
    pub fn default_config() -> Self {
        let tree = toml_tree(DEFAULT_NODE_TOML).expect("embedded node.toml parses");
        let mut problems = Problems::default();
        let cfg = from_tree(&tree, &mut problems);
        assert!(
            problems.is_empty(),
            "embedded node.toml is valid: {:?}",
            problems.0
        );
        cfg.expect("embedded node.toml is complete")
    }
}

/// Parses TOML text into the generic tree the validators walk.
pub fn toml_tree(text: &str) -> Result<Value, toml::de::Error> {
    let table: toml::Table = toml::from_str(text)?;
    Ok(serde_json::to_value(table).unwrap_or(Value::Null))
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else
/// replaces.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

const TOP: &[&str] = &[
    "state_dir",
    "cgroup",
    "bridge",
    "network",
    "metadata",
    "firecracker",
    "nix",
    "tenants",
    "apply",
    "logs",
];

/// Builds a config from a merged tree, reporting every problem.
pub fn from_tree(tree: &Value, p: &mut Problems) -> Option<NodeConfig> {
    let top = Fields::new(tree, "", TOP, p)?;
    let state_dir = abs_path(&top, "state_dir", p);

    let cgroup = cgroup_section(&top, p);
    let bridge = bridge_section(&top, p);
    let network = network_section(&top, p);
    let metadata = metadata_section(&top, p);
    let nix_cfg = nix_section(&top, p);
    let firecracker = firecracker_section(&top, p);
    let tenants = tenants_section(&top, p);
    let apply = apply_section(&top, p);
    let logs = logs_section(&top, p);

    // A link-local bridge subnet would make the metadata address one a
    // tenant (or the gateway) can have.
    if let (Some(b), Some(m)) = (&bridge, &metadata)
        && b.subnet.contains(&m.address)
    {
        p.push(
            "metadata.address",
            format!(
                "\"{}\" is inside bridge.subnet {}: it would be a tenant's or the gateway's address; pick one outside it",
                m.address, b.subnet
            ),
        );
    }

    // The jailed API socket path grows with the state dir and the
    // Firecracker binary's name; check it against the longest tenant id so
    // that every valid id fits.
    if let (Some(dir), Some(fc)) = (&state_dir, &firecracker) {
        let layout = super::jail::JailLayout::longest(dir, &fc.binary);
        if let Err(e) = layout.check_socket_len() {
            p.push(
                "state_dir",
                format!(
                    "{} is too long: {e}",
                    show(&Value::String(dir.display().to_string()))
                ),
            );
        }
    }

    Some(NodeConfig {
        state_dir: state_dir?,
        cgroup: cgroup?,
        bridge: bridge?,
        network: network?,
        metadata: metadata?,
        firecracker: firecracker?,
        nix: nix_cfg?,
        tenants: tenants?,
        apply: apply?,
        logs: logs?,
    })
}

fn cgroup_section(top: &Fields, p: &mut Problems) -> Option<CgroupConfig> {
    section(top, "cgroup", &["parent", "allow_missing_controllers"], p).and_then(|f| {
        let parent = f.req_parse("parent", p, |s| {
            check_cgroup_parent(s).map(|()| s.to_string())
        });
        let allow = f.bool("allow_missing_controllers", p).unwrap_or(false);
        Some(CgroupConfig {
            parent: parent?,
            allow_missing_controllers: allow,
        })
    })
}

fn bridge_section(top: &Fields, p: &mut Problems) -> Option<BridgeConfig> {
    section(top, "bridge", &["name", "subnet", "gateway", "dns"], p).and_then(|f| {
        let name = f.req_parse("name", p, |s| check_ifname(s).map(|()| s.to_string()));
        let subnet: Option<Ipv4Net> = f.req_parse("subnet", p, |s| match s.parse::<Ipv4Net>() {
            Ok(n) if n.prefix_len() > 30 => {
                Err("leaves no room for tenants; use a prefix of /30 or shorter".into())
            }
            Ok(n) if n.network() != n.addr() => Err(format!(
                "has host bits set; did you mean \"{}\"?",
                n.trunc()
            )),
            Ok(n) => Ok(n),
            Err(_) => Err("is not an IPv4 network like \"10.200.0.0/24\"".into()),
        });
        let gateway = ipv4(&f, "gateway", p);
        if let (Some(n), Some(g)) = (subnet, gateway)
            && (!n.contains(&g) || g == n.network() || g == n.broadcast())
        {
            p.push(
                f.path("gateway"),
                format!("\"{g}\" must be a host address inside subnet {n}"),
            );
        }
        let dns = match f.required("dns", p) {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = index(&f.path("dns"), i);
                    if let Some(s) = expect_str(item, &path, p) {
                        match s.parse::<Ipv4Addr>() {
                            Ok(a) => out.push(a),
                            Err(_) => p.push(path, format!("{s:?} is not an IPv4 address")),
                        }
                    }
                }
                Some(out)
            }
            Some(other) => {
                p.push(
                    f.path("dns"),
                    format!("expected an array of IPv4 addresses, found {}", show(other)),
                );
                None
            }
            None => None,
        };
        Some(BridgeConfig {
            name: name?,
            subnet: subnet?,
            gateway: gateway?,
            dns: dns?,
        })
    })
}

fn network_section(top: &Fields, p: &mut Problems) -> Option<NetworkConfig> {
    section(top, "network", &["egress_deny"], p).and_then(|f| {
        let deny = match f.required("egress_deny", p) {
            Some(Value::Array(items)) => {
                let mut out: Vec<Ipv4Net> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = index(&f.path("egress_deny"), i);
                    let Some(s) = expect_str(item, &path, p) else {
                        continue;
                    };
                    match s.parse::<Ipv4Net>() {
                        Ok(n) if n.network() != n.addr() => p.push(
                            path,
                            format!("{s:?} has host bits set; did you mean \"{}\"?", n.trunc()),
                        ),
                        Ok(n) => {
                            if let Some(o) = out.iter().find(|o| o.contains(&n) || n.contains(*o)) {
                                p.push(path, format!("{s:?} overlaps {o}; list each range once"));
                            } else {
                                out.push(n);
                            }
                        }
                        Err(_) => p.push(
                            path,
                            format!("{s:?} is not an IPv4 network like \"10.0.0.0/8\""),
                        ),
                    }
                }
                Some(out)
            }
            Some(other) => {
                p.push(
                    f.path("egress_deny"),
                    format!("expected an array of IPv4 networks, found {}", show(other)),
                );
                None
            }
            None => None,
        };
        Some(NetworkConfig { egress_deny: deny? })
    })
}

fn metadata_section(top: &Fields, p: &mut Problems) -> Option<MetadataConfig> {
    section(
    top,
    "metadata",
    &["address", "port", "rate_per_sec", "burst", "tokens"],
    p,
)
.and_then(|f| {
    let address = ipv4(&f, "address", p);
    // Guests reach the service at a link-local address the host never
    // binds (it is redirected): any other address is one a tenant, the
    // node's LAN or another network may really have.
    let link_local: Ipv4Net = "169.254.0.0/16".parse().expect("a network");
    if let Some(a) = address
        && (!link_local.contains(&a) || a == link_local.network() || a == link_local.broadcast())
    {
        p.push(
            f.path("address"),
            format!("\"{a}\" must be a link-local host address (169.254.0.1 to 169.254.255.254), like the usual \"169.254.169.254\": any other address is one a tenant, the node's LAN or another network may have"),
        );
    }
    let port = f.req_int("port", 1, 65535, p).map(|n| n as u16);
    let rate = f.req_int("rate_per_sec", 1, 100_000, p).map(|n| n as u32);
    let burst = f.req_int("burst", 1, 100_000, p).map(|n| n as u32);
    let tokens = f
        .req_choice("tokens", &["required", "optional"], p)
        .map(|s| s.parse().expect("one of the choices"));
    Some(MetadataConfig {
        address: address?,
        port: port?,
        rate_per_sec: rate?,
        burst: burst?,
        tokens: tokens?,
    })
})
}

fn nix_section(top: &Fields, p: &mut Problems) -> Option<NixConfig> {
    section(
        top,
        "nix",
        &[
            "binary",
            "builder",
            "substituters",
            "container_runtime",
            "container_image",
        ],
        p,
    )
    .and_then(|f| {
        let binary = abs_path(&f, "binary", p);
        let builder = f.req_choice("builder", NIX_BUILDERS, p).map(str::to_string);
        let substituters = match f.required("substituters", p) {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = index(&f.path("substituters"), i);
                    if let Some(s) = expect_str(item, &path, p) {
                        if s.starts_with("https://") && !s.contains(char::is_whitespace) {
                            out.push(s.to_string());
                        } else {
                            p.push(path, format!("{s:?} is not an https:// URL"));
                        }
                    }
                }
                Some(out)
            }
            Some(other) => {
                p.push(
                    f.path("substituters"),
                    format!("expected an array of URLs, found {}", show(other)),
                );
                None
            }
            None => None,
        };
        let runtime = abs_path(&f, "container_runtime", p);
        let image = f.req_parse("container_image", p, |s| {
            let ok = !s.is_empty()
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "./:@_-".contains(c));
            if ok {
                Ok(s.to_string())
            } else {
                Err("is not a container image reference like \"docker.io/nixos/nix:2.24.9\"".into())
            }
        });
        Some(NixConfig {
            binary: binary?,
            builder: builder?,
            substituters: substituters?,
            container_runtime: runtime?,
            container_image: image?,
        })
    })
}

fn firecracker_section(top: &Fields, p: &mut Problems) -> Option<FirecrackerConfig> {
    section(
        top,
        "firecracker",
        &[
            "binary",
            "jailer",
            "strict_seccomp_filter",
            "stop_timeout_secs",
        ],
        p,
    )
    .and_then(|f| {
        let binary = abs_path(&f, "binary", p);
        let jailer = abs_path(&f, "jailer", p);
        let strict = abs_path(&f, "strict_seccomp_filter", p);
        let stop = f.req_int("stop_timeout_secs", 0, 300, p);
        Some(FirecrackerConfig {
            binary: binary?,
            jailer: jailer?,
            strict_seccomp_filter: strict?,
            stop_timeout_secs: stop?,
        })
    })
}

fn tenants_section(top: &Fields, p: &mut Problems) -> Option<TenantPolicy> {
    section(
        top,
        "tenants",
        &["uid_min", "uid_max", "revision_history"],
        p,
    )
    .and_then(|f| {
        // uid 0..999 are system accounts; 2^31 and above confuse tools that
        // treat uid_t as signed.
        let lo = f
            .req_int("uid_min", 1000, i32::MAX as u64, p)
            .map(|n| n as u32);
        let hi = f
            .req_int("uid_max", 1000, i32::MAX as u64, p)
            .map(|n| n as u32);
        if let (Some(lo), Some(hi)) = (lo, hi)
            && hi < lo
        {
            p.push(f.path("uid_max"), format!("{hi} is below uid_min {lo}"));
        }
        let keep = f.req_int("revision_history", 1, 1000, p).map(|n| n as u32);
        Some(TenantPolicy {
            uid_min: lo?,
            uid_max: hi?,
            revision_history: keep?,
        })
    })
}

fn logs_section(top: &Fields, p: &mut Problems) -> Option<LogsConfig> {
    section(top, "logs", &["max_bytes", "previous_runs"], p).and_then(|f| {
        // A line must fit; a run's files must fit the state filesystem.
        let max = f.req_int("max_bytes", 64 << 10, 1 << 30, p);
        let runs = f.req_int("previous_runs", 0, 20, p).map(|n| n as u32);
        Some(LogsConfig {
            max_bytes: max?,
            previous_runs: runs?,
        })
    })
}

fn apply_section(top: &Fields, p: &mut Problems) -> Option<ApplyConfig> {
    section(top, "apply", &["parallelism"], p).and_then(|f| {
        let n = f.req_int("parallelism", 1, 256, p).map(|n| n as usize);
        Some(ApplyConfig { parallelism: n? })
    })
}

fn section<'a>(
    top: &Fields<'a>,
    key: &str,
    allowed: &[&str],
    p: &mut Problems,
) -> Option<Fields<'a>> {
    let v = top.required(key, p)?;
    Fields::new(v, key, allowed, p)
}

fn abs_path(f: &Fields, key: &str, p: &mut Problems) -> Option<PathBuf> {
    let s = f.req_str(key, p)?;
    let path = PathBuf::from(s);
    if !path.is_absolute() {
        p.push(f.path(key), format!("{s:?} must be an absolute path"));
        return None;
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
        || s.contains('\0')
    {
        p.push(f.path(key), format!("{s:?} must not contain \"..\""));
        return None;
    }
    Some(path)
}

fn ipv4(f: &Fields, key: &str, p: &mut Problems) -> Option<Ipv4Addr> {
    f.req_parse(key, p, |s| {
        s.parse().map_err(|_| "is not an IPv4 address".to_string())
    })
}

/// An interface name the kernel accepts: 1..=15 bytes, no '/', ':' or
/// whitespace. mvm also keeps to `[a-z0-9_-]` so the name is a safe nft
/// string and cannot collide with a tenant tap (`tap-*`).
pub fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err("must be 1 to 15 bytes (Linux interface names)".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err("may contain only a-z, 0-9, '_' and '-'".into());
    }
    if s.starts_with(super::types::TAP_PREFIX) {
        return Err(format!(
            "must not start with {:?}, which names tenant taps",
            super::types::TAP_PREFIX
        ));
    }
    Ok(())
}

/// A cgroup path relative to the cgroup2 root: one or more `[a-z0-9_-]`
/// components joined by '/', none of them `.` or `..`, as the jailer's
/// `--parent-cgroup` demands.
pub fn check_cgroup_parent(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 200 {
        return Err("must be 1 to 200 bytes".into());
    }
    for comp in s.split('/') {
        if comp.is_empty() {
            return Err(
                "must be relative with no empty components (no leading, trailing or double '/')"
                    .into(),
            );
        }
        if !comp
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c))
            || comp.starts_with('.')
        {
            return Err(format!(
                "component {comp:?} may contain only a-z, 0-9, '_', '-', '.' and must not start with '.'"
            ));
        }
    }
    Ok(())
}

/// The most tenants the node can hold: addresses in the subnet other than
/// the network, broadcast and gateway, and uids in the range.
pub fn capacity(cfg: &NodeConfig) -> u64 {
    let hosts = cfg.bridge.subnet.hosts().count() as u64 - 1;
    hosts.min(u64::from(cfg.tenants.uid_max - cfg.tenants.uid_min) + 1)
}

/// Kept here so the limit is stated once for docs and errors.
pub const fn tenant_id_max() -> usize {
    TENANT_ID_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        let c = NodeConfig::default_config();
        assert_eq!(c.bridge.gateway, Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(capacity(&c), 253);
        assert_eq!(c.tenants.revision_history, DEFAULT_REVISION_HISTORY);
    }

    #[test]
    fn user_values_override_defaults_key_by_key() {
        let mut base = toml_tree(DEFAULT_NODE_TOML).unwrap();
        merge(&mut base, &toml_tree("[bridge]\nname = \"br9\"\n").unwrap());
        let mut p = Problems::default();
        let c = from_tree(&base, &mut p).unwrap();
        assert!(p.is_empty());
        assert_eq!(c.bridge.name, "br9");
        assert_eq!(c.bridge.subnet.to_string(), "10.200.0.0/24");
    }

    #[test]
    fn every_problem_is_reported() {
        let mut base = toml_tree(DEFAULT_NODE_TOML).unwrap();
        let bad = "state_dir = \"rel\"\n[bridge]\nname = \"tap-x\"\ngateway = \"10.9.9.9\"\n[apply]\nparallelism = 0\nbogus = 1\n";
        merge(&mut base, &toml_tree(bad).unwrap());
        let mut p = Problems::default();
        assert!(from_tree(&base, &mut p).is_none());
        let paths: Vec<_> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "state_dir",
                "bridge.name",
                "bridge.gateway",
                "apply.bogus",
                "apply.parallelism"
            ]
        );
    }
}
