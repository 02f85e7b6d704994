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

use crate::host::{Clock, HostError, HostResult, Identity, TmpfsOptions};

mod files;
mod kernel;
mod links;
mod nft;
mod probe;
mod processes;
mod secrets;

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
    /// A secrets generation staged on a tenant's tmpfs (`dir`), with its
    /// files' names.
    StageSecrets {
        dir: PathBuf,
        generation: u64,
        files: Vec<String>,
    },
    /// A tenant's secrets generations below `below` and not in `keep`
    /// removed.
    PruneSecrets {
        dir: PathBuf,
        below: u64,
        keep: Vec<u64>,
    },
    /// A VM of `tenant` launched as `program args…` (the jailer's argv,
    /// or Firecracker's without one), exactly as the real host execs it.
    Launch {
        tenant: String,
        program: PathBuf,
        args: Vec<String>,
    },
    /// A VM's logs directory made ready for a run (rotated, fresh files
    /// and FIFOs).
    PrepareLogs {
        dir: PathBuf,
    },
    /// The metadata service started at `listen`, with its rate limit.
    StartMetadata {
        listen: String,
        per_sec: u32,
        burst: u32,
        tokens: crate::security::metadata::Tokens,
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
            Call::StageSecrets { dir, .. } | Call::PruneSecrets { dir, .. } => path(dir),
            Call::PrepareLogs { dir } => path(dir),
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

    /// Every path the model holds, for assertions over all of it.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.model().entries.keys().cloned().collect()
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
