//! `Observed`: everything the probes found on the host, as plain data.
//!
//! The planner reads only this value, never the host, so a value captured
//! on a node (`mvm agent observe --json`) plans the same anywhere. It is
//! tenant-centric: the probes do their batched reads (one netlink dump, one
//! nft dump, one mountinfo read, one /proc scan) and file each finding under
//! the tenant it belongs to. Things the probes could not read are recorded as
//! facts, never as errors.

use crate::spec::types::{MacAddr, TenantId};
use crate::state::TenantRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub const OBSERVED_VERSION: u32 = 1;

/// The keys of `Observed::facts`: which read could not be made. Producers
/// (the probe) and readers (kinds, `net verify`, `node info`) spell them
/// here only.
pub mod fact {
    pub const MOUNTINFO: &str = "mountinfo";
    pub const STATE_DIR: &str = "state_dir";
    pub const CGROUP2: &str = "cgroup2";
    pub const NETLINK: &str = "netlink";
    pub const NEIGHBOURS: &str = "neighbours";
    pub const ROUTES: &str = "routes";
    pub const FDB: &str = "fdb";
    pub const NFT: &str = "nft";
    pub const PROC: &str = "proc";
}

/// The cgroup interface files mvm sets and reads back, with the controller
/// each needs.
pub const CGROUP_LIMIT_FILES: &[(&str, &str)] = &[
    ("cpu.max", "cpu"),
    ("cpuset.cpus", "cpuset"),
    ("memory.max", "memory"),
    ("pids.max", "pids"),
];

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    pub format_version: u32,
    /// The node config the probes ran under: a plan of this observation
    /// made with another config would plan another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ObservedConfig>,
    /// What could not be probed, and why: `{"nft": "not installed"}`.
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    #[serde(default)]
    pub binaries: Binaries,
    /// IPv4 networks the host already has on links other than mvm's
    /// bridge (addresses and main-table routes, the default route left
    /// out): `"10.0.0.0/16 on eth0 (route)"`. The bridge's subnet must
    /// overlap none of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_networks: Vec<HostNetwork>,
    /// The network sysctls mvm manages (`net.ipv4.ip_forward`), as read;
    /// one the kernel does not have is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// The CPUs this host has online, as the kernel lists them (`0-7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_online: Option<String>,
    /// The cgroup2 mount, if any.
    #[serde(default)]
    pub cgroup: Option<CgroupMount>,
    #[serde(default)]
    pub bridge: Option<BridgeObs>,
    /// mvm's nftables tables (`"bridge mvm_l2"`, `"inet mvm"`) with their
    /// chains; `None` when nft could not be read.
    #[serde(default)]
    pub nft: Option<BTreeMap<String, NftTableObs>>,
    /// The metadata endpoint's listening address, if something listens.
    #[serde(default)]
    pub metadata_listener: Option<String>,
    /// The metadata service mvm started (`<state>/metadata.json`), if
    /// that process still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_service: Option<ServiceObs>,
    #[serde(default)]
    pub tenants: BTreeMap<TenantId, ObservedTenant>,
    /// Things that look like mvm's but are not (an invalid id under the
    /// state dir, say): reported, never touched.
    #[serde(default)]
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binaries {
    pub firecracker: bool,
    pub jailer: bool,
    /// node.toml's `nix.binary` is installed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nix: bool,
    /// node.toml's `firecracker.strict_seccomp_filter` is a readable file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_seccomp_filter: bool,
    /// The `nixbld` group exists, so local builds run unprivileged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nix_build_users: bool,
    /// `mkfs.ext4` (e2fsprogs) is installed, to make data volumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mkfs_ext4: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupMount {
    pub mount: PathBuf,
    /// `cgroup.controllers` at the root of the cgroup2 tree.
    pub controllers: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeObs {
    pub up: bool,
    /// IPv4 addresses as `a.b.c.d/len`.
    pub addresses: Vec<String>,
    /// Its MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The links enslaved to it, by name, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// The link's alias (mvm marks its own: `mvm node <state dir>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftTableObs {
    pub chains: BTreeSet<String>,
    /// Each chain's spec (`type filter hook forward priority 0; policy
    /// accept`, or `regular`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub specs: BTreeMap<String, String>,
    /// Each named set or map's spec (`set ifname . ether_addr`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sets: BTreeMap<String, String>,
    /// Each chain's rules in order, by chain name: a rule nft lists exactly
    /// as mvm renders one (canonical JSON, no handles, counters zeroed) as
    /// that rule's text, any other as `(not mvm's) <json>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedTenant {
    #[serde(default)]
    pub record: Option<TenantRecord>,
    /// Why `tenant.json` exists but could not be used.
    #[serde(default)]
    pub record_error: Option<String>,
    /// The tenant directory, if it exists.
    #[serde(default)]
    pub dir: Option<DirObs>,
    #[serde(default)]
    pub jail_dir: Option<DirObs>,
    /// The `logs/` directory is there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs_dir: bool,
    /// The store path the record names is no longer in the Nix store
    /// (garbage-collected): the artifact must be built again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub artifact_gone: bool,
    /// The `secrets/` directory (the tmpfs root when one is mounted there);
    /// absent when missing or not a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_dir: Option<DirObs>,
    #[serde(default)]
    pub cgroup: Option<CgroupObs>,
    #[serde(default)]
    pub tap: Option<TapObs>,
    #[serde(default)]
    pub nft: Option<TenantNftObs>,
    #[serde(default)]
    pub secrets: Option<MountObs>,
    /// The secrets generations staged on the tmpfs, oldest first, as their
    /// manifests say (names, sizes, keyed fingerprints: never a value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_generations: Vec<crate::security::secrets::Manifest>,
    #[serde(default)]
    pub vm: Option<VmProcess>,
}

impl ObservedTenant {
    /// The newest staged secrets generation, if any.
    pub fn newest_secrets(&self) -> Option<&crate::security::secrets::Manifest> {
        self.secrets_generations.last()
    }

    /// Secrets generation `n`, if it is staged.
    pub fn secrets_generation(&self, n: u64) -> Option<&crate::security::secrets::Manifest> {
        self.secrets_generations.iter().find(|m| m.generation == n)
    }
}

impl ObservedTenant {
    /// Whether anything of the tenant is on the host.
    pub fn is_present(&self) -> bool {
        self.record.is_some()
            || self.record_error.is_some()
            || self.dir.is_some()
            || self.cgroup.is_some()
            || self.tap.is_some()
            || self.nft.is_some()
            || self.secrets.is_some()
            || self.vm.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirObs {
    /// Permission bits, e.g. `0700`.
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupObs {
    /// Limit files as the kernel prints them (`memory.max`, `cpu.max`,
    /// `cpuset.cpus`, `pids.max`); a file the kernel does not provide (its
    /// controller is not enabled) is absent.
    pub files: BTreeMap<String, String>,
    /// `cgroup.events` says processes live in it.
    pub populated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapObs {
    pub master: Option<String>,
    pub up: bool,
    pub isolated: Option<bool>,
    pub learning: Option<bool>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    /// The static FDB entries on this port (MACs), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fdb: Vec<String>,
    /// The tap's own sysctls mvm manages (`net.ipv6.conf.<tap>.disable_ipv6`),
    /// as read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// The bridge's permanent neighbour entry for the tenant's address
    /// (from its record): `"<ip> <mac>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbour: Option<String>,
    /// The link's alias (mvm marks its own: `mvm node <state dir>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// A network a host link has: an address's or a route's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostNetwork {
    pub net: ipnet::Ipv4Net,
    /// The link's name (`"?"` for a route without an output link).
    pub link: String,
    /// `"address"` or `"route"`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantNftObs {
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub mark: Option<u32>,
    pub metadata: bool,
    pub ssh_from_gateway: bool,
    /// Every element of mvm's tenant sets that belongs to this tenant, as
    /// plans show them (`net::ruleset::element_display`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elements: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountObs {
    pub fstype: String,
    /// Per-mount flags (`nodev`, `noexec`, `nosuid`, `ro`/`rw`), sorted.
    pub options: Vec<String>,
    /// Superblock options such as `size=16384k`, `mode=700`.
    pub super_options: Vec<String>,
    /// The mount's root directory as it really is (a remount does not
    /// change it, a chmod does not change `mode=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<DirObs>,
}

/// A service process mvm started and still runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceObs {
    pub pid: u32,
    pub start_time: u64,
    /// The mvm version that runs it.
    pub version: String,
    pub listen: String,
    /// The per-tenant rate limit it was started with.
    pub rate_per_sec: u32,
    pub burst: u32,
    /// Whether it requires session tokens (a record of an mvm before the
    /// setting existed: it did).
    #[serde(default)]
    pub tokens: crate::security::metadata::Tokens,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmProcess {
    pub pid: u32,
    /// Clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

/// Which node config an observation was made under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedConfig {
    /// sha256 of the effective config (node.toml with defaults filled in).
    pub sha256: String,
    pub state_dir: PathBuf,
}

impl ObservedConfig {
    pub fn of(node: &crate::spec::NodeConfig) -> Self {
        Self {
            sha256: crate::digest::sha256_json(node),
            state_dir: node.state_dir.clone(),
        }
    }
}

impl Observed {
    pub fn empty() -> Self {
        Self {
            format_version: OBSERVED_VERSION,
            ..Self::default()
        }
    }

    /// A stable digest of the observed state, so a saved plan can tell
    /// whether the host changed since. Serialization is deterministic: every
    /// map here is a BTreeMap.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", crate::digest::sha256_json(self))
    }

    pub fn tenant(&self, id: &TenantId) -> Option<&ObservedTenant> {
        self.tenants.get(id)
    }
}
