//! `mvm node info`: the node's identity and inventory, assembled purely
//! from node.toml, the probes' `Observed` and the host's own facts, so it
//! is tested without a host.

use crate::host::HostFacts;
use crate::observed::Observed;
use crate::spec::NodeConfig;
use serde::Serialize;
use std::collections::BTreeMap;

/// What `mvm node info --json` prints. Fields are only ever added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    /// `<state>/node-id`; `None` before the first reconcile creates it.
    pub node_id: Option<String>,
    pub hostname: String,
    /// The Lima instance, when the host is one (`lima-<name>`).
    pub lima_instance: Option<String>,
    pub mvm_version: String,
    pub kernel: String,
    pub cpus_online: Option<String>,
    pub memory_mib: Option<u64>,
    /// Where node.toml came from.
    pub config: String,
    pub state_dir: String,
    pub cgroup: CgroupInfo,
    /// `firecracker`, `jailer`, `nix`: path, installed, version.
    pub binaries: BTreeMap<String, BinaryInfo>,
    pub network: NetworkInfo,
    pub metadata: MetadataInfo,
    pub tenants: TenantCounts,
    /// What the probes could not read.
    pub problems: BTreeMap<String, String>,
    /// Whether /dev/kvm opens read-write, and why not.
    pub kvm: KvmInfo,
    /// nftables: the `nft` binary's version and the kernel's nf_tables.
    pub nftables: NftablesInfo,
    /// What to do about each missing piece, one line each.
    pub advice: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvmInfo {
    pub available: bool,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NftablesInfo {
    pub binary: Option<String>,
    pub kernel: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CgroupInfo {
    /// The cgroup2 mount, `None` when there is none.
    pub mount: Option<String>,
    pub controllers: Vec<String>,
    /// Of the controllers tenant limits use (cpu, cpuset, memory, pids),
    /// those cgroup2 does not offer (bound to cgroup v1 on a hybrid host).
    pub missing: Vec<String>,
    /// Whether tenants may run without those limits
    /// (`cgroup.allow_missing_controllers`).
    pub allow_missing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinaryInfo {
    pub path: String,
    pub installed: bool,
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkInfo {
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    /// The bridge exists.
    pub bridge_present: bool,
    /// mvm's nftables tables present (`None`: nft could not be read).
    pub nft_tables: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetadataInfo {
    pub address: String,
    pub listen: String,
    /// The service mvm started, while it runs there.
    pub service: Option<ServiceInfo>,
    /// Something else holds the listen address.
    pub foreign_listener: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInfo {
    pub pid: u32,
    pub version: String,
    pub rate_per_sec: u32,
    pub burst: u32,
    pub tokens: crate::security::metadata::Tokens,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantCounts {
    /// Tenants with anything on the node.
    pub on_node: usize,
    pub vms_running: usize,
    /// Names under `<state>/tenants` that are not valid tenant ids.
    pub ignored: usize,
    /// Tenants with an override set by hand (`overrides.json`).
    #[serde(skip_serializing_if = "is_zero")]
    pub overridden: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The controllers tenant limits need from cgroup2.
const LIMIT_CONTROLLERS: [&str; 4] = ["cpu", "cpuset", "memory", "pids"];

pub fn node_info(
    node: &NodeConfig,
    config: &str,
    node_id: Option<String>,
    hostname: &str,
    obs: &Observed,
    facts: &HostFacts,
) -> NodeInfo {
    let controllers: Vec<String> = obs
        .cgroup
        .as_ref()
        .map(|c| c.controllers.iter().cloned().collect())
        .unwrap_or_default();
    let missing = LIMIT_CONTROLLERS
        .iter()
        .filter(|c| !controllers.iter().any(|h| h == *c))
        .map(|c| c.to_string())
        .collect();
    let binary = |name: &str, path: &std::path::Path, installed: bool| {
        (
            name.to_string(),
            BinaryInfo {
                path: path.display().to_string(),
                installed,
                version: facts.versions.get(name).cloned(),
            },
        )
    };
    let listen = format!("{}:{}", node.bridge.gateway, node.metadata.port);
    let service = obs
        .metadata_service
        .as_ref()
        .filter(|s| obs.metadata_listener.as_deref() == Some(s.listen.as_str()));
    NodeInfo {
        node_id,
        hostname: hostname.to_string(),
        lima_instance: hostname.strip_prefix("lima-").map(str::to_string),
        mvm_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel: facts.kernel.clone(),
        cpus_online: obs.cpus_online.clone(),
        memory_mib: facts.memory_mib,
        config: config.to_string(),
        state_dir: node.state_dir.display().to_string(),
        cgroup: CgroupInfo {
            mount: obs.cgroup.as_ref().map(|c| c.mount.display().to_string()),
            controllers,
            missing,
            allow_missing: node.cgroup.allow_missing_controllers,
        },
        binaries: [
            binary(
                "firecracker",
                &node.firecracker.binary,
                obs.binaries.firecracker,
            ),
            binary("jailer", &node.firecracker.jailer, obs.binaries.jailer),
            binary("nix", &node.nix.binary, obs.binaries.nix),
        ]
        .into_iter()
        .collect(),
        network: NetworkInfo {
            bridge: node.bridge.name.clone(),
            subnet: node.bridge.subnet.to_string(),
            gateway: node.bridge.gateway.to_string(),
            bridge_present: obs.bridge.is_some(),
            nft_tables: obs.nft.as_ref().map(|t| t.keys().cloned().collect()),
        },
        metadata: MetadataInfo {
            address: node.metadata.address.to_string(),
            listen,
            service: service.map(|s| ServiceInfo {
                pid: s.pid,
                version: s.version.clone(),
                rate_per_sec: s.rate_per_sec,
                burst: s.burst,
                tokens: s.tokens,
            }),
            foreign_listener: obs.metadata_listener.clone().filter(|_| service.is_none()),
        },
        tenants: TenantCounts {
            on_node: obs.tenants.len(),
            vms_running: obs.tenants.values().filter(|t| t.vm.is_some()).count(),
            ignored: obs.ignored.len(),
            overridden: 0,
        },
        problems: obs.facts.clone(),
        kvm: KvmInfo {
            available: facts.kvm_problem.is_none(),
            problem: facts.kvm_problem.clone(),
        },
        nftables: NftablesInfo {
            binary: facts.nft_version.clone(),
            // Built in, nf_tables has no /sys/module entry; a ruleset
            // that could be listed proves it too.
            kernel: facts.nf_tables || obs.nft.is_some(),
        },
        advice: advice(node, obs, facts),
    }
}

/// What to do about each piece a node needs and lacks.
fn advice(node: &NodeConfig, obs: &Observed, facts: &HostFacts) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = &facts.kvm_problem {
        out.push(format!(
            "KVM: {why}; Firecracker needs it: load kvm_intel or kvm_amd (`modprobe kvm_intel`), or enable nested virtualization for this VM"
        ));
    }
    if facts.nft_version.is_none() {
        out.push("nftables: no nft binary; install it (`apt install nftables`)".into());
    }
    if !facts.nf_tables && obs.nft.is_none() {
        out.push("nftables: the kernel has no nf_tables; load it (`modprobe nf_tables`)".into());
    }
    if !obs.binaries.firecracker {
        out.push(format!(
            "firecracker: put a release build at {} (node.toml firecracker.binary)",
            node.firecracker.binary.display()
        ));
    }
    if !obs.binaries.jailer {
        out.push(format!(
            "jailer: put the release's jailer at {} (node.toml firecracker.jailer); without it VMs run unjailed, as root",
            node.firecracker.jailer.display()
        ));
    }
    if !obs.binaries.nix {
        out.push(format!(
            "nix: install it (`apt install nix-bin`) or point node.toml nix.binary at it (now {})",
            node.nix.binary.display()
        ));
    } else if !obs.binaries.nix_build_users && node.nix.builder == "local" {
        out.push("nix: no nixbld group; create the build users (README: Install)".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{CgroupMount, ServiceObs, VmProcess};

    fn converged() -> Observed {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/observed/converged.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn inventory_of_a_converged_hybrid_node() {
        let node = NodeConfig::default_config();
        let mut obs = converged();
        obs.cgroup = Some(CgroupMount {
            mount: "/sys/fs/cgroup/unified".into(),
            controllers: ["hugetlb".to_string()].into(),
        });
        let facts = HostFacts {
            kernel: "6.1.0-28-cloud-amd64".into(),
            memory_mib: Some(24013),
            versions: [("firecracker".to_string(), "Firecracker v1.7.0".to_string())].into(),
            kvm_problem: Some("no /dev/kvm".into()),
            nft_version: None,
            nf_tables: true,
        };
        let i = node_info(
            &node,
            "built-in defaults",
            Some("abc".into()),
            "lima-dev",
            &obs,
            &facts,
        );
        assert_eq!(i.lima_instance.as_deref(), Some("dev"));
        assert_eq!(i.cgroup.missing, ["cpu", "cpuset", "memory", "pids"]);
        // Each missing piece comes with what to do.
        assert!(!i.kvm.available);
        assert!(
            i.advice
                .iter()
                .any(|a| a.starts_with("KVM: no /dev/kvm") && a.contains("modprobe kvm_intel")),
            "{:?}",
            i.advice
        );
        assert!(
            i.advice.iter().any(|a| a.contains("apt install nftables")),
            "{:?}",
            i.advice
        );
        assert_eq!(i.nftables.binary, None);
        assert_eq!(
            i.binaries["firecracker"].version.as_deref(),
            Some("Firecracker v1.7.0")
        );
        assert_eq!(i.binaries["jailer"].version, None);
        assert_eq!(i.tenants.on_node, obs.tenants.len());
        assert_eq!(
            i.tenants.vms_running,
            obs.tenants.values().filter(|t| t.vm.is_some()).count()
        );
        assert!(i.tenants.vms_running > 0);
        let s = i
            .metadata
            .service
            .as_ref()
            .expect("the converged node runs it");
        assert_eq!((s.rate_per_sec, s.burst), (50, 100));
        assert_eq!(i.metadata.foreign_listener, None);
    }

    #[test]
    fn a_listener_that_is_not_mvms_is_named_as_foreign() {
        let node = NodeConfig::default_config();
        let mut obs = converged();
        obs.metadata_service = None;
        let i = node_info(&node, "x", None, "host", &obs, &HostFacts::default());
        assert_eq!(i.metadata.service, None);
        assert_eq!(i.metadata.foreign_listener, obs.metadata_listener);
        assert_eq!(i.lima_instance, None);
        // A recorded service listening elsewhere is not the one at the address.
        obs.metadata_service = Some(ServiceObs {
            pid: 1,
            start_time: 1,
            version: "0.1.0".into(),
            listen: "10.9.9.9:1".into(),
            rate_per_sec: 1,
            burst: 1,
            tokens: Default::default(),
        });
        obs.tenants.values_mut().for_each(|t| {
            t.vm = Some(VmProcess {
                pid: 7,
                start_time: 7,
            })
        });
        let i = node_info(&node, "x", None, "host", &obs, &HostFacts::default());
        assert_eq!(i.metadata.service, None);
        assert_eq!(i.tenants.vms_running, obs.tenants.len());
    }
}
