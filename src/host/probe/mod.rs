//! Builds `Observed` from the live host: read-only, batched, and tolerant —
//! anything that cannot be read becomes a fact in `Observed::facts`.

mod filing;
mod links;
pub mod mountinfo;
pub mod nodeinfo;
pub mod procfs;
mod state;

pub use filing::file_secrets;
use filing::tenant;
use links::dump_links;
pub use links::{LinkDumps, file_links};
use state::{probe_cgroups, probe_state_dir};
pub use state::{read_cgroup_tree, read_record};

use crate::host::net::nft;
use crate::observed::{Binaries, OBSERVED_VERSION, Observed, TenantNftObs, VmProcess};
use crate::spec::NodeConfig;
use crate::spec::jail::exec_name;
use crate::spec::types::TenantId;
use crate::state::StateLayout;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the probes look; tests point these at prepared trees.
#[derive(Debug, Clone)]
pub struct ProbeRoots {
    pub proc: PathBuf,
    pub nft: String,
}

impl Default for ProbeRoots {
    fn default() -> Self {
        Self {
            proc: PathBuf::from("/proc"),
            nft: "nft".into(),
        }
    }
}

impl crate::host::Probe for crate::host::linux::LinuxHost {
    fn observe(&self, node: &NodeConfig) -> Observed {
        observe_with(node, &ProbeRoots::default())
    }
    fn host_facts(&self, node: &NodeConfig) -> crate::host::HostFacts {
        nodeinfo::host_facts(node)
    }
}

pub fn observe_with(node: &NodeConfig, roots: &ProbeRoots) -> Observed {
    let mut obs = Observed {
        format_version: OBSERVED_VERSION,
        config: Some(crate::observed::ObservedConfig::of(node)),
        ..Observed::default()
    };
    let layout = StateLayout::new(&node.state_dir);
    obs.binaries = Binaries {
        firecracker: is_executable(&node.firecracker.binary),
        jailer: is_executable(&node.firecracker.jailer),
        nix: is_executable(&node.nix.binary),
        strict_seccomp_filter: fs::File::open(&node.firecracker.strict_seccomp_filter)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| m.is_file()),
        nix_build_users: fs::read_to_string("/etc/group")
            .is_ok_and(|g| g.lines().any(|l| l.starts_with("nixbld:"))),
        mkfs_ext4: crate::host::fs::volume::mkfs_ext4_binary().is_some(),
    };

    let mounts = match fs::read_to_string(roots.proc.join("self/mountinfo")) {
        Ok(text) => mountinfo::parse(&text),
        Err(e) => {
            obs.facts
                .insert(crate::observed::fact::MOUNTINFO.into(), e.to_string());
            Vec::new()
        }
    };

    // The netlink dumps and nft's listing (a process of its own) are read
    // on threads while this one reads the state dir and the cgroups; each
    // is filed at its place in the order, as when they ran one by one.
    std::thread::scope(|s| {
        let links = s.spawn(|| dump_links(node));
        let ruleset = s.spawn(|| nft::list_ruleset(&roots.nft));
        probe_state_dir(&layout, &mounts, &mut obs);
        probe_cgroups(node, &mounts, &mut obs);
        let (dumps, facts) = joined(links);
        obs.facts.extend(facts);
        if let Some(dumps) = dumps {
            file_links(node, &dumps, &mut obs);
        }
        match joined(ruleset) {
            Ok(ruleset) => file_nft(node, &ruleset, &mut obs),
            Err(fact) => {
                obs.facts.insert(crate::observed::fact::NFT.into(), fact);
            }
        }
    });
    probe_vms(node, roots, &mut obs);
    obs.metadata_service = metadata_service(&layout);
    // What holds the metadata listen address, in either family (a
    // dual-stack wildcard is only an IPv6 listener): asked of the kernel's
    // socket diagnostics, or read from /proc/net/tcp{,6} where those are
    // not there (a kernel without inet_diag).
    let listeners = crate::host::net::sock_diag::tcp_listeners().unwrap_or_else(|_| {
        ["net/tcp", "net/tcp6"]
            .iter()
            .filter_map(|f| fs::read_to_string(roots.proc.join(f)).ok())
            .flat_map(|t| procfs::tcp_listeners(&t))
            .collect()
    });
    let want = std::net::SocketAddr::from((node.bridge.gateway, node.metadata.port));
    obs.metadata_listener = procfs::holder(&listeners, want).map(|a| match a {
        std::net::SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped() == Some(node.bridge.gateway) => {
            want.to_string()
        }
        a => a.to_string(),
    });
    probe_sysctls(node, &mut obs);
    obs.cpus_online = fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    obs.tenants.retain(|_, t| t.is_present());
    obs
}

/// The metadata service `<state>/metadata.json` names, if that process
/// (same pid and start time, an mvm) still runs.
fn metadata_service(layout: &StateLayout) -> Option<crate::observed::ServiceObs> {
    let bytes =
        crate::host::fs::beneath::read_own_file(&layout.metadata_service(), 4096).ok()??;
    let s: crate::observed::ServiceObs = crate::spec::json::from_slice(&bytes).ok()?;
    let alive = crate::host::vm::vmm::start_time(s.pid) == Some(s.start_time)
        && fs::read_to_string(format!("/proc/{}/comm", s.pid)).is_ok_and(|c| c.trim() == "mvm");
    alive.then_some(s)
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The sysctls mvm manages, and the IPv6 marker, as the kernel has them.
fn probe_sysctls(node: &NodeConfig, obs: &mut Observed) {
    let names = crate::net::sysctls(node)
        .into_iter()
        .map(|(n, _, _)| n)
        .chain([crate::net::IPV6_MARKER.to_string()]);
    for name in names {
        if let Some(v) = read_sysctl(&name) {
            obs.sysctls.insert(name, v);
        }
    }
}

/// A sysctl's value (`net.ipv4.ip_forward`), trimmed; `None` where the
/// kernel has no such knob.
fn read_sysctl(name: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    fs::read_to_string(path).ok().map(|v| v.trim().to_string())
}

/// A probe thread's result; its panic, the caller's.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Files `nft -j list ruleset`'s output into `obs`: mvm's tables, and each
/// tenant's elements. Pure, like `file_links`.
pub fn file_nft(node: &NodeConfig, ruleset: &serde_json::Value, obs: &mut Observed) {
    let mut st = nft::parse(ruleset, &crate::net::ruleset::render(node));
    let mut ids: Vec<TenantId> = st
        .ports
        .keys()
        .chain(st.marks.keys())
        .chain(st.elements.keys())
        .cloned()
        .collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let (mac, ip) = st.ports.get(&id).cloned().unwrap_or((None, None));
        let ip: Option<std::net::Ipv4Addr> = ip.and_then(|s| s.parse().ok());
        let mut elements = st.elements.remove(&id).unwrap_or_default();
        // The IP sets are keyed by address: the tenant's is the one its
        // tap's port_v4 element names.
        if let Some(ip) = ip {
            if st.metadata_ips.contains(&ip) {
                elements.push(format!("inet mvm metadata_v4: {ip}"));
            }
            if st.ssh_ips.contains(&ip) {
                elements.push(format!("inet mvm ssh_v4: {ip}"));
            }
        }
        elements.sort();
        let n = TenantNftObs {
            ip,
            mac: mac.and_then(|s| s.parse().ok()),
            mark: st.marks.get(&id).copied(),
            metadata: ip.is_some_and(|ip| st.metadata_ips.contains(&ip)),
            ssh_from_gateway: ip.is_some_and(|ip| st.ssh_ips.contains(&ip)),
            elements,
        };
        tenant(obs, &id).nft = Some(n);
    }
    obs.nft = Some(st.tables);
}

fn probe_vms(node: &NodeConfig, roots: &ProbeRoots, obs: &mut Observed) {
    let comm = exec_name(&node.firecracker.binary);
    let procs = match procfs::scan(&roots.proc, &comm) {
        Ok(p) => p,
        Err(e) => {
            obs.facts
                .insert(crate::observed::fact::PROC.into(), e.to_string());
            return;
        }
    };
    for (stat, id) in procs {
        let Some(id) = id.and_then(|s| TenantId::parse(&s).ok()) else {
            continue;
        };
        // A VM of this node's tenant runs in `<cgroup.parent>/<id>` (the
        // launch makes sure of it); a Firecracker elsewhere is not ours.
        let want = format!("0::/{}/{id}", node.cgroup.parent);
        let ours = fs::read_to_string(roots.proc.join(stat.pid.to_string()).join("cgroup"))
            .is_ok_and(|t| t.lines().any(|l| l == want));
        if !ours {
            obs.ignored.push(format!(
                "Firecracker process {} names tenant {id} but is not in cgroup {}/{id}",
                stat.pid, node.cgroup.parent
            ));
            continue;
        }
        tenant(obs, &id).vm = Some(VmProcess {
            pid: stat.pid,
            start_time: stat.start_time,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limit files read from a prepared tree: this host's cgroup2 may lack
    /// the memory/cpu/pids controllers (hybrid mode), so a directory laid
    /// out like a cgroup2 tree with them stands in for one.
    #[test]
    fn reads_limit_files_from_a_cgroup_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::write(r.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        let acme = r.join("mvm/acme");
        fs::create_dir_all(&acme).unwrap();
        fs::write(acme.join("memory.max"), "1174405120\n").unwrap();
        fs::write(acme.join("cpu.max"), "200000 100000\n").unwrap();
        fs::write(acme.join("pids.max"), "max\n").unwrap();
        fs::write(acme.join("cpuset.cpus"), "\n").unwrap();
        fs::write(acme.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        fs::create_dir_all(r.join("mvm/Bad Name")).unwrap();
        fs::write(r.join("mvm/stray-file"), "").unwrap();

        let mut obs = Observed::empty();
        read_cgroup_tree(r, "mvm", &mut obs);
        let cg = obs.cgroup.as_ref().unwrap();
        assert!(cg.controllers.contains("memory"));
        let t = &obs.tenants[&TenantId::parse("acme").unwrap()];
        let c = t.cgroup.as_ref().unwrap();
        assert_eq!(c.files["memory.max"], "1174405120");
        assert_eq!(c.files["cpu.max"], "200000 100000");
        assert_eq!(c.files["pids.max"], "max");
        assert!(
            !c.files.contains_key("cpuset.cpus"),
            "an empty cpuset is no cpuset"
        );
        assert!(c.populated);
        assert_eq!(obs.tenants.len(), 1);
        assert_eq!(obs.ignored.len(), 1, "{:?}", obs.ignored);
    }

    #[test]
    fn records_are_refused_when_newer_corrupt_or_misfiled() {
        let dir = tempfile::tempdir().unwrap();
        let id = TenantId::parse("acme").unwrap();
        let path = dir.path().join("tenant.json");
        assert_eq!(read_record(&path, &id), Ok(None));
        fs::write(&path, r#"{"format_version": 2}"#).unwrap();
        assert!(read_record(&path, &id).unwrap_err().contains("newer mvm"));
        fs::write(&path, "{").unwrap();
        assert!(
            read_record(&path, &id)
                .unwrap_err()
                .contains("not valid JSON")
        );
        fs::write(&path, r#"{"format_version": 1, "tenant_id": "other", "uid": 1, "gid": 1, "ip": "10.0.0.2", "mac": "02:00:00:00:00:01"}"#).unwrap();
        assert!(
            read_record(&path, &id)
                .unwrap_err()
                .contains("belongs to tenant")
        );
        // A symlink in place of the record is not followed.
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        assert!(read_record(&path, &id).unwrap_err().contains("cannot open"));
    }
}
