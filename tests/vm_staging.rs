//! The VM, jail and artifact providers on the recording host, so their
//! logic is tested on a machine without KVM: what a launch stages in the
//! jail and in what order, the exact argv it execs (jailed and not), that
//! the tenant's cgroup is emptied first, and that a build happens once.

mod common;

use common::operator::{Approve, capable_node};
use mvm::agent::Node;
use mvm::agent::reconcile::{Goal, Outcome, Request, reconcile};
use mvm::host::recording::{Call, RecordingHost};
use mvm::host::{Host, JailStage};
use mvm::plan::PlanOptions;
use mvm::spec::{self, NodeConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const STATE: &str = "/srv/mvm";

/// One running tenant `acme` (strict seccomp, a data volume) reconciled
/// on a host with or without the jailer; its calls.
fn launch_acme(jailer: bool) -> (Vec<Call>, NodeConfig) {
    let text = format!("state_dir = \"{STATE}\"\n");
    let config = spec::parse_node(Path::new("node.toml"), &text).unwrap();
    let rec = Arc::new(RecordingHost::new().with_base(capable_node(jailer)));
    let node = Node::new(config.clone(), Host::recording(rec.clone()));
    let desired = spec::parse_desired(
        Path::new("desired.json"),
        &serde_json::json!({"tenants": [{"tenant_id": "acme",
            "flake_ref": "github:o/a?rev=0123456789abcdef0123456789abcdef01234567",
            "profile": "minimal", "vcpus": 2, "mem_mib": 512, "state": "running",
            "seccomp": "strict", "data_mib": 64}]})
        .to_string(),
        &config,
    )
    .unwrap();
    let run = || {
        let req = Request {
            goal: Goal::Desired {
                desired: desired.clone(),
                options: PlanOptions::default(),
            },
            parallelism: Some(4),
            lock_timeout: Duration::ZERO,
            command_line: "mvm agent reconcile",
            operator: "uid 0",
        };
        let stop = Arc::new(AtomicBool::new(false));
        reconcile(&node, req, &Approve::default(), stop, false).unwrap()
    };
    assert!(matches!(run(), Outcome::Applied(r) if r.success()));
    let calls = rec.calls();
    // A second reconcile builds nothing and launches nothing.
    assert!(matches!(run(), Outcome::NoChanges));
    assert_eq!(
        rec.calls().len(),
        calls.len() + 2,
        "only the lock and the probe"
    );
    (calls, config)
}

fn index(calls: &[Call], what: &str, f: impl Fn(&Call) -> bool) -> usize {
    calls
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("no {what} in {calls:#?}"))
}

#[test]
fn a_jailed_launch_stages_the_jail_then_execs_the_jailer_as_the_tenant() {
    let (calls, config) = launch_acme(true);
    let build = index(&calls, "build", |c| matches!(c, Call::NixBuild { .. }));
    let stage = index(&calls, "stage", |c| matches!(c, Call::StageJail(_)));
    let kill = index(
        &calls,
        "cgroup kill",
        |c| matches!(c, Call::CgroupKill(p) if p.ends_with("mvm/acme")),
    );
    let launch = index(&calls, "launch", |c| matches!(c, Call::Launch { .. }));
    let logs = index(
        &calls,
        "logs prepared",
        |c| matches!(c, Call::PrepareLogs { dir } if dir.ends_with("tenants/acme/logs")),
    );
    assert!(
        build < logs && logs < stage && stage < kill && kill < launch,
        "{build} {logs} {stage} {kill} {launch}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::NixBuild { .. }))
            .count(),
        1
    );

    let Call::StageJail(JailStage {
        root,
        size,
        inodes,
        binds,
        files,
        dirs,
    }) = &calls[stage]
    else {
        unreachable!()
    };
    let jail = Path::new(STATE).join("tenants/acme/jail/firecracker/acme/root");
    assert_eq!(root, &jail);
    assert_eq!((*size, *inodes), (64 << 20, 4096));
    assert!(dirs.is_empty(), "the jailer makes run/ itself");
    let bound: Vec<(&str, bool)> = binds.iter().map(|(n, _, rw)| (n.as_str(), *rw)).collect();
    assert_eq!(
        bound,
        [
            ("vmlinux", false),
            ("rootfs.ext4", false),
            ("secrets.img", false),
            ("fc.log", true),
            ("fc.metrics", true),
            ("data.ext4", true),
            ("filter.bpf", false),
        ],
        "kernel, rootfs, secrets and filter read-only; writable only the data volume and the FIFOs its log pump reads"
    );
    let source = |n: &str| {
        binds
            .iter()
            .find(|b| b.0 == n)
            .map(|b| b.1.clone())
            .unwrap()
    };
    assert!(source("vmlinux").starts_with("/nix/store/"));
    assert_eq!(
        source("fc.log"),
        Path::new(STATE).join("tenants/acme/logs/fc.log.fifo")
    );
    assert_eq!(
        source("secrets.img"),
        Path::new(STATE).join("tenants/acme/secrets/secrets.img")
    );
    assert_eq!(
        source("data.ext4"),
        Path::new(STATE).join("tenants/acme/data.ext4")
    );
    assert_eq!(
        source("filter.bpf"),
        config.firecracker.strict_seccomp_filter
    );
    let (name, text, mode) = &files[0];
    assert_eq!((name.as_str(), *mode), ("vm.json", 0o644));
    let cfg: serde_json::Value = serde_json::from_slice(text).unwrap();
    assert_eq!(cfg["machine-config"]["vcpu_count"], 2);
    assert_eq!(cfg["boot-source"]["kernel_image_path"], "/vmlinux");

    let Call::Launch {
        tenant,
        program,
        args,
    } = &calls[launch]
    else {
        unreachable!()
    };
    assert_eq!(tenant, "acme");
    assert_eq!(program, &config.firecracker.jailer);
    let uid = args[args.iter().position(|a| a == "--uid").unwrap() + 1].clone();
    let want: Vec<String> = [
        "--id",
        "acme",
        "--exec-file",
        &config.firecracker.binary.display().to_string(),
        "--uid",
        &uid,
        "--gid",
        &uid,
        "--chroot-base-dir",
        &format!("{STATE}/tenants/acme/jail"),
        "--cgroup-version",
        "2",
        "--parent-cgroup",
        "mvm/acme",
        "--resource-limit",
        "no-file=2048",
        "--resource-limit",
        "fsize=1073741824",
        "--",
        "--api-sock",
        "/run/firecracker.socket",
        "--config-file",
        "/vm.json",
        "--seccomp-filter",
        "/filter.bpf",
    ]
    .map(String::from)
    .into();
    assert_eq!(args, &want);
    assert!(
        uid.parse::<u32>().unwrap() >= config.tenants.uid_min,
        "runs as the tenant, not root"
    );
}

#[test]
fn without_a_jailer_firecracker_runs_from_the_jail_root_by_host_paths() {
    let (calls, config) = launch_acme(false);
    let stage = index(&calls, "stage", |c| matches!(c, Call::StageJail(_)));
    let Call::StageJail(s) = &calls[stage] else {
        unreachable!()
    };
    assert_eq!(s.dirs, ["run"], "no jailer makes the socket's directory");
    let launch = index(&calls, "launch", |c| matches!(c, Call::Launch { .. }));
    let Call::Launch { program, args, .. } = &calls[launch] else {
        unreachable!()
    };
    assert_eq!(program, &config.firecracker.binary);
    let root = PathBuf::from(STATE).join("tenants/acme/jail/firecracker/acme/root");
    let want: Vec<String> = vec![
        "--id".into(),
        "acme".into(),
        "--api-sock".into(),
        root.join("run/firecracker.socket").display().to_string(),
        "--config-file".into(),
        root.join("vm.json").display().to_string(),
        "--seccomp-filter".into(),
        root.join("filter.bpf").display().to_string(),
    ];
    assert_eq!(args, &want);
}
