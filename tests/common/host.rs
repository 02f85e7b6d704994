//! The host tests' harness, shared by every `tests/host_*.rs` driver:
//!
//! - `require(test, needs)`: the prerequisites a test needs (root, the
//!   Firecracker builds, a kernel, /dev/kvm, Nix, busybox…). When one is
//!   missing the test says `SKIPPED <test>: <why>` and returns without
//!   asserting anything — and `scripts/test.sh` filters it out visibly,
//!   counting it as skipped. Under `MVM_HOST_TESTS=required` (what
//!   `.ci/run` sets) a missing prerequisite fails the test instead: CI can
//!   never pass vacuously.
//! - `Script::new("reconcile/cycle")` runs `tests/host/reconcile/cycle.sh`
//!   in fresh namespaces with the mvm binary, a work dir and a test-unique
//!   cgroup parent (removed afterwards, with anything a failed run left in
//!   it), fails with everything it printed if it fails, and checks how many
//!   `ok:` lines it printed.

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A prerequisite of a host test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root: namespaces, bridges, taps, nft, tmpfs mounts, cgroups.
    Root,
    /// nix-bin, its build users (group nixbld) and busybox-static (the
    /// fixture flake's tools).
    Nix,
    /// The real Firecracker, jailer and seccompiler-bin builds.
    Firecracker,
    /// A kernel image Firecracker can load (`scripts/test.sh` fetches one).
    Kernel,
    /// /dev/kvm.
    Kvm,
    /// etcd (Debian's etcd-server), started by the test itself.
    Etcd,
    /// Debian's cloud-init package unpacked at `target/cloud-init`
    /// (`scripts/test.sh` fetches it) and the Debian python3 modules it
    /// imports.
    CloudInit,
    /// Debian's python3 with the Prometheus client (its text-format parser).
    PrometheusClient,
}

/// Where `scripts/test.sh` unpacks Debian's cloud-init package.
pub fn cloud_init() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cloud-init/usr/lib/python3/dist-packages")
}

/// The Firecracker builds: `$MVM_TEST_FIRECRACKER_DIR`, else
/// `../shared/firecracker` beside the repository.
pub fn firecracker_dir() -> PathBuf {
    std::env::var_os("MVM_TEST_FIRECRACKER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/firecracker"))
}

/// The kernel image for the Firecracker tests.
pub fn kernel() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-kernel/vmlinuz")
}

impl Need {
    /// Why it is not met here, if it is not.
    pub fn missing(self) -> Option<String> {
        match self {
            Need::Root => (!nix::unistd::Uid::effective().is_root())
                .then(|| "needs root (namespaces, nft, tmpfs mounts, cgroups)".to_string()),
            Need::Nix => {
                for (what, path) in [
                    ("nix-bin", "/usr/bin/nix"),
                    ("busybox-static", "/bin/busybox"),
                ] {
                    if !Path::new(path).exists() {
                        return Some(format!("{what} is not installed ({path})"));
                    }
                }
                let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
                (!groups.lines().any(|l| l.starts_with("nixbld:")))
                    .then(|| "the nixbld group (Nix build users) does not exist".to_string())
            }
            Need::Firecracker => {
                let bin = firecracker_dir().join("bin");
                ["firecracker", "jailer", "seccompiler-bin"]
                    .iter()
                    .map(|b| bin.join(b))
                    .find(|p| !p.exists())
                    .map(|p| format!("no {} (set MVM_TEST_FIRECRACKER_DIR)", p.display()))
            }
            Need::Kernel => (!kernel().exists()).then(|| {
                format!(
                    "no kernel at {} (scripts/test.sh fetches one)",
                    kernel().display()
                )
            }),
            Need::Kvm => (!Path::new("/dev/kvm").exists()).then(|| "no /dev/kvm".to_string()),
            Need::Etcd => (!Path::new("/usr/bin/etcd").exists())
                .then(|| "etcd is not installed (apt install etcd-server)".to_string()),
            Need::CloudInit => {
                if !cloud_init()
                    .join("cloudinit/sources/DataSourceEc2.py")
                    .exists()
                {
                    return Some(format!(
                        "no cloud-init at {} (scripts/test.sh unpacks Debian's package)",
                        cloud_init().display()
                    ));
                }
                let imports = "import requests, yaml, jinja2, jsonschema, jsonpatch, configobj, netifaces, oauthlib";
                let ok = Command::new("/usr/bin/python3")
                    .args(["-c", imports])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                (!ok).then(|| "Debian's python3 lacks cloud-init's modules (scripts/test.sh installs them)".to_string())
            }
            Need::PrometheusClient => {
                let ok = Command::new("/usr/bin/python3")
                    .args(["-c", "import prometheus_client.parser"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                (!ok).then(|| "Debian's python3 lacks prometheus_client (apt install python3-prometheus-client; scripts/test.sh does)".to_string())
            }
        }
    }
}

/// Whether `MVM_HOST_TESTS=required`: a missing prerequisite fails.
pub fn required() -> bool {
    std::env::var("MVM_HOST_TESTS").is_ok_and(|v| v == "required")
}

/// Whether everything `test` needs is here. If not: under
/// `MVM_HOST_TESTS=required` it fails, naming what is missing; otherwise
/// it says `SKIPPED <test>: <why>` and the caller returns.
pub fn require(test: &str, needs: &[Need]) -> bool {
    let missing: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    assert!(!required(), "{test}: MVM_HOST_TESTS=required, but {why}");
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// The cgroup2 mount of this machine.
pub fn cgroup2() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mvm::host::probe::mountinfo::parse(&text)
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .expect("cgroup2 is mounted")
        .mount_point
}

/// Removes a cgroup (its children first, everything in them killed) when
/// dropped, even if the test failed.
pub struct CgroupCleanup(pub PathBuf);

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten().filter(|e| e.path().is_dir()) {
                    remove(&e.path());
                }
            }
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        remove(&self.0);
    }
}

/// One script under `tests/host/`, run in fresh namespaces.
pub struct Script {
    name: String,
    namespaces: Vec<&'static str>,
    args: Vec<OsString>,
}

impl Script {
    /// `tests/host/<name>.sh`, in a fresh mount namespace.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            namespaces: vec!["--mount"],
            args: Vec::new(),
        }
    }

    /// Also a fresh network namespace.
    pub fn net(mut self) -> Self {
        self.namespaces.push("--net");
        self
    }

    /// Also a fresh pid namespace: whatever the script leaves running dies
    /// with it.
    pub fn pid(mut self) -> Self {
        self.namespaces
            .extend(["--pid", "--fork", "--kill-child", "--mount-proc"]);
        self
    }

    /// An argument after the standard ones (mvm, work dir, cgroup parent).
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Runs it as `bash <script> <mvm> <work dir> <cgroup parent> <args…>`;
    /// returns its stdout, failing with all it printed if it failed.
    pub fn run(self) -> String {
        let work = tempfile::tempdir().unwrap();
        let parent = format!(
            "mvm-test-{}-{}",
            self.name.replace('/', "-"),
            std::process::id()
        );
        let _cleanup = CgroupCleanup(cgroup2().join(&parent));
        let script = Path::new("tests/host").join(format!("{}.sh", self.name));
        let out = Command::new("unshare")
            .args(&self.namespaces)
            .arg("--")
            .arg("bash")
            .arg(&script)
            .arg(env!("CARGO_BIN_EXE_mvm"))
            .arg(work.path())
            .arg(&parent)
            .args(&self.args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Archived audit logs are append-only: lift that so the work dir
        // can be removed.
        let _ = Command::new("chattr")
            .args(["-R", "-a"])
            .arg(work.path())
            .stderr(Stdio::null())
            .status();
        assert!(
            out.status.success(),
            "{} failed:\n{stdout}\n{stderr}",
            script.display()
        );
        stdout
    }

    /// Runs it and checks it printed exactly `checks` `ok:` lines (one per
    /// property it verified); returns its stdout.
    pub fn checks(self, checks: usize) -> String {
        let name = self.name.clone();
        let stdout = self.run();
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
            checks,
            "{name}: not every check ran:\n{stdout}"
        );
        stdout
    }
}
