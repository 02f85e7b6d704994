//! How a tenant's Firecracker is jailed: what the jailer is asked for (its
//! arguments, the resource limits), and the bounds of the jail root it
//! builds. The layout of the jail itself (`<chroot-base>/<exec>/<id>/root`)
//! is `spec::jail::JailLayout`: node.toml's validation needs it to bound
//! the API socket's path, and `spec` is the bottom layer.

use std::path::PathBuf;

/// How to launch one VM.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// The jailer, or `None` to run Firecracker directly (no jailer
    /// installed: no chroot, no uid drop — the plan says so).
    pub jailer: Option<PathBuf>,
    pub firecracker: PathBuf,
    pub id: String,
    pub uid: u32,
    pub gid: u32,
    /// `--chroot-base-dir`.
    pub chroot_base: PathBuf,
    /// `--parent-cgroup`, relative to the cgroup2 root.
    pub parent_cgroup: String,
    /// Jail-relative paths handed to Firecracker.
    pub api_sock: String,
    pub config_file: String,
    pub seccomp_filter: Option<String>,
    /// The API socket's host path, to wait on.
    pub api_sock_host: PathBuf,
    /// Where the VM's output, log and metrics go (through the log pump);
    /// `None`: nowhere (tests of the launch alone).
    pub logs: Option<VmLogs>,
    /// Without the jailer: the cgroup (its `cgroup.procs`) mvm moves the
    /// process into.
    pub cgroup_procs: Option<PathBuf>,
    /// The largest file Firecracker may write (`fsize`): its log, metrics
    /// and data volume.
    pub max_file_bytes: u64,
}

/// A VM's logs directory as a launch uses it (`state/logs.rs`): the
/// pump writes there, each file at most `max_bytes`, `previous_runs`
/// earlier runs kept; the FIFOs there are the tenant's (`uid`/`gid`),
/// for its Firecracker to open in the jail.
#[derive(Debug, Clone, PartialEq)]
pub struct VmLogs {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub previous_runs: u32,
    pub uid: u32,
    pub gid: u32,
}

/// How to launch the developer VM (`mvm dev up`): Firecracker itself, as
/// root, no jailer, no cgroup of its own — by design not hardened.
#[derive(Debug, Clone, PartialEq)]
pub struct DevLaunch {
    pub firecracker: PathBuf,
    pub api_sock: PathBuf,
    pub config_file: PathBuf,
    /// The serial console's output (appended) and input (a FIFO).
    pub console: PathBuf,
    pub console_in: PathBuf,
    /// Firecracker's own output besides the console (appended).
    pub log: PathBuf,
}

/// Firecracker's argv for the developer VM, with an id no tenant can have
/// (tenant ids are at most 11 bytes), so nothing takes it for a tenant's.
pub fn dev_argv(d: &DevLaunch) -> (PathBuf, Vec<String>) {
    (
        d.firecracker.clone(),
        vec![
            "--id".into(),
            DEV_ID.into(),
            "--api-sock".into(),
            d.api_sock.display().to_string(),
            "--config-file".into(),
            d.config_file.display().to_string(),
        ],
    )
}

/// The developer VM's Firecracker id.
pub const DEV_ID: &str = "mvm-developer-vm";

/// Open files a VM may hold (the jailer's `no-file`).
pub const MAX_OPEN_FILES: u64 = 2048;

/// The jailer's argv for `l` (without the program).
pub fn jailer_args(l: &Launch) -> Vec<String> {
    let mut a = vec![
        "--id".into(),
        l.id.clone(),
        "--exec-file".into(),
        l.firecracker.display().to_string(),
        "--uid".into(),
        l.uid.to_string(),
        "--gid".into(),
        l.gid.to_string(),
        "--chroot-base-dir".into(),
        l.chroot_base.display().to_string(),
        "--cgroup-version".into(),
        "2".into(),
        "--parent-cgroup".into(),
        l.parent_cgroup.clone(),
        "--resource-limit".into(),
        format!("no-file={MAX_OPEN_FILES}"),
        "--resource-limit".into(),
        format!("fsize={}", l.max_file_bytes),
        "--".into(),
    ];
    a.extend(firecracker_args(l));
    a
}

/// The program and argv a launch execs: the jailer with `jailer_args`, or
/// without one Firecracker itself, passed `--id` (as the jailer would) so
/// the probe knows whose VM it is.
pub fn argv(l: &Launch) -> (PathBuf, Vec<String>) {
    match &l.jailer {
        Some(j) => (j.clone(), jailer_args(l)),
        None => {
            let mut a = vec!["--id".to_string(), l.id.clone()];
            a.extend(firecracker_args(l));
            (l.firecracker.clone(), a)
        }
    }
}

/// Firecracker's own argv. Never `--no-seccomp`.
pub fn firecracker_args(l: &Launch) -> Vec<String> {
    let mut a = vec![
        "--api-sock".into(),
        l.api_sock.clone(),
        "--config-file".into(),
        l.config_file.clone(),
    ];
    if let Some(f) = &l.seccomp_filter {
        a.extend(["--seccomp-filter".into(), f.clone()]);
    }
    a
}

/// All a tenant's Firecracker can write in its jail (the jail root is a
/// tmpfs of this size, charged to the tenant's memory): its own binary's
/// copy, its socket, pid file, logs and metrics fit many times over.
pub const JAIL_TMPFS_BYTES: u64 = 64 << 20;
/// And this many files and directories.
pub const JAIL_TMPFS_INODES: u64 = 4096;
