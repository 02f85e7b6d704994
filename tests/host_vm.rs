//! Firecracker for real: the upstream jailer and Firecracker builds in
//! `../shared/firecracker/` (or `$MVM_TEST_FIRECRACKER_DIR`), launched by
//! `host::vm::vmm` as a tenant would be. Guests cannot boot on these
//! machines (nested virtualization), so the checks stop at a running
//! Firecracker answering its API: as the tenant's uid, in the tenant's
//! cgroup, chrooted, under a seccomp filter; and a stop that leaves no
//! process. Skips, saying why, without root, the binaries or a kernel.

use mvm::host::vm::vmm;
use mvm::security::jailer::Launch;
use std::time::Duration;

mod common;

use common::host::{CgroupCleanup, Need, Script, cgroup2, firecracker_dir, kernel, require};

/// What the Firecracker tests need.
const FIRECRACKER: &[Need] = &[Need::Root, Need::Firecracker, Need::Kernel, Need::Kvm];

#[test]
fn a_jailed_firecracker_runs_as_the_tenant_in_its_cgroup_and_stops() {
    if !require(
        "a_jailed_firecracker_runs_as_the_tenant_in_its_cgroup_and_stops",
        FIRECRACKER,
    ) {
        return;
    }
    let fc = firecracker_dir().join("bin");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("jail");
    let root = base.join("firecracker/vmt/root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(kernel(), root.join("vmlinux")).unwrap();
    std::fs::write(
        root.join("vm.json"),
        r#"{"boot-source": {"kernel_image_path": "/vmlinux", "boot_args": "reboot=k panic=1 8250.nr_uarts=0"},
            "drives": [], "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "smt": false}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(fc.join("seccompiler-bin"))
        .args(["--target-arch", "x86_64", "--input-file"])
        .arg(firecracker_dir().join("seccomp/x86_64-glibc-baseline.json"))
        .arg("--output-file")
        .arg(root.join("filter.bpf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parent = format!("mvm-test-vm-{}", std::process::id());
    let cg = cgroup2().join(&parent).join("vmt");
    std::fs::create_dir_all(&cg).unwrap();
    let uid = 100_777;
    let l = Launch {
        jailer: Some(fc.join("jailer")),
        firecracker: fc.join("firecracker"),
        id: "vmt".into(),
        uid,
        gid: uid,
        chroot_base: base.clone(),
        parent_cgroup: format!("{parent}/vmt"),
        api_sock: "/run/firecracker.socket".into(),
        config_file: "/vm.json".into(),
        seccomp_filter: Some("/filter.bpf".into()),
        api_sock_host: root.join("run/firecracker.socket"),
        logs: None,
        cgroup_procs: None,
        max_file_bytes: 1 << 30,
    };
    // Whatever happens below, nothing of the VM outlives the test.
    let _guard = CgroupCleanup(cg.clone());
    let started = std::time::Instant::now();
    let tree = mvm::host::fs::beneath::Tree::open(dir.path()).unwrap();
    let r = vmm::launch(
        &l,
        &tree,
        Duration::from_secs(10),
        std::path::Path::new(env!("CARGO_BIN_EXE_mvm")),
    )
    .expect("launch")
    .0;
    eprintln!(
        "jailer + Firecracker to a answering API: {:?}",
        started.elapsed()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", r.pid)).unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", r.pid)).unwrap();
    let peer = vmm::Peer { pid: r.pid, uid };
    let api = vmm::api_get(&tree, &l.api_sock_host, peer, Duration::from_secs(1));
    assert!(status.contains(&format!("Uid:\t{uid}")), "{status}");
    assert!(status.lines().any(|l| l == "Seccomp:\t2"), "{status}");
    assert!(cgroup.contains(&format!("0::/{parent}/vmt")), "{cgroup}");
    let api = api.unwrap();
    assert_eq!(api["id"], "vmt", "{api}");
    assert!(vmm::is_same(r, uid));
    assert!(!vmm::is_same(r, uid + 1), "a different uid is not the VM");
    // A stop aimed at another cgroup touches nothing.
    vmm::stop(
        r,
        uid,
        "elsewhere",
        &tree,
        &l.api_sock_host,
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(
        vmm::is_same(r, uid),
        "a VM outside the named cgroup was stopped"
    );
    // The attack of a hostile review: the tenant's Firecracker owns its
    // jail, so it swaps `run/` for a link to a directory where another
    // VM's socket is (here a listener standing in for it, which records
    // what reaches it). mvm asks nothing of a socket its VM does not
    // answer: the other end gets no byte, and this VM is still stopped.
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let listener =
        std::os::unix::net::UnixListener::bind(victim.join("firecracker.socket")).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::rename(root.join("run"), root.join("run.real")).unwrap();
    std::os::unix::fs::symlink(&victim, root.join("run")).unwrap();
    let linked = vmm::api_get(&tree, &l.api_sock_host, peer, Duration::from_secs(1));
    assert!(linked.is_err(), "a linked run/ was followed: {linked:?}");
    // The socket itself a link: connected, then refused by its peer.
    std::fs::remove_file(root.join("run")).unwrap();
    std::fs::create_dir(root.join("run")).unwrap();
    std::os::unix::fs::symlink(
        victim.join("firecracker.socket"),
        root.join("run/firecracker.socket"),
    )
    .unwrap();
    let e = vmm::api_get(&tree, &l.api_sock_host, peer, Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
    // A real socket there, swapped in after the check would pass: who
    // answers is not the VM, so nothing is sent.
    std::fs::remove_file(root.join("run/firecracker.socket")).unwrap();
    let impostor =
        std::os::unix::net::UnixListener::bind(root.join("run/firecracker.socket")).unwrap();
    impostor.set_nonblocking(true).unwrap();
    let e = vmm::api_get(&tree, &l.api_sock_host, peer, Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("not the VM's process"), "{e}");
    let (mut c, _) = impostor.accept().unwrap();
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(std::io::Read::read(&mut c, &mut buf), Ok(0) | Err(_)),
        "the impostor was sent a request"
    );
    vmm::stop(
        r,
        uid,
        &l.parent_cgroup,
        &tree,
        &l.api_sock_host,
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(!vmm::is_same(r, uid), "the VM still runs");
    let mut got = Vec::new();
    while let Ok((mut c, _)) = listener.accept() {
        use std::io::Read;
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(n) = c.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        got.is_empty(),
        "another VM's socket was sent: {}",
        String::from_utf8_lossy(&got)
    );
}

/// A tenant end to end with the real binaries (`tests/host/vm/lifecycle.sh`,
/// in fresh network and mount namespaces; Nix builds its artifact).
#[test]
fn reconcile_runs_a_tenant_end_to_end() {
    let needs = [FIRECRACKER, &[Need::Nix]].concat();
    if require("reconcile_runs_a_tenant_end_to_end", &needs) {
        Script::new("vm/lifecycle")
            .net()
            .arg(firecracker_dir())
            .arg(kernel())
            .checks(6);
    }
}

/// 20 kills of mvm at random points of reconciles that start and stop
/// VMs (`tests/host/vm/crash.sh`): each followed by a converging run with
/// exactly one Firecracker per running tenant.
#[test]
fn killed_reconciles_never_leave_two_vms_or_none() {
    let needs = [FIRECRACKER, &[Need::Nix]].concat();
    if !require("killed_reconciles_never_leave_two_vms_or_none", &needs) {
        return;
    }
    let stdout = Script::new("vm/crash")
        .net()
        .arg(firecracker_dir())
        .arg(kernel())
        .run();
    assert_eq!(
        stdout.matches("converged after kill").count(),
        20,
        "{stdout}"
    );
    assert!(stdout.contains("ok: nothing leaked"), "{stdout}");
}

/// The operator's overrides end to end (`tests/host/vm/overrides.sh`): pin,
/// rollback, unpin, stop, release, create, destroy and a conflict, with the
/// real jailer and two revisions of the offline flake.
#[test]
fn overrides_hold_against_the_control_plane_end_to_end() {
    let needs = [FIRECRACKER, &[Need::Nix]].concat();
    if require(
        "overrides_hold_against_the_control_plane_end_to_end",
        &needs,
    ) {
        Script::new("vm/overrides")
            .net()
            .arg(firecracker_dir())
            .arg(kernel())
            .checks(5);
    }
}

/// Tenant secrets with the real jailer and Firecracker
/// (`tests/host/vm/secrets.sh`): set leaves VMs alone, rotate replaces
/// exactly that VM onto the new image in its jail and removes the old
/// generation, nothing staged is no change, 10 kills of rotate converge,
/// and a canary value is found in no output, file or process sample.
#[test]
fn secrets_rotate_onto_the_jail_and_never_leak() {
    let needs = [FIRECRACKER, &[Need::Nix]].concat();
    if !require("secrets_rotate_onto_the_jail_and_never_leak", &needs) {
        return;
    }
    // A pid namespace too: its tenant's metadata service dies with it.
    let stdout = Script::new("vm/secrets")
        .net()
        .pid()
        .arg(firecracker_dir())
        .arg(kernel())
        .checks(5);
    assert_eq!(
        stdout.matches("converged after kill").count(),
        10,
        "{stdout}"
    );
}

/// Dev mode beside two running tenants (`tests/host/vm/dev.sh`, fresh
/// network, mount and pid namespaces): a developer VM from the fixture
/// flake under the real Firecracker while the node lock is held, and the
/// tenants' state, taps, rules and audit logs byte-identical afterwards.
#[test]
fn dev_mode_never_touches_a_tenant() {
    let needs = [FIRECRACKER, &[Need::Nix]].concat();
    if require("dev_mode_never_touches_a_tenant", &needs) {
        Script::new("vm/dev")
            .net()
            .pid()
            .arg(firecracker_dir())
            .arg(kernel())
            .checks(5);
    }
}

/// A VM's logs and metrics with the real jailer and Firecracker
/// (`tests/host/vm/logs.sh`, fresh network, mount and pid namespaces): the
/// FIFOs and their pump, tenant metrics after FlushMetrics, --follow and
/// escaping, the bound under a flood written as the tenant, --previous
/// across stop, start and replacement, planted links refused, node metrics
/// and agent run --metrics-listen through Prometheus' parser, prune.
#[test]
fn vm_logs_and_metrics_outlive_the_jail() {
    let needs = [FIRECRACKER, &[Need::Nix, Need::PrometheusClient]].concat();
    if require("vm_logs_and_metrics_outlive_the_jail", &needs) {
        Script::new("vm/logs")
            .net()
            .pid()
            .arg(firecracker_dir())
            .arg(kernel())
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .checks(8);
    }
}
