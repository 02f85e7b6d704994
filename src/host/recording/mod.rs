//! `RecordingHost`: every capability of `Host` against an in-memory model
//! of the machine, recording each change as a typed `Call`, for tests of
//! the apply logic (ordering, concurrency, failures) and of whole use
//! cases: it answers the probe from its model (`probe.rs`, through the
//! real probe's filing functions; nftables transactions are carried out on
//! a list-form ruleset, `nft.rs`), so a reconcile can run on it end to end
//! and a second run must make zero mutating calls.
//!
//! It behaves like the real host where apply logic can tell: a directory
//! created is then a directory, a file written can be read back, an
//! appended line lands at the end, a tree removed is gone, removing a tree
//! with a mount inside it is refused, and cgroups hold their files. Reads
//! are answered from the model and not recorded: they change nothing.
//! Calls can be made to fail (`failing`) and to take time (`with_delay`);
//! it measures how many ran at once.

use crate::host::{
    Builds, Cgroups, Clock, Files, Firewall, HostError, HostResult, Identity, Links, Mounts,
    Services, TapSpec, TmpfsOptions, Vms,
};

mod nft;
mod probe;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One change asked of the host, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    EnsureDir {
        path: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    RemoveTree(PathBuf),
    WriteFile {
        path: PathBuf,
        mode: u32,
        len: usize,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    AppendLine {
        path: PathBuf,
        len: usize,
    },
    SetAppendOnly {
        path: PathBuf,
        on: bool,
    },
    CgroupCreate {
        dir: PathBuf,
        controllers: Vec<String>,
    },
    CgroupWrite {
        dir: PathBuf,
        file: String,
        value: String,
    },
    CgroupRemove(PathBuf),
    CgroupRemoveIfUnused(PathBuf),
    MountTmpfs {
        target: PathBuf,
        size: String,
        mode: String,
    },
    Unmount(PathBuf),
    /// Everything in a cgroup killed (`path` is the cgroup).
    CgroupKill(PathBuf),
    /// A jail root made on its own tmpfs, with what was staged in it.
    StageJail(crate::host::JailStage),
    /// A jail root's mounts removed (`path` is the root).
    UnstageJail(PathBuf),
    /// The bridge `name` with these addresses, up.
    BridgeEnsure {
        name: String,
        addresses: Vec<String>,
        mark: String,
    },
    /// The link `name` deleted.
    LinkDelete(String),
    TapEnsure {
        name: String,
        owner: u32,
        group: u32,
        master: String,
        mac: [u8; 6],
        sysctls: Vec<(String, String)>,
        neighbour: std::net::Ipv4Addr,
        mark: String,
    },
    /// The bridge `name`'s neighbour entry for `ip` removed.
    NeighbourDelete {
        name: String,
        ip: std::net::Ipv4Addr,
    },
    SysctlWrite {
        name: String,
        value: String,
    },
    EnsureVolume {
        path: PathBuf,
        size: u64,
    },
    TmpfsFile {
        path: PathBuf,
    },
    /// A VM of `tenant` launched as `program args…` (the jailer's argv,
    /// or Firecracker's without one), exactly as the real host execs it.
    Launch {
        tenant: String,
        program: PathBuf,
        args: Vec<String>,
    },
    /// The metadata service started at `listen`, with its rate limit.
    StartMetadata {
        listen: String,
        per_sec: u32,
        burst: u32,
    },
    /// A process (a VM or the service) stopped.
    Stop {
        pid: u32,
    },
    /// A Nix build of `installable`.
    NixBuild {
        installable: String,
    },
    /// One nft transaction: its commands.
    NftApply {
        commands: Vec<serde_json::Value>,
    },
    /// The node lock taken (`path` is the lock file). Not a change: the
    /// holder it names is gone when it is released.
    NodeLock(PathBuf),
    /// The host probed (`path` is the state dir). A read.
    Observe(PathBuf),
}

impl Call {
    /// What the call acts on, for matching and messages: a path (the
    /// source of a rename), a link name, a tenant, a pid, an installable,
    /// or `nft`.
    pub fn target(&self) -> String {
        let path = |p: &Path| p.display().to_string();
        match self {
            Call::EnsureDir { path: p, .. }
            | Call::WriteFile { path: p, .. }
            | Call::AppendLine { path: p, .. }
            | Call::SetAppendOnly { path: p, .. } => path(p),
            Call::Rename { from, .. } => path(from),
            Call::RemoveTree(p) | Call::CgroupRemove(p) | Call::CgroupRemoveIfUnused(p) => path(p),
            Call::Unmount(p) | Call::UnstageJail(p) | Call::CgroupKill(p) => path(p),
            Call::StageJail(s) => path(&s.root),
            Call::CgroupCreate { dir, .. } | Call::CgroupWrite { dir, .. } => path(dir),
            Call::MountTmpfs { target, .. } => path(target),
            Call::EnsureVolume { path: p, .. } | Call::TmpfsFile { path: p } => path(p),
            Call::NodeLock(p) | Call::Observe(p) => path(p),
            Call::BridgeEnsure { name, .. }
            | Call::TapEnsure { name, .. }
            | Call::SysctlWrite { name, .. }
            | Call::NeighbourDelete { name, .. }
            | Call::LinkDelete(name) => name.clone(),
            Call::Launch { tenant, .. } => tenant.clone(),
            Call::StartMetadata { listen, .. } => listen.clone(),
            Call::Stop { pid } => pid.to_string(),
            Call::NixBuild { installable } => installable.clone(),
            Call::NftApply { .. } => "nft".into(),
        }
    }

    /// Whether the call changes the host (everything but taking the lock
    /// and probing).
    pub fn mutates(&self) -> bool {
        !matches!(self, Call::NodeLock(_) | Call::Observe(_))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Dir,
    File(Vec<u8>),
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<PathBuf, Entry>,
    mounts: BTreeSet<PathBuf>,
    /// Links by name: `"bridge"` or `"tap"`, and a tap's master.
    links: BTreeMap<String, (&'static str, Option<String>)>,
    sysctls: BTreeMap<String, String>,
    /// Links' aliases (mvm's mark).
    aliases: BTreeMap<String, String>,
    /// The bridges' permanent neighbour entries: (bridge, ip) -> MAC.
    neighbours: BTreeMap<(String, std::net::Ipv4Addr), [u8; 6]>,
    /// Each link's MAC, IPv4 addresses, tun owner and static FDB entry.
    link_data: BTreeMap<String, LinkData>,
    /// Directories' mode, uid and gid as `ensure_dir` and `mount_tmpfs`
    /// left them.
    dir_meta: BTreeMap<PathBuf, (u32, u32, u32)>,
    /// The options of each tmpfs mounted.
    tmpfs: BTreeMap<PathBuf, TmpfsOptions>,
    /// Running VMs by tenant id.
    vms: BTreeMap<String, crate::host::ProcessRef>,
    /// The metadata service, with its listen address.
    service: Option<(crate::host::ProcessRef, String)>,
    /// nftables' ruleset, as `nft -j list ruleset` lists it.
    nft: Vec<serde_json::Value>,
    /// Store paths built.
    store: BTreeSet<PathBuf>,
    /// Random ids handed out.
    ids: u64,
    calls: Vec<Call>,
}

#[derive(Debug, Clone, Default)]
struct LinkData {
    mac: Option<[u8; 6]>,
    addresses: Vec<String>,
    owner: Option<u32>,
    group: Option<u32>,
    fdb: Option<[u8; 6]>,
}

impl Model {
    fn mkdir_all(&mut self, path: &Path) {
        for a in path.ancestors() {
            if a.as_os_str().is_empty() {
                break;
            }
            self.entries.entry(a.to_path_buf()).or_insert(Entry::Dir);
        }
    }
    fn remove_under(&mut self, path: &Path) {
        self.entries.retain(|p, _| !p.starts_with(path));
        self.dir_meta.retain(|p, _| !p.starts_with(path));
    }
}

type FailWhen = Box<dyn Fn(&Call) -> bool + Send + Sync>;

#[derive(Default)]
pub struct RecordingHost {
    model: Mutex<Model>,
    /// What the probe reports of what the model does not hold: binaries,
    /// facts, the cgroup2 mount and its controllers, sysctls the kernel
    /// has, online CPUs, other links' networks.
    base: Mutex<Option<crate::observed::Observed>>,
    /// The node lock: its holder while held.
    lock: std::sync::Arc<(Mutex<Option<String>>, std::sync::Condvar)>,
    fail_when: Vec<FailWhen>,
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl RecordingHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls for which `when` holds fail with EIO (and change nothing).
    pub fn failing(mut self, when: impl Fn(&Call) -> bool + Send + Sync + 'static) -> Self {
        self.fail_when.push(Box::new(when));
        self
    }

    /// The probe reports `base` for everything the model does not hold
    /// (and the model's state for the rest).
    pub fn with_base(self, base: crate::observed::Observed) -> Self {
        *self.base.lock().unwrap_or_else(|p| p.into_inner()) = Some(base);
        self
    }

    /// Each call takes `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.model().calls.clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// What the model holds at `path`, for assertions: the bytes of a file.
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        match self.model().entries.get(path) {
            Some(Entry::File(b)) => Some(b.clone()),
            _ => None,
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `call`, then (unless it is made to fail) carries it out on
    /// the model with `effect`.
    fn record<T>(
        &self,
        call: Call,
        effect: impl FnOnce(&mut Model) -> HostResult<T>,
    ) -> HostResult<T> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let fail = self.fail_when.iter().any(|f| f(&call));
        let path = PathBuf::from(call.target());
        let result = {
            let mut m = self.model();
            m.calls.push(call);
            if fail {
                Err(HostError::new(
                    "act on",
                    &path,
                    std::io::Error::from_raw_os_error(nix::libc::EIO),
                ))
            } else {
                effect(&mut m)
            }
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl Files for RecordingHost {
    fn ensure_dir(&self, base: &Path, rel: &Path, mode: u32, uid: u32, gid: u32) -> HostResult {
        let path = base.join(rel);
        let call = Call::EnsureDir {
            path: path.clone(),
            mode,
            uid,
            gid,
        };
        self.record(call, |m| {
            if let Some(Entry::File(_)) = m.entries.get(&path) {
                return Err(HostError::other("create", &path, "a file is in the way"));
            }
            for a in path.ancestors().skip(1) {
                if a.as_os_str().is_empty() || m.entries.contains_key(a) {
                    break;
                }
                m.dir_meta.insert(a.to_path_buf(), (mode, 0, 0));
            }
            m.mkdir_all(&path);
            m.dir_meta.insert(path.clone(), (mode, uid, gid));
            Ok(())
        })
    }
    fn remove_tree(&self, path: &Path) -> HostResult {
        let p = path.to_path_buf();
        self.record(Call::RemoveTree(p.clone()), |m| {
            if let Some(mp) = m.mounts.iter().find(|mp| mp.starts_with(&p)) {
                return Err(HostError::other(
                    "remove",
                    &p,
                    format!("{} is still mounted; unmount it first", mp.display()),
                ));
            }
            m.remove_under(&p);
            Ok(())
        })
    }
    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> HostResult {
        let p = path.to_path_buf();
        let call = Call::WriteFile {
            path: p.clone(),
            mode,
            len: data.len(),
        };
        self.record(call, |m| {
            if !p
                .parent()
                .is_some_and(|d| m.entries.get(d) == Some(&Entry::Dir))
            {
                return Err(HostError::new(
                    "write",
                    &p,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            m.entries.insert(p.clone(), Entry::File(data.to_vec()));
            Ok(())
        })
    }
    fn rename(&self, from: &Path, to: &Path) -> HostResult {
        let (f, t) = (from.to_path_buf(), to.to_path_buf());
        let call = Call::Rename {
            from: f.clone(),
            to: t.clone(),
        };
        self.record(call, |m| match m.entries.remove(&f) {
            Some(e) => {
                m.entries.insert(t, e);
                Ok(())
            }
            None => Err(HostError::new(
                "rename",
                &f,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        })
    }
    fn append_line(&self, path: &Path, line: &[u8]) -> HostResult {
        let p = path.to_path_buf();
        let call = Call::AppendLine {
            path: p.clone(),
            len: line.len(),
        };
        self.record(call, |m| {
            if !p
                .parent()
                .is_some_and(|d| m.entries.get(d) == Some(&Entry::Dir))
            {
                return Err(HostError::new(
                    "open",
                    &p,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            match m
                .entries
                .entry(p.clone())
                .or_insert(Entry::File(Vec::new()))
            {
                Entry::File(b) => {
                    b.extend_from_slice(line);
                    Ok(())
                }
                Entry::Dir => Err(HostError::other("append to", &p, "is a directory")),
            }
        })
    }
    fn set_append_only(&self, path: &Path, on: bool) -> HostResult<bool> {
        let call = Call::SetAppendOnly {
            path: path.to_path_buf(),
            on,
        };
        self.record(call, |_| Ok(true))
    }
    fn ensure_volume(&self, path: &Path, size: u64, _: u32, _: u32) -> HostResult {
        let call = Call::EnsureVolume {
            path: path.to_path_buf(),
            size,
        };
        let p = path.to_path_buf();
        self.record(call, |m| {
            m.entries.entry(p).or_insert(Entry::File(Vec::new()));
            Ok(())
        })
    }
    fn read(&self, path: &Path, cap: u64) -> HostResult<Option<Vec<u8>>> {
        match self.model().entries.get(path) {
            None => Ok(None),
            Some(Entry::Dir) => Err(HostError::other("read", path, "not a regular file")),
            Some(Entry::File(b)) if b.len() as u64 > cap => Err(HostError::other(
                "read",
                path,
                format!("larger than {cap} bytes"),
            )),
            Some(Entry::File(b)) => Ok(Some(b.clone())),
        }
    }
    fn read_tail(&self, path: &Path, max: u64) -> HostResult<Option<Vec<u8>>> {
        match self.model().entries.get(path) {
            None => Ok(None),
            Some(Entry::Dir) => Err(HostError::other("read", path, "not a regular file")),
            Some(Entry::File(b)) => {
                let start = b.len().saturating_sub(max as usize);
                Ok(Some(b[start..].to_vec()))
            }
        }
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.model().entries.get(path) == Some(&Entry::Dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.model().entries.contains_key(path)
    }
    fn list(&self, dir: &Path) -> HostResult<Vec<String>> {
        Ok(self
            .model()
            .entries
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }
}

impl Cgroups for RecordingHost {
    fn cgroup_create(&self, root: &Path, rel: &Path, controllers: &[&str]) -> HostResult {
        let dir = root.join(rel);
        let call = Call::CgroupCreate {
            dir: dir.clone(),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
        };
        self.record(call, |m| {
            m.mkdir_all(&dir);
            Ok(())
        })
    }
    fn cgroup_write(&self, root: &Path, rel: &Path, file: &str, value: &str) -> HostResult {
        let dir = &root.join(rel);
        let path = dir.join(file);
        let call = Call::CgroupWrite {
            dir: dir.to_path_buf(),
            file: file.to_string(),
            value: value.to_string(),
        };
        self.record(call, |m| {
            if m.entries.get(dir) != Some(&Entry::Dir) {
                return Err(HostError::new(
                    "open",
                    &path,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            m.entries
                .insert(path.clone(), Entry::File(format!("{value}\n").into_bytes()));
            Ok(())
        })
    }
    fn cgroup_remove(&self, root: &Path, rel: &Path) -> HostResult {
        let d = root.join(rel);
        self.record(Call::CgroupRemove(d.clone()), |m| {
            m.remove_under(&d);
            Ok(())
        })
    }
    fn cgroup_kill(&self, root: &Path, rel: &Path) -> HostResult {
        self.record(Call::CgroupKill(root.join(rel)), |_| Ok(()))
    }
    fn cgroup_remove_if_unused(&self, root: &Path, rel: &Path) -> HostResult {
        let d = root.join(rel);
        self.record(Call::CgroupRemoveIfUnused(d.clone()), |m| {
            let has_children = m
                .entries
                .iter()
                .any(|(p, e)| *e == Entry::Dir && p.parent() == Some(d.as_path()));
            if !has_children {
                m.remove_under(&d);
            }
            Ok(())
        })
    }
}

impl Vms for RecordingHost {
    /// A pid and start time derived from the id, as a real launch returns.
    fn launch(&self, l: &crate::security::jailer::Launch) -> HostResult<crate::host::ProcessRef> {
        let (program, args) = crate::security::jailer::argv(l);
        let call = Call::Launch {
            tenant: l.id.clone(),
            program,
            args,
        };
        let h = crate::digest::sha256(l.id.as_bytes());
        let pid = 1000 + u32::from_str_radix(&h[..6], 16).expect("hex");
        let id = l.id.clone();
        self.record(call, |m| {
            let r = crate::host::ProcessRef {
                pid,
                start_time: 4242,
            };
            m.vms.insert(id, r);
            Ok(r)
        })
    }
    fn stop(
        &self,
        r: crate::host::ProcessRef,
        _: u32,
        _: &str,
        _: &Path,
        _: Duration,
    ) -> HostResult {
        self.record(Call::Stop { pid: r.pid }, |m| {
            m.vms.retain(|_, v| *v != r);
            Ok(())
        })
    }
    /// The running VM of `id`, as the real scan finds it.
    fn find(&self, _: &Path, _: u32, _: &str, id: &str) -> Option<crate::host::ProcessRef> {
        self.model().vms.get(id).copied()
    }
    fn identify(&self, pid: u32, _: u32, _: &str, id: &str) -> Option<crate::host::ProcessRef> {
        self.model().vms.get(id).copied().filter(|r| r.pid == pid)
    }
}

impl Mounts for RecordingHost {
    /// The root becomes a mount; the staged files and dirs exist in it
    /// (binds as mounts), as the real host leaves them.
    fn stage_jail(&self, stage: &crate::host::JailStage) -> HostResult {
        let s = stage.clone();
        self.record(Call::StageJail(stage.clone()), |m| {
            if m.mounts.contains(&s.root) {
                return Err(HostError::other(
                    "make the jail",
                    &s.root,
                    "refusing: something is mounted there already",
                ));
            }
            m.entries.insert(s.root.clone(), Entry::Dir);
            m.mounts.insert(s.root.clone());
            for d in &s.dirs {
                m.entries.insert(s.root.join(d), Entry::Dir);
            }
            for (f, bytes, _) in &s.files {
                m.entries.insert(s.root.join(f), Entry::File(bytes.clone()));
            }
            for (f, _, _) in &s.binds {
                m.entries.insert(s.root.join(f), Entry::File(Vec::new()));
                m.mounts.insert(s.root.join(f));
            }
            Ok(())
        })
    }
    /// Every mount at or below the root goes, and with the tmpfs what was
    /// in it.
    fn unstage_jail(&self, root: &Path) -> HostResult {
        let r = root.to_path_buf();
        self.record(Call::UnstageJail(r.clone()), |m| {
            if m.mounts.remove(&r) {
                m.mounts.retain(|p| !p.starts_with(&r));
                m.entries.retain(|p, _| !p.starts_with(&r) || *p == r);
            }
            Ok(())
        })
    }
    fn tmpfs_file(&self, dir: &Path, name: &str, _: u64, _: u32) -> HostResult {
        let p = dir.join(name);
        self.record(Call::TmpfsFile { path: p.clone() }, |m| {
            m.entries.entry(p).or_insert(Entry::File(Vec::new()));
            Ok(())
        })
    }
    fn mount_tmpfs(&self, target: &Path, opts: &TmpfsOptions) -> HostResult {
        let t = target.to_path_buf();
        let opts = opts.clone();
        let call = Call::MountTmpfs {
            target: t.clone(),
            size: opts.size.clone(),
            mode: opts.mode.clone(),
        };
        self.record(call, |m| {
            if m.entries.get(&t) != Some(&Entry::Dir) {
                return Err(HostError::new(
                    "mount tmpfs on",
                    &t,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            m.mounts.insert(t.clone());
            m.tmpfs.insert(t, opts.clone());
            Ok(())
        })
    }
    fn unmount(&self, target: &Path) -> HostResult {
        let t = target.to_path_buf();
        self.record(Call::Unmount(t.clone()), |m| {
            m.mounts.remove(&t);
            m.tmpfs.remove(&t);
            Ok(())
        })
    }
}

/// The refusal of a link another owner marked, as the real host words it.
fn not_ours(name: &str, alias: Option<&String>) -> HostError {
    HostError::other(
        "manage",
        Path::new(name),
        format!("refusing: its alias is {alias:?}, not this node's mark"),
    )
}

impl Links for RecordingHost {
    fn bridge_ensure(
        &self,
        name: &str,
        mac: [u8; 6],
        addresses: &[ipnet::Ipv4Net],
        mark: &str,
    ) -> HostResult {
        let call = Call::BridgeEnsure {
            name: name.to_string(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            mark: mark.to_string(),
        };
        let (n, mark) = (name.to_string(), mark.to_string());
        self.record(call, |m| {
            match m.links.get(&n) {
                Some((kind, _)) if *kind != "bridge" => {
                    return Err(HostError::other(
                        "use",
                        Path::new(&n),
                        "a link with this name exists and is not a bridge",
                    ));
                }
                Some(_) if m.aliases.get(&n) != Some(&mark) => {
                    return Err(not_ours(&n, m.aliases.get(&n)));
                }
                _ => {}
            }
            m.links.insert(n.clone(), ("bridge", None));
            m.aliases.insert(n.clone(), mark);
            let d = m.link_data.entry(n).or_default();
            d.mac = Some(mac);
            d.addresses = addresses.iter().map(|a| a.to_string()).collect();
            Ok(())
        })
    }
    fn bridge_delete(&self, name: &str, _mac: [u8; 6], mark: &str) -> HostResult {
        let (n, mark) = (name.to_string(), mark.to_string());
        self.record(Call::LinkDelete(name.to_string()), |m| {
            if m.links.contains_key(&n) && m.aliases.get(&n) != Some(&mark) {
                return Err(not_ours(&n, m.aliases.get(&n)));
            }
            if m.links.remove(&n).is_some() {
                m.aliases.remove(&n);
                m.link_data.remove(&n);
                m.neighbours.retain(|(b, _), _| *b != n);
                // Its ports lose their master, as the kernel does.
                for (_, master) in m.links.values_mut() {
                    if master.as_deref() == Some(n.as_str()) {
                        *master = None;
                    }
                }
            }
            Ok(())
        })
    }
    fn tap_ensure(&self, tap: &TapSpec) -> HostResult {
        let call = Call::TapEnsure {
            name: tap.name.clone(),
            owner: tap.owner,
            group: tap.group,
            master: tap.master.clone(),
            mac: tap.mac,
            sysctls: tap.sysctls.clone(),
            neighbour: tap.neighbour,
            mark: tap.alias.clone(),
        };
        let t = tap.clone();
        self.record(call, |m| {
            if m.links.get(&t.master).map(|l| l.0) != Some("bridge") {
                return Err(HostError::other(
                    "attach",
                    Path::new(&t.name),
                    format!("the bridge {} does not exist", t.master),
                ));
            }
            if let Some(a) = m.aliases.get(&t.name)
                && *a != t.alias
            {
                return Err(not_ours(&t.name, Some(a)));
            }
            m.links
                .insert(t.name.clone(), ("tap", Some(t.master.clone())));
            m.aliases.insert(t.name.clone(), t.alias.clone());
            m.sysctls.extend(t.sysctls.iter().cloned());
            m.neighbours.insert((t.master.clone(), t.neighbour), t.mac);
            let d = m.link_data.entry(t.name.clone()).or_default();
            d.owner = Some(t.owner);
            d.group = Some(t.group);
            d.fdb = Some(t.mac);
            Ok(())
        })
    }
    fn tap_delete(&self, name: &str, mark: &str) -> HostResult {
        let (n, mark) = (name.to_string(), mark.to_string());
        self.record(Call::LinkDelete(name.to_string()), |m| {
            if let Some(a) = m.aliases.get(&n)
                && *a != mark
            {
                return Err(not_ours(&n, Some(a)));
            }
            m.links.remove(&n);
            m.aliases.remove(&n);
            m.link_data.remove(&n);
            // Its own sysctls go with it, as the kernel's do.
            let own = format!(".{n}.");
            m.sysctls.retain(|k, _| !k.contains(&own));
            Ok(())
        })
    }
    fn neighbour_delete(&self, bridge: &str, ip: std::net::Ipv4Addr) -> HostResult {
        let call = Call::NeighbourDelete {
            name: bridge.to_string(),
            ip,
        };
        let b = bridge.to_string();
        self.record(call, |m| {
            m.neighbours.remove(&(b, ip));
            Ok(())
        })
    }
    fn sysctl_write(&self, name: &str, value: &str) -> HostResult {
        let call = Call::SysctlWrite {
            name: name.to_string(),
            value: value.to_string(),
        };
        let (n, v) = (name.to_string(), value.to_string());
        self.record(call, |m| {
            m.sysctls.insert(n, v);
            Ok(())
        })
    }
}

impl Builds for RecordingHost {
    /// A lock derived from the flake reference, as a real lock is from its
    /// source.
    fn flake_lock(&self, _: &crate::spec::node::NixConfig, flake_ref: &str) -> HostResult<String> {
        Ok(format!(
            "sha256-{}=",
            &crate::digest::sha256(flake_ref.as_bytes())[..43]
        ))
    }
    /// A store path derived from the installable; the files hashed from
    /// their names. Recorded, as a build changes the host.
    fn build(
        &self,
        _: &crate::spec::node::NixConfig,
        flake_ref: &str,
        profile: &str,
    ) -> HostResult<crate::host::Built> {
        let what = crate::host::vm::nixbuild::installable(flake_ref, profile);
        let digest = crate::digest::sha256(what.as_bytes());
        let out = PathBuf::from(format!("/nix/store/{}-mvm-{profile}", &digest[..32]));
        let call = Call::NixBuild {
            installable: what.clone(),
        };
        self.record(call, |m| {
            m.store.insert(out.clone());
            Ok(crate::host::Built {
                files: crate::host::vm::nixbuild::CONTRACT_FILES
                    .iter()
                    .map(|n| {
                        (
                            n.to_string(),
                            out.join(n),
                            crate::digest::sha256(n.as_bytes()),
                        )
                    })
                    .collect(),
                out: out.clone(),
                log: b"built\n".to_vec(),
            })
        })
    }
}

impl Firewall for RecordingHost {
    fn nft_apply(&self, commands: &serde_json::Value) -> HostResult {
        let call = Call::NftApply {
            commands: commands
                .get("nftables")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        // All of it, or none of it, like nft.
        self.record(call, |m| {
            let mut next = m.nft.clone();
            nft::transact(&mut next, commands)
                .map_err(|e| HostError::other("apply", Path::new("the nftables transaction"), e))?;
            m.nft = next;
            Ok(())
        })
    }
}

impl Services for RecordingHost {
    fn start_metadata(
        &self,
        listen: &str,
        limit: crate::security::metadata::RateLimit,
        _: &Path,
        started: &mut dyn FnMut(crate::host::ProcessRef) -> HostResult,
    ) -> HostResult<crate::host::ProcessRef> {
        self.record(
            Call::StartMetadata {
                listen: listen.to_string(),
                per_sec: limit.per_sec,
                burst: limit.burst,
            },
            |_| Ok(()),
        )?;
        let r = crate::host::ProcessRef {
            pid: 4200,
            start_time: 42,
        };
        self.model().service = Some((r, listen.to_string()));
        if let Err(e) = started(r) {
            self.model().service = None;
            return Err(e);
        }
        Ok(r)
    }
    fn stop_service(&self, r: crate::host::ProcessRef) -> HostResult {
        self.record(Call::Stop { pid: r.pid }, |m| {
            if m.service.as_ref().is_some_and(|(s, _)| *s == r) {
                m.service = None;
            }
            Ok(())
        })
    }
}

impl Identity for RecordingHost {
    fn hostname(&self) -> String {
        "recording-host".into()
    }
    /// Distinct ids, the same in every run of a test.
    fn random_id(&self) -> HostResult<[u8; 16]> {
        let mut m = self.model();
        m.ids += 1;
        Ok(u128::from(m.ids).to_be_bytes())
    }
}

impl crate::host::Locks for RecordingHost {
    /// Held by one caller at a time; another waits up to `timeout`, told
    /// once who holds it, and is then refused, as on the real host.
    fn node_lock(
        &self,
        path: &Path,
        holder: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<crate::host::NodeLock, crate::host::LockError> {
        let (held, freed) = &*self.lock;
        let deadline = std::time::Instant::now() + timeout;
        let mut h = held.lock().unwrap_or_else(|p| p.into_inner());
        let mut told = false;
        while let Some(by) = h.clone() {
            if !told {
                told = true;
                waiting(&by);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(crate::host::LockError::Held {
                    path: path.to_path_buf(),
                    holder: by,
                });
            }
            h = freed
                .wait_timeout(h, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *h = Some(holder.to_string());
        drop(h);
        self.model().calls.push(Call::NodeLock(path.to_path_buf()));
        Ok(crate::host::NodeLock::new(Release(self.lock.clone())))
    }
}

/// Frees the recording host's lock when the guard drops.
struct Release(std::sync::Arc<(Mutex<Option<String>>, std::sync::Condvar)>);

impl Drop for Release {
    fn drop(&mut self) {
        let (held, freed) = &*self.0;
        *held.lock().unwrap_or_else(|p| p.into_inner()) = None;
        freed.notify_all();
    }
}

impl crate::host::Host {
    /// The recording double: every capability backed by `rec`.
    pub fn recording(rec: std::sync::Arc<RecordingHost>) -> Self {
        Self::from_impl(rec)
    }
}

impl Clock for RecordingHost {
    /// A fixed instant, so what tests record does not depend on when they
    /// ran.
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_796_000_000).expect("a valid instant")
    }
}
