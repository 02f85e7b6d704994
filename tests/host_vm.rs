//! Firecracker for real: the upstream jailer and Firecracker builds in
//! `../shared/firecracker/` (or `$MVM_TEST_FIRECRACKER_DIR`), launched by
//! `host::vm::vmm` as a tenant would be. Guests cannot boot on these
//! machines (nested virtualization), so the checks stop at a running
//! Firecracker answering its API: as the tenant's uid, in the tenant's
//! cgroup, chrooted, under a seccomp filter; and a stop that leaves no
//! process. Skips, saying why, without root, the binaries or a kernel.

use mvm::host::vm::vmm;
use mvm::security::jailer::Launch;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn firecracker_dir() -> PathBuf {
    std::env::var_os("MVM_TEST_FIRECRACKER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/firecracker"))
}

fn kernel() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-kernel/vmlinuz")
}

/// Why this machine cannot run the test, if it cannot.
pub fn missing() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (jailer, cgroups)".into());
    }
    let bin = firecracker_dir().join("bin");
    for b in ["firecracker", "jailer", "seccompiler-bin"] {
        if !bin.join(b).exists() {
            return Some(format!(
                "no {} (set MVM_TEST_FIRECRACKER_DIR)",
                bin.join(b).display()
            ));
        }
    }
    if !kernel().exists() {
        return Some(format!(
            "no kernel at {} (scripts/test.sh fetches one)",
            kernel().display()
        ));
    }
    if !Path::new("/dev/kvm").exists() {
        return Some("no /dev/kvm".into());
    }
    None
}

fn cgroup2() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mvm::host::probe::mountinfo::parse(&text)
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .expect("cgroup2 is mounted")
        .mount_point
}

#[test]
fn a_jailed_firecracker_runs_as_the_tenant_in_its_cgroup_and_stops() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
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
        log: Some(dir.path().join("vm.log")),
        cgroup_procs: None,
        max_file_bytes: 1 << 30,
    };
    // Whatever happens below, nothing of the VM outlives the test.
    let _guard = Cleanup(cg.clone());
    let started = std::time::Instant::now();
    let tree = mvm::host::fs::beneath::Tree::open(dir.path()).unwrap();
    let r = vmm::launch(&l, &tree, Duration::from_secs(10)).expect("launch");
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

/// Kills whatever runs in the test's cgroup and removes it and its parent.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// A tenant end to end with the real binaries (`tests/host/vm.sh`, in
/// fresh network and mount namespaces; Nix builds its artifact).
#[test]
fn reconcile_runs_a_tenant_end_to_end() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    if !Path::new("/usr/bin/nix").exists() || !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED: needs nix-bin and busybox-static");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let parent = format!("mvm-test-e2e-{}", std::process::id());
    let _guards = [
        Cleanup(cgroup2().join(&parent).join("va")),
        Cleanup(cgroup2().join(&parent).join("vb")),
    ];
    let out = std::process::Command::new("unshare")
        .args(["--net", "--mount", "--", "bash", "tests/host/vm.sh"])
        .arg(env!("CARGO_BIN_EXE_mvm"))
        .arg(work.path())
        .arg(&parent)
        .arg(firecracker_dir())
        .arg(kernel())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok: ").count(), 6, "{stdout}");
}

/// 20 kills of mvm at random points of reconciles that start and stop
/// VMs (`tests/host/vmcrash.sh`): each followed by a converging run with
/// exactly one Firecracker per running tenant.
#[test]
fn killed_reconciles_never_leave_two_vms_or_none() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    if !Path::new("/usr/bin/nix").exists() || !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED: needs nix-bin and busybox-static");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let parent = format!("mvm-test-vmcrash-{}", std::process::id());
    let _guards: Vec<Cleanup> = ["c0", "c1", "c2"]
        .iter()
        .map(|t| Cleanup(cgroup2().join(&parent).join(t)))
        .collect();
    let out = std::process::Command::new("unshare")
        .args(["--net", "--mount", "--", "bash", "tests/host/vmcrash.sh"])
        .arg(env!("CARGO_BIN_EXE_mvm"))
        .arg(work.path())
        .arg(&parent)
        .arg(firecracker_dir())
        .arg(kernel())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.matches("converged after kill").count(),
        20,
        "{stdout}"
    );
    assert!(stdout.contains("ok: nothing leaked"), "{stdout}");
}
