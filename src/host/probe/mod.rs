//! Builds `Observed` from the live host: read-only, batched, and tolerant —
//! anything that cannot be read becomes a fact in `Observed::facts`.

pub mod mountinfo;
pub mod nodeinfo;
pub mod procfs;

use crate::host::fs::beneath::{self, Tree};
use crate::host::net::netlink;
use crate::host::net::nft;
use crate::observed::{
    Binaries, BridgeObs, CGROUP_LIMIT_FILES, CgroupMount, CgroupObs, DirObs, OBSERVED_VERSION,
    Observed, ObservedTenant, TapObs, TenantNftObs, VmProcess,
};
use crate::spec::NodeConfig;
use crate::spec::jail::exec_name;
use crate::spec::types::{TAP_PREFIX, TenantId};
use crate::state::{StateLayout, TenantRecord};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstat};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
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
            obs.facts.insert("mountinfo".into(), e.to_string());
            Vec::new()
        }
    };

    probe_state_dir(&layout, &mounts, &mut obs);
    probe_cgroups(node, &mounts, &mut obs);
    probe_links(node, &mut obs);
    probe_nft(node, roots, &mut obs);
    probe_vms(node, roots, &mut obs);
    obs.metadata_service = metadata_service(&layout);
    // What holds the metadata listen address, in either family (a
    // dual-stack wildcard is only in tcp6).
    let listeners: Vec<std::net::SocketAddr> = ["net/tcp", "net/tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(roots.proc.join(f)).ok())
        .flat_map(|t| procfs::tcp_listeners(&t))
        .collect();
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

fn tenant<'a>(obs: &'a mut Observed, id: &TenantId) -> &'a mut ObservedTenant {
    obs.tenants.entry(id.clone()).or_default()
}

fn dir_obs(st: &FileStat) -> DirObs {
    DirObs {
        mode: format!("{:04o}", st.st_mode & 0o7777),
        uid: st.st_uid,
        gid: st.st_gid,
    }
}

/// Lists `<state>/tenants` and reads each tenant's tree, all by fd from the
/// state dir: a link in place of `tenants`, a tenant dir or a file in it is
/// reported, never followed. Mounts on `secrets/` are found by mount id
/// and matched to mountinfo by it, so how the state dir is spelled (a
/// link in its path, say) does not matter.
fn probe_state_dir(layout: &StateLayout, mounts: &[mountinfo::MountEntry], obs: &mut Observed) {
    let dir = layout.tenants_dir();
    // The error names the path.
    let unreadable = |obs: &mut Observed, e: std::io::Error| {
        obs.facts
            .insert("state_dir".into(), format!("cannot read {e}"));
    };
    let root = match Tree::open(layout.root()) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => return unreadable(obs, e),
    };
    let tenants = match root.dir(Path::new("tenants")) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => return unreadable(obs, e),
    };
    let names = match beneath::names(&tenants, &dir) {
        Ok(n) => n,
        Err(e) => return unreadable(obs, e),
    };
    let by_id: BTreeMap<u64, &mountinfo::MountEntry> = mounts.iter().map(|m| (m.id, m)).collect();
    for name in names {
        let path = dir.join(&name);
        let Some(id) = name.to_str().and_then(|n| TenantId::parse(n).ok()) else {
            obs.ignored
                .push(format!("{}: not a valid tenant id", path.display()));
            continue;
        };
        let is_dir = beneath::stat_at(&tenants, &name, &path)
            .ok()
            .flatten()
            .is_some_and(|st| beneath::is_dir(&st));
        if !is_dir {
            obs.ignored.push(format!(
                "{}: not a directory (a link is never followed)",
                path.display()
            ));
            continue;
        }
        let fd = match beneath::child_dir(&tenants, &name, &path, root.mount()) {
            Ok(fd) => fd,
            Err(e) => {
                obs.ignored.push(e.to_string());
                continue;
            }
        };
        let Ok(st) = fstat(&fd) else { continue };
        let t = tenant(obs, &id);
        t.dir = Some(dir_obs(&st));
        t.jail_dir = subdir(&fd, "jail", &path).map(|(st, _)| dir_obs(&st));
        t.logs_dir = subdir(&fd, "logs", &path).is_some();
        if let Some((st, mount)) = subdir(&fd, "secrets", &path) {
            t.secrets_dir = Some(dir_obs(&st));
            let here = beneath::mount_of(&fd).ok().and_then(mount_number);
            if let Some(m) = mount
                .filter(|m| Some(*m) != here)
                .and_then(|m| by_id.get(&m))
            {
                let mut options = m.options.clone();
                options.sort();
                t.secrets = Some(crate::observed::MountObs {
                    fstype: m.fstype.clone(),
                    options,
                    super_options: m.super_options.clone(),
                    root: Some(dir_obs(&st)),
                });
            }
        }
        match read_record_at(&fd, &layout.record(&id), &id) {
            Ok(r) => t.record = r,
            Err(e) => t.record_error = Some(e),
        }
        t.artifact_gone = t
            .record
            .as_ref()
            .and_then(|r| r.artifact.as_ref())
            .is_some_and(|a| !crate::host::vm::nixbuild::in_store(Path::new(&a.store_path)));
    }
}

fn mount_number(m: beneath::MountId) -> Option<u64> {
    match m {
        beneath::MountId::Mount(n) => Some(n),
        beneath::MountId::Device(_) => None,
    }
}

/// The directory `name` in a tenant dir (the top of whatever is mounted
/// on it) and its mount id; `None` when missing or not a directory.
fn subdir(tenant: &OwnedFd, name: &str, base: &Path) -> Option<(FileStat, Option<u64>)> {
    let st = beneath::stat_at(tenant, OsStr::new(name), &base.join(name)).ok()??;
    if !beneath::is_dir(&st) {
        return None;
    }
    let fd = openat(
        tenant,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = fstat(&fd).ok()?;
    Some((st, beneath::mount_of(&fd).ok().and_then(mount_number)))
}

/// Reads `tenant.json` in an open tenant dir: never through a link, never
/// blocking, a regular file with one link, at most `RECORD_CAP` bytes.
/// `Ok(None)`: no record.
fn read_record_at(
    tenant: &OwnedFd,
    path: &Path,
    id: &TenantId,
) -> Result<Option<TenantRecord>, String> {
    let fd = match openat(
        tenant,
        "tenant.json",
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("{}: cannot open: {}", path.display(), e.desc())),
    };
    let bytes = beneath::check_own_file(&fd, path)
        .and_then(|_| beneath::read_fd(fd, path, crate::state::record::RECORD_CAP))
        .map_err(|e| format!("cannot open: {e}"))?;
    crate::state::record::parse_record(path, &bytes, id).map(Some)
}

/// Reads `tenant.json` at `path` (in a tenant dir) the same way.
pub fn read_record(path: &Path, id: &TenantId) -> Result<Option<TenantRecord>, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fd = match Tree::open(dir).and_then(|t| t.dir(Path::new(""))) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot open: {e}", path.display())),
    };
    read_record_at(&fd, path, id)
}

fn probe_cgroups(node: &NodeConfig, mounts: &[mountinfo::MountEntry], obs: &mut Observed) {
    match mounts.iter().find(|m| m.fstype == "cgroup2") {
        Some(m) => read_cgroup_tree(&m.mount_point, &node.cgroup.parent, obs),
        None => {
            obs.facts.insert("cgroup2".into(), "not mounted".into());
        }
    }
}

/// Reads the controllers at the cgroup2 root and each tenant cgroup under
/// `<root>/<parent>`: its limit files (absent when the kernel does not
/// provide them) and whether processes live in it. By fd from the root,
/// like the state dir.
pub fn read_cgroup_tree(root: &Path, parent: &str, obs: &mut Observed) {
    let Ok(tree) = Tree::open(root) else {
        obs.facts
            .insert("cgroup2".into(), format!("cannot open {}", root.display()));
        return;
    };
    let read = |dir: &OwnedFd, file: &str| -> Option<String> {
        let fd = openat(
            dir,
            file,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        String::from_utf8(beneath::read_fd(fd, Path::new(file), 64 * 1024).ok()?).ok()
    };
    let controllers = tree
        .dir(Path::new(""))
        .ok()
        .and_then(|fd| read(&fd, "cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    obs.cgroup = Some(CgroupMount {
        mount: root.to_path_buf(),
        controllers,
    });
    let base = root.join(parent);
    let Ok(parent_fd) = tree.dir(Path::new(parent)) else {
        return;
    };
    let Ok(names) = beneath::names(&parent_fd, &base) else {
        return;
    };
    for name in names {
        let path = base.join(&name);
        let is_dir = beneath::stat_at(&parent_fd, &name, &path)
            .ok()
            .flatten()
            .is_some_and(|st| beneath::is_dir(&st));
        if !is_dir {
            continue;
        }
        let Some(id) = name.to_str().and_then(|n| TenantId::parse(n).ok()) else {
            obs.ignored
                .push(format!("{}: not a valid tenant id", path.display()));
            continue;
        };
        let Ok(dir) = beneath::child_dir(&parent_fd, &name, &path, tree.mount()) else {
            continue;
        };
        let mut files = BTreeMap::new();
        for (file, _) in CGROUP_LIMIT_FILES {
            if let Some(v) = read(&dir, file) {
                let v = v.trim();
                if !v.is_empty() {
                    files.insert(file.to_string(), v.to_string());
                }
            }
        }
        let populated = read(&dir, "cgroup.events")
            .is_some_and(|s| s.lines().any(|l| l.trim() == "populated 1"));
        tenant(obs, &id).cgroup = Some(CgroupObs { files, populated });
    }
}

fn probe_links(node: &NodeConfig, obs: &mut Observed) {
    let links = match netlink::dump() {
        Ok(l) => l,
        Err(e) => {
            obs.facts.insert("netlink".into(), e.to_string());
            return;
        }
    };
    let bridge = links
        .get(&node.bridge.name)
        .filter(|b| b.kind.as_deref() == Some("bridge"));
    // The bridge's permanent neighbour entries (one filtered dump).
    let neighbours = match bridge.map(|b| netlink::dump_permanent_neighbours(b.index)) {
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            obs.facts.insert("neighbours".into(), e.to_string());
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
    file_links(node, &dumps, obs);
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
            obs.facts.insert("routes".into(), e.clone());
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
            obs.facts.insert("fdb".into(), e.clone());
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

fn probe_nft(node: &NodeConfig, roots: &ProbeRoots, obs: &mut Observed) {
    let ruleset = match nft::list_ruleset(&roots.nft) {
        Ok(r) => r,
        Err(fact) => {
            obs.facts.insert("nft".into(), fact);
            return;
        }
    };
    file_nft(node, &ruleset, obs);
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
            obs.facts.insert("proc".into(), e.to_string());
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
