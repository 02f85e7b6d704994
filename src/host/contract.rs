//! `Host`: every change mvm makes to a node, and every read of it — the
//! probe, the node lock, the node's identity, what appliers and the audit
//! writer read — goes through one of these capability traits. `Host`
//! bundles one implementation of each (`Host::from_impl`):
//! `Host::linux(state_dir)` the real machine (`linux/`),
//! `Host::recording(..)` the test double (`recording/`) that records typed
//! calls against an in-memory model. This file names neither.
//!
//! A kind that needs a new capability (netlink, nft, processes, nix) adds a
//! trait here, a field on `Host`, its Linux implementation and its
//! recording double — it does not grow an existing trait.
//!
//! Every mutating operation is idempotent: doing it again after a crash at
//! any point converges (creating what exists is fine, removing what is gone
//! is fine).

use crate::observed::Observed;
use crate::spec::NodeConfig;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A host operation that failed: what it was doing, what it acted on (a
/// path, a link, a pid, a tenant, a build), and the OS's or the tool's
/// reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {}", crate::text::one_line(target), crate::text::escape_controls(&self.cause()))]
pub struct HostError {
    pub action: &'static str,
    pub target: String,
    #[source]
    pub source: io::Error,
}

impl HostError {
    /// The source's message, without the target when it repeats it.
    fn cause(&self) -> String {
        let s = self.source.to_string();
        let prefix = format!("{}: ", self.target);
        s.strip_prefix(&prefix).map(str::to_string).unwrap_or(s)
    }

    /// An OS error of an operation on `path`.
    pub fn new(action: &'static str, path: &Path, source: impl Into<io::Error>) -> Self {
        Self::on(action, path.display(), source)
    }

    /// An error with a message instead of an OS error, about `path`.
    pub fn other(action: &'static str, path: &Path, message: impl Into<String>) -> Self {
        Self::new(action, path, io::Error::other(message.into()))
    }

    /// An error of an operation on something that is not a path: a link
    /// (`tap-acme`), a process (`pid 4242`), a tenant's VM, a build.
    pub fn on(
        action: &'static str,
        target: impl std::fmt::Display,
        source: impl Into<io::Error>,
    ) -> Self {
        Self {
            action,
            target: target.to_string(),
            source: source.into(),
        }
    }

    /// `on`, with a message instead of an OS error.
    pub fn other_on(
        action: &'static str,
        target: impl std::fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        Self::on(action, target, io::Error::other(message.into()))
    }
}

pub type HostResult<T = ()> = Result<T, HostError>;

/// Options of a tenant's tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsOptions {
    /// Size, as tmpfs takes it (`16384k`).
    pub size: String,
    /// Root directory mode, octal (`0700`).
    pub mode: String,
}

/// Files and directories under the state dir. Paths are absolute and must
/// lie below it; the real host reaches them from the state dir's fd and
/// refuses a link, a `..` or a mount anywhere below it. Files mvm owns
/// (records, logs, heads) must be regular files with one link.
pub trait Files: Send + Sync {
    /// Creates `base/rel` (each missing component with `mode`, the last one
    /// owned by `uid:gid`) and sets the last one's mode and owner. Never
    /// follows a symlink below `base`: a link planted in the tree is an
    /// error. A filesystem mounted on the last component is left as it is.
    fn ensure_dir(&self, base: &Path, rel: &Path, mode: u32, uid: u32, gid: u32) -> HostResult;
    /// Removes `path` and everything in it, without following links. Refuses
    /// (before deleting anything) if a filesystem is mounted at or below it.
    fn remove_tree(&self, path: &Path) -> HostResult;
    /// Writes a file atomically (temp, fsync, rename, fsync dir).
    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> HostResult;
    fn rename(&self, from: &Path, to: &Path) -> HostResult;
    /// Appends one line with a single write and fsyncs; creates the file
    /// (mode 0600) if needed, never through a link.
    fn append_line(&self, path: &Path, line: &[u8]) -> HostResult;
    /// Sets or clears the append-only inode flag; `Ok(false)` where the
    /// filesystem does not support it.
    fn set_append_only(&self, path: &Path, on: bool) -> HostResult<bool>;
    /// Creates `path` (if missing) as an ext4 image of `size` bytes
    /// (sparse) whose root directory is owned by `uid:gid`, the file owned
    /// by `uid:gid` with mode 0600. It is made under a temporary name and
    /// renamed into place, so a crash never leaves a half-made volume; one
    /// that exists is left exactly as it is (the tenant's data).
    fn ensure_volume(&self, path: &Path, size: u64, uid: u32, gid: u32) -> HostResult;
    /// Reads a regular file without following a link, at most `cap` bytes
    /// (a larger file is an error). `Ok(None)` when it does not exist.
    fn read(&self, path: &Path, cap: u64) -> HostResult<Option<Vec<u8>>>;
    /// The last `max` bytes of a regular file (all of it if shorter),
    /// without following a link. `Ok(None)` when it does not exist.
    fn read_tail(&self, path: &Path, max: u64) -> HostResult<Option<Vec<u8>>>;
    /// Whether `path` is a directory (a link to one is not).
    fn is_dir(&self, path: &Path) -> bool;
    /// Whether anything, a dangling link included, is at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// The names in a directory, sorted; empty when it does not exist.
    fn list(&self, dir: &Path) -> HostResult<Vec<String>>;
}

/// The cgroup2 filesystem. `root` is the cgroup2 mount; `rel` is walked
/// below it by fd, never through a link.
pub trait Cgroups: Send + Sync {
    /// Creates the cgroup `root/rel`, enabling `controllers` in the
    /// `cgroup.subtree_control` of `root` and every ancestor of the leaf.
    fn cgroup_create(&self, root: &Path, rel: &Path, controllers: &[&str]) -> HostResult;
    /// Writes one interface file (`memory.max`, …) of the cgroup
    /// `root/rel`.
    fn cgroup_write(&self, root: &Path, rel: &Path, file: &str, value: &str) -> HostResult;
    /// Freezes, kills everything in, waits until empty, and removes the
    /// cgroup `root/rel`, with bounded retries. Gone already is success.
    fn cgroup_remove(&self, root: &Path, rel: &Path) -> HostResult;
    /// Kills everything in the cgroup `root/rel` (`cgroup.kill`) and waits
    /// until it is empty; no such cgroup is fine.
    fn cgroup_kill(&self, root: &Path, rel: &Path) -> HostResult;
    /// Removes the cgroup `root/rel` if it is empty with no children (a
    /// parent left behind when its last tenant went); one still in use is
    /// left alone.
    fn cgroup_remove_if_unused(&self, root: &Path, rel: &Path) -> HostResult;
}

/// Mounts.
pub trait Mounts: Send + Sync {
    /// Mounts a `nodev,noexec,nosuid` tmpfs at `target` (a directory below
    /// the state dir, never a link), or remounts it with these options if
    /// one is there already; its root gets `opts.mode`, owned by root.
    fn mount_tmpfs(&self, target: &Path, opts: &TmpfsOptions) -> HostResult;
    /// Unmounts `target`; not mounted is success.
    fn unmount(&self, target: &Path) -> HostResult;
    /// Creates `name` in the tmpfs mounted at `dir` (if missing): `size`
    /// zero bytes, root-owned, group `gid`, mode 0640.
    fn tmpfs_file(&self, dir: &Path, name: &str, size: u64, gid: u32) -> HostResult;
    /// Makes a VM's jail root: a tmpfs of its own on `stage.root` (an
    /// empty directory below the state dir, never a link), bounded in
    /// bytes and inodes — all the tenant's Firecracker can ever write
    /// there — and in it the staged files, by fd from its root.
    fn stage_jail(&self, stage: &JailStage) -> HostResult;
    /// Unmounts what `stage_jail` made at `root`: the bind mounts in it,
    /// then its tmpfs (and with it whatever the tenant wrote there).
    /// Nothing mounted is fine.
    fn unstage_jail(&self, root: &Path) -> HostResult;
}

/// A tenant's secrets, on the tmpfs mounted at its `secrets/` dir (proved
/// a tmpfs before anything is written: a secret never touches a disk).
pub trait Secrets: Send + Sync {
    /// Stages generation `stage.generation` in the tmpfs at `dir`: built
    /// in a `.stage-` directory (the files 0400 and the read-only drive
    /// image owned by the tenant's uid/gid, the manifest root-only), then
    /// renamed to `gen-<n>` — whole, or not there. Refused when the tmpfs
    /// has no room for it, saying how much it has.
    fn stage_secrets(&self, dir: &Path, stage: &SecretsStage) -> HostResult;
    /// Removes from the tmpfs at `dir` every generation numbered below
    /// `below` but not in `keep`, and what a killed staging left. Nothing
    /// mounted is fine.
    fn prune_secrets(&self, dir: &Path, below: u64, keep: &[u64]) -> HostResult;
    /// The manifest of generation `generation` in the tmpfs at `dir`, as
    /// stored; `None` when there is no such generation (or no tmpfs).
    fn secrets_manifest(&self, dir: &Path, generation: u64) -> HostResult<Option<Vec<u8>>>;
}

/// A generation to stage.
pub struct SecretsStage<'a> {
    pub generation: u64,
    pub files: &'a [crate::security::secrets::SecretFile],
    /// The manifest's bytes (no value in them).
    pub manifest: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub image_bytes: u64,
    pub inodes: u64,
}

/// What a VM's jail root is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailStage {
    /// `<chroot_base>/<exec>/<id>/root`.
    pub root: PathBuf,
    /// The jail tmpfs's size in bytes and its inode count.
    pub size: u64,
    pub inodes: u64,
    /// Files bind-mounted in (`nosuid,nodev,noexec`): name in the root,
    /// source, and whether it stays writable (the data volume).
    pub binds: Vec<(String, PathBuf, bool)>,
    /// Files written in: name, contents, mode (root's).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Directories made in (0700, root's).
    pub dirs: Vec<String>,
}

/// A tenant's tap as the host should have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    pub name: String,
    pub owner: u32,
    pub group: u32,
    /// The bridge it is a port of.
    pub master: String,
    /// The one static FDB entry it gets (the tenant's MAC).
    pub mac: [u8; 6],
    /// Its own sysctls, written before it is attached and set up.
    pub sysctls: Vec<(String, String)>,
    /// The tenant's address: the bridge gets a permanent neighbour entry
    /// `neighbour -> mac`.
    pub neighbour: std::net::Ipv4Addr,
    /// The alias that marks it as this node's.
    pub alias: String,
}

/// Network links and the kernel's network settings.
pub trait Links: Send + Sync {
    /// Creates the bridge `name` if it is missing, marked with the alias
    /// `mark`, gives it the MAC `mac` and exactly these IPv4 addresses
    /// (`10.200.0.1/24`), and sets it up. A bridge that exists with
    /// another alias, or with none and another MAC, is not mvm's: refused.
    fn bridge_ensure(
        &self,
        name: &str,
        mac: [u8; 6],
        addresses: &[ipnet::Ipv4Net],
        mark: &str,
    ) -> HostResult;
    /// Deletes the bridge `name` if it carries the alias `mark` (or none
    /// and mvm's fixed MAC `mac`: a bridge of an mvm before marks); gone
    /// is fine, another's is refused.
    fn bridge_delete(&self, name: &str, mac: [u8; 6], mark: &str) -> HostResult;
    /// Makes the tap: created through /dev/net/tun (persistent, owned by
    /// the tenant) if missing, marked, its sysctls written, a port of its
    /// bridge, up, isolated, not learning, with exactly one static FDB
    /// entry, the tenant's MAC, and the bridge's permanent neighbour entry
    /// for the tenant. A link of that name with another mark is refused.
    fn tap_ensure(&self, tap: &TapSpec) -> HostResult;
    /// Deletes the tap `name` if it carries the alias `mark` or none; gone
    /// is fine, another's is refused.
    fn tap_delete(&self, name: &str, mark: &str) -> HostResult;
    /// `tap_delete` of each of `names`, one result each, in order — at
    /// once where the host can (the kernel deletes a batch of links for
    /// the cost of one).
    fn taps_delete(&self, names: &[String], mark: &str) -> Vec<HostResult> {
        names.iter().map(|n| self.tap_delete(n, mark)).collect()
    }
    /// Removes the bridge's neighbour entry for `ip`; gone is fine.
    fn neighbour_delete(&self, bridge: &str, ip: std::net::Ipv4Addr) -> HostResult;
    /// Writes a sysctl (`net.ipv4.ip_forward`); only names of the form
    /// `net.<a-z0-9_.->` are accepted.
    fn sysctl_write(&self, name: &str, value: &str) -> HostResult;
}

/// Building tenant artifacts (`nixbuild.rs`).
pub trait Builds: Send + Sync {
    /// The flake's lock hash (the narHash of its locked source).
    fn flake_lock(&self, nix: &crate::spec::node::NixConfig, flake_ref: &str)
    -> HostResult<String>;
    /// Builds `<flake>#mvm-<profile>` and hashes the contract's files.
    fn build(
        &self,
        nix: &crate::spec::node::NixConfig,
        flake_ref: &str,
        profile: &str,
    ) -> HostResult<Built>;
}

/// Firecracker processes (`vmm.rs`).
pub trait Vms: Send + Sync {
    /// Launches a VM (through the jailer) and waits until its API answers;
    /// with `l.logs`, its output, log and metrics go through a log pump
    /// into the files `prepare_logs` made.
    fn launch(&self, l: &crate::security::jailer::Launch) -> HostResult<Launched>;
    /// Asks the running VM `r` (its Firecracker running as `uid`) to write
    /// its metrics now (`FlushMetrics` through its API socket), and waits
    /// up to 2 s until its log pump rewrote `metrics`: whether it did.
    fn flush_metrics(
        &self,
        r: ProcessRef,
        uid: u32,
        api_sock: &Path,
        metrics: &Path,
    ) -> HostResult<bool>;
    /// Starts a run's logs: the previous run's files rotated (after its
    /// pump is done), fresh files and the FIFOs Firecracker writes to.
    fn prepare_logs(&self, logs: &crate::security::jailer::VmLogs) -> HostResult;
    /// Stops the VM `r` if that process still runs as `uid`: SendCtrlAltDel,
    /// a bounded wait, SIGKILL.
    fn stop(
        &self,
        r: ProcessRef,
        uid: u32,
        cgroup: &str,
        api_sock: &Path,
        grace: Duration,
    ) -> HostResult;
    /// The running VM of tenant `id` (`uid`, `cgroup`), found by scanning
    /// the processes, if there is one.
    fn find(&self, firecracker: &Path, uid: u32, cgroup: &str, id: &str) -> Option<ProcessRef>;
    /// `pid` as a VM of tenant `id` running as `uid` in `cgroup`, if it is
    /// one.
    fn identify(&self, pid: u32, uid: u32, cgroup: &str, id: &str) -> Option<ProcessRef>;
    /// Launches the developer VM (`mvm dev up`: Firecracker itself, no
    /// jailer) and waits until its API answers; with the cgroup it runs in.
    fn launch_dev(
        &self,
        d: &crate::security::jailer::DevLaunch,
    ) -> HostResult<(ProcessRef, String)>;
    /// Whether the developer VM `r` still runs, and whether its API answers.
    fn dev_status(&self, d: &crate::security::jailer::DevLaunch, r: ProcessRef) -> (bool, bool);
}

/// The metadata service process (`metadata_server.rs`).
pub trait Services: Send + Sync {
    /// Starts `mvm metadata serve` detached, listening at `listen`, with
    /// `policy` (rate limit, token rule), reading `state_dir`: calls `started` with the
    /// process as soon as it exists (to record it; an error there kills
    /// it), then waits until it listens. A failed start leaves no process.
    fn start_metadata(
        &self,
        listen: &str,
        policy: crate::security::metadata::Policy,
        state_dir: &Path,
        started: &mut dyn FnMut(ProcessRef) -> HostResult,
    ) -> HostResult<ProcessRef>;
    /// Stops it if `r` is still that process.
    fn stop_service(&self, r: ProcessRef) -> HostResult;
}

/// nftables.
pub trait Firewall: Send + Sync {
    /// Applies `{"nftables": [...]}` as one `nft -j -f -` transaction: all
    /// of it, or none of it.
    fn nft_apply(&self, commands: &serde_json::Value) -> HostResult;
}

/// Who this host is, for audit records, and fresh identities.
pub trait Identity: Send + Sync {
    /// The host name (`/proc/sys/kernel/hostname`).
    fn hostname(&self) -> String;
    /// 16 random bytes from the kernel (a new node id).
    fn random_id(&self) -> HostResult<[u8; 16]>;
}

/// Reading the host as it is: one batched, read-only pass.
pub trait Probe: Send + Sync {
    /// What the host has of everything `node` manages (one mountinfo read,
    /// one netlink dump, one nft dump, one /proc scan); what cannot be
    /// read becomes a fact, never an error.
    fn observe(&self, node: &NodeConfig) -> Observed;
    /// What `mvm node info` reads beyond the probe: the kernel, the
    /// memory, the versions the installed binaries report.
    fn host_facts(&self, node: &NodeConfig) -> HostFacts;
}

/// Facts about the machine itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel: String,
    /// `MemTotal` of /proc/meminfo.
    pub memory_mib: Option<u64>,
    /// The first line each installed binary prints for `--version`, by
    /// name (`firecracker`, `jailer`, `nix`); absent when it is missing or
    /// did not answer within 5 s.
    pub versions: std::collections::BTreeMap<String, String>,
    /// Why /dev/kvm does not open read-write (what Firecracker needs);
    /// `None`: it does.
    pub kvm_problem: Option<String>,
    /// The `nft` binary's version line, if installed.
    pub nft_version: Option<String>,
    /// Whether the kernel shows nf_tables as a module (`/sys/module`); a
    /// built-in one may not show.
    pub nf_tables: bool,
}

/// One reconcile at a time on a node.
pub trait Locks: Send + Sync {
    /// Takes the node lock at `path`, recording `holder` (the command) for
    /// whoever waits; waits up to `timeout`, telling `waiting` once who
    /// holds it. The lock is released when the guard drops, or by the
    /// kernel when the process dies: a crash never leaves a stale lock.
    fn node_lock(
        &self,
        path: &Path,
        holder: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<NodeLock, LockError>;
}

/// A held node lock; dropping it releases it.
pub struct NodeLock(#[allow(dead_code)] Box<dyn Send>);

impl NodeLock {
    pub fn new(held: impl Send + 'static) -> Self {
        Self(Box::new(held))
    }
}

/// Why the node lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the node lock {} is held by {holder}", path.display())]
    Held { path: PathBuf, holder: String },
    #[error(transparent)]
    Host(#[from] HostError),
}

/// A VM launched: its process, and how long of the launch was the wait
/// for its API (the jailer's and Firecracker's own start), so the rest is
/// mvm's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    pub process: ProcessRef,
    pub api_wait: Duration,
}

/// A process mvm started and may stop: its pid and its start time
/// (`/proc/<pid>/stat` field 22), which tells it from a later process that
/// reuses the pid. A VM or the metadata service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRef {
    pub pid: u32,
    pub start_time: u64,
}

/// What a Nix build produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub out: PathBuf,
    /// `(name, store path, sha256)` of each contract file.
    pub files: Vec<(String, PathBuf, String)>,
    /// Everything Nix printed on stderr.
    pub log: Vec<u8>,
}

/// The wall clock, for audit timestamps and archive names.
pub trait Clock: Send + Sync {
    fn now(&self) -> jiff::Timestamp;
}

/// One implementation of every capability.
#[derive(Clone)]
pub struct Host {
    pub files: Arc<dyn Files>,
    pub cgroups: Arc<dyn Cgroups>,
    pub mounts: Arc<dyn Mounts>,
    pub secrets: Arc<dyn Secrets>,
    pub links: Arc<dyn Links>,
    pub firewall: Arc<dyn Firewall>,
    pub builds: Arc<dyn Builds>,
    pub vms: Arc<dyn Vms>,
    pub identity: Arc<dyn Identity>,
    pub services: Arc<dyn Services>,
    pub clock: Arc<dyn Clock>,
    pub probe: Arc<dyn Probe>,
    pub locks: Arc<dyn Locks>,
}

impl Host {
    /// Every capability backed by one implementation: `Host::linux` (the
    /// real machine, `linux/`) and `Host::recording` (the double,
    /// `recording/`) are this, each defined beside its implementation.
    pub fn from_impl<T>(h: Arc<T>) -> Self
    where
        T: Files
            + Cgroups
            + Mounts
            + Secrets
            + Links
            + Firewall
            + Builds
            + Vms
            + Identity
            + Services
            + Clock
            + Probe
            + Locks
            + 'static,
    {
        Self {
            files: h.clone(),
            cgroups: h.clone(),
            mounts: h.clone(),
            secrets: h.clone(),
            links: h.clone(),
            firewall: h.clone(),
            builds: h.clone(),
            vms: h.clone(),
            identity: h.clone(),
            services: h.clone(),
            probe: h.clone(),
            locks: h.clone(),
            clock: h,
        }
    }
}

impl Host {
    /// Creates the state dir itself if it is missing (its parent must
    /// exist), root-owned 0755: it holds the node lock, so it comes before
    /// anything else. One that exists is left as it is.
    pub fn ensure_state_dir(&self, state: &Path) -> HostResult {
        if self.files.is_dir(state) {
            return Ok(());
        }
        let parent = state.parent().unwrap_or(Path::new("/"));
        let name = state.file_name().map(Path::new).unwrap_or(Path::new("."));
        self.files.ensure_dir(parent, name, 0o755, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed build's log tail (and a name from the host) is quoted in
    /// the error: its control characters are shown, not obeyed.
    #[test]
    fn an_error_shows_foreign_control_characters_escaped() {
        let e = HostError::other(
            "build",
            Path::new("/nix/\u{1b}[2Jx\nApply complete!"),
            "builder failed: \u{1b}]0;owned\u{7}\u{1b}[32mApply complete!",
        );
        let shown = e.to_string();
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert!(shown.contains("\\x1b[32mApply complete!"), "{shown}");
        assert!(
            shown.contains("/nix/\\x1b[2Jx\\nApply complete!"),
            "{shown}"
        );
    }
}
