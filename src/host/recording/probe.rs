//! The recording host's probe: an `Observed` made from its model the way
//! the real probe makes one from the machine. The state dir, cgroups,
//! mounts and processes are read from the model as the real probe reads
//! them from the kernel; links and nftables go through the real probe's
//! own filing functions (`file_links`, `file_nft`), fed the dumps the
//! kernel would give for the model. What the model does not hold (which
//! binaries are installed, the cgroup2 controllers, the sysctls the kernel
//! has, other links' networks) comes from the base observation.

use super::{Call, Entry, Model, RecordingHost};
use crate::host::net::netlink::{FdbEntry, Link};
use crate::host::probe::{LinkDumps, file_links, file_nft};
use crate::observed::{
    CGROUP_LIMIT_FILES, CgroupObs, DirObs, MountObs, OBSERVED_VERSION, Observed, ObservedTenant,
    ServiceObs, VmProcess,
};
use crate::spec::NodeConfig;
use crate::spec::types::TenantId;
use crate::state::StateLayout;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

impl crate::host::Probe for RecordingHost {
    fn observe(&self, node: &NodeConfig) -> Observed {
        let base = self
            .base
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(Observed::empty);
        let mut m = self.model();
        let obs = observe(&m, &base, node);
        m.calls.push(Call::Observe(node.state_dir.clone()));
        obs
    }

    /// A kernel and memory of this double, and a version for each binary
    /// the base observation says is installed.
    fn host_facts(&self, _: &NodeConfig) -> crate::host::HostFacts {
        let base = self.base.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let b = base.map(|o| o.binaries).unwrap_or_default();
        let versions = [
            ("firecracker", b.firecracker, "Firecracker v1.12.0"),
            ("jailer", b.jailer, "Jailer v1.12.0"),
            ("nix", b.nix, "nix (Nix) 2.18.1"),
        ]
        .into_iter()
        .filter(|(_, installed, _)| *installed)
        .map(|(n, _, v)| (n.to_string(), v.to_string()))
        .collect();
        crate::host::HostFacts {
            kernel: "6.1.0-recording".into(),
            memory_mib: Some(24 * 1024),
            versions,
            kvm_problem: None,
            nft_version: Some("nftables v1.0.6 (Lester Gooch #5)".into()),
            nf_tables: true,
        }
    }
}

fn observe(m: &Model, base: &Observed, node: &NodeConfig) -> Observed {
    let mut obs = Observed {
        format_version: OBSERVED_VERSION,
        config: Some(crate::observed::ObservedConfig::of(node)),
        facts: base.facts.clone(),
        binaries: base.binaries.clone(),
        cpus_online: base.cpus_online.clone(),
        cgroup: base.cgroup.clone(),
        ..Observed::default()
    };
    let layout = StateLayout::new(&node.state_dir);
    state_dir(m, &layout, &mut obs);
    cgroups(m, node, &mut obs);
    if !base.facts.contains_key(crate::observed::fact::NETLINK) {
        file_links(node, &link_dumps(m, node), &mut obs);
    }
    obs.host_networks.extend(base.host_networks.iter().cloned());
    obs.host_networks.sort();
    obs.host_networks.dedup();
    if !base.facts.contains_key(crate::observed::fact::NFT) {
        file_nft(node, &serde_json::json!({ "nftables": m.nft }), &mut obs);
    }
    for (id, r) in &m.vms {
        if let Ok(id) = TenantId::parse(id) {
            tenant(&mut obs, &id).vm = Some(VmProcess {
                pid: r.pid,
                start_time: r.start_time,
            });
        }
    }
    metadata(m, &layout, &mut obs);
    // The sysctls the probe reads: mvm's and the IPv6 marker, where the
    // kernel has them (the base) or mvm wrote them (the model).
    let names = crate::net::sysctls(node)
        .into_iter()
        .map(|(n, _, _)| n)
        .chain([crate::net::IPV6_MARKER.to_string()]);
    for name in names {
        if let Some(v) = m.sysctls.get(&name).or(base.sysctls.get(&name)) {
            obs.sysctls.insert(name, v.clone());
        }
    }
    obs.tenants.retain(|_, t| t.is_present());
    obs
}

fn tenant<'a>(obs: &'a mut Observed, id: &TenantId) -> &'a mut ObservedTenant {
    obs.tenants.entry(id.clone()).or_default()
}

/// A directory as the probe sees it: the top of whatever is mounted on
/// it (a tmpfs's root: its mode, root's), else the directory itself.
fn dir(m: &Model, path: &Path) -> Option<DirObs> {
    if m.entries.get(path) != Some(&Entry::Dir) {
        return None;
    }
    let (mode, uid, gid) = match m.tmpfs.get(path) {
        Some(t) => (u32::from_str_radix(&t.mode, 8).unwrap_or(0o700), 0, 0),
        None => m.dir_meta.get(path).copied().unwrap_or((0o755, 0, 0)),
    };
    Some(DirObs {
        mode: format!("{:04o}", mode & 0o7777),
        uid,
        gid,
    })
}

fn state_dir(m: &Model, layout: &StateLayout, obs: &mut Observed) {
    let tenants = layout.tenants_dir();
    let children: Vec<&Path> = m
        .entries
        .keys()
        .filter(|p| p.parent() == Some(tenants.as_path()))
        .map(|p| p.as_path())
        .collect();
    let mut notes = Vec::new();
    for path in children {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(id) = name.and_then(|n| TenantId::parse(&n).ok()) else {
            obs.ignored
                .push(format!("{}: not a valid tenant id", path.display()));
            continue;
        };
        let Some(d) = dir(m, path) else {
            obs.ignored.push(format!(
                "{}: not a directory (a link is never followed)",
                path.display()
            ));
            continue;
        };
        let secrets = path.join("secrets");
        let t = tenant(obs, &id);
        t.dir = Some(d);
        t.jail_dir = dir(m, &path.join("jail"));
        t.logs_dir = dir(m, &path.join("logs")).is_some();
        t.secrets_dir = dir(m, &secrets);
        if let (Some(opts), Some(root)) = (m.tmpfs.get(&secrets), t.secrets_dir.clone()) {
            let mut options: Vec<String> = ["nodev", "noexec", "nosuid", "relatime", "rw"]
                .map(String::from)
                .into();
            options.sort();
            t.secrets = Some(MountObs {
                fstype: "tmpfs".into(),
                options,
                super_options: vec![
                    "rw".into(),
                    format!("size={}", opts.size),
                    format!("mode={}", opts.mode.trim_start_matches('0')),
                ],
                root: Some(root),
            });
            let found = m
                .entries
                .keys()
                .filter(|p| p.parent() == Some(secrets.as_path()))
                .filter_map(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(crate::security::secrets::parse_generation_dir)
                })
                .map(|n| {
                    let manifest = secrets
                        .join(crate::security::secrets::generation_dir(n))
                        .join(crate::security::secrets::MANIFEST);
                    let read = match m.entries.get(&manifest) {
                        Some(Entry::File(b)) => Ok(Some(b.clone())),
                        Some(Entry::Dir) => {
                            Err(format!("{}: not a regular file", manifest.display()))
                        }
                        None => Ok(None),
                    };
                    (n, read)
                })
                .collect();
            t.secrets_generations = crate::host::probe::file_secrets(&secrets, found, &mut notes);
        }
        let record = layout.record(&id);
        match m.entries.get(&record) {
            None => {}
            Some(Entry::Dir) => {
                t.record_error = Some(format!("{}: not a regular file", record.display()))
            }
            Some(Entry::File(b)) => match crate::state::record::parse_record(&record, b, &id) {
                Ok(r) => t.record = Some(r),
                Err(e) => t.record_error = Some(e),
            },
        }
        t.artifact_gone = t
            .record
            .as_ref()
            .and_then(|r| r.artifact.as_ref())
            .is_some_and(|a| !m.store.contains(Path::new(&a.store_path)));
    }
    obs.ignored.extend(notes);
}

fn cgroups(m: &Model, node: &NodeConfig, obs: &mut Observed) {
    let Some(root) = obs.cgroup.as_ref().map(|c| c.mount.clone()) else {
        obs.facts
            .insert(crate::observed::fact::CGROUP2.into(), "not mounted".into());
        return;
    };
    let parent = root.join(&node.cgroup.parent);
    let dirs: Vec<&Path> = m
        .entries
        .iter()
        .filter(|(p, e)| **e == Entry::Dir && p.parent() == Some(parent.as_path()))
        .map(|(p, _)| p.as_path())
        .collect();
    for path in dirs {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(id) = name.and_then(|n| TenantId::parse(&n).ok()) else {
            obs.ignored
                .push(format!("{}: not a valid tenant id", path.display()));
            continue;
        };
        let mut files = BTreeMap::new();
        for (file, _) in CGROUP_LIMIT_FILES {
            if let Some(Entry::File(b)) = m.entries.get(&path.join(file)) {
                let v = String::from_utf8_lossy(b).trim().to_string();
                if !v.is_empty() {
                    files.insert(file.to_string(), v);
                }
            }
        }
        let populated = m.vms.contains_key(id.as_str());
        tenant(obs, &id).cgroup = Some(CgroupObs { files, populated });
    }
}

/// The netlink dumps the kernel would give for the model's links: a
/// bridge, taps (kind `tun`) that are isolated, non-learning ports with
/// their owner, one static FDB entry each, and their own sysctls.
fn link_dumps(m: &Model, node: &NodeConfig) -> LinkDumps {
    // Index 1 is `lo`.
    let index: HashMap<&str, u32> = m
        .links
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32 + 2))
        .collect();
    let mut links = HashMap::new();
    let mut fdb = Vec::new();
    for (name, (kind, master)) in &m.links {
        let d = m.link_data.get(name).cloned().unwrap_or_default();
        let tap = *kind == "tap";
        let own = format!(".{name}.");
        let link = Link {
            index: index[name.as_str()],
            name: name.clone(),
            kind: Some(if tap { "tun" } else { "bridge" }.to_string()),
            up: true,
            master: master.as_deref().and_then(|b| index.get(b).copied()),
            isolated: tap.then_some(true),
            learning: tap.then_some(false),
            owner: d.owner,
            group: d.group,
            link_group: 0,
            ipv4: d.addresses.clone(),
            mac: d.mac,
            alias: m.aliases.get(name).cloned(),
            conf: m
                .sysctls
                .iter()
                .filter(|(k, _)| k.contains(&own))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        if let Some(mac) = d.fdb {
            fdb.push(FdbEntry {
                ifindex: link.index,
                mac,
                fixed: true,
            });
        }
        links.insert(name.clone(), link);
    }
    let neighbours = m
        .neighbours
        .iter()
        .filter(|((b, _), _)| *b == node.bridge.name)
        .map(|((_, ip), mac)| (*ip, *mac))
        .collect();
    LinkDumps {
        links,
        routes: Ok(Vec::new()),
        neighbours,
        fdb: Ok(fdb),
    }
}

/// The service `<state>/metadata.json` names, if that process still runs;
/// then it holds its listen address.
fn metadata(m: &Model, layout: &StateLayout, obs: &mut Observed) {
    let Some(Entry::File(b)) = m.entries.get(&layout.metadata_service()) else {
        return;
    };
    let Ok(s) = crate::spec::json::from_slice::<ServiceObs>(b) else {
        return;
    };
    if let Some((r, listen)) = &m.service
        && r.pid == s.pid
        && r.start_time == s.start_time
    {
        obs.metadata_listener = Some(listen.clone());
        obs.metadata_service = Some(s);
    }
}
