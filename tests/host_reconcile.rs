//! `mvm agent reconcile` on a real kernel, as root, inside a throwaway mount
//! namespace: the full cycle (create → no-op → repair → keep → prune), crash
//! safety under SIGKILL at random points, and two reconciles at once. Skips
//! with a printed reason when not root.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn cgroup2_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mvm::providers::mountinfo::parse(&text)
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .expect("cgroup2 is mounted")
        .mount_point
}

/// Removes the test's cgroup parent (and any tenant cgroup a failed run
/// left) even if the test fails.
struct CgroupParent(PathBuf);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::write(e.path().join("cgroup.kill"), "1");
                std::thread::sleep(std::time::Duration::from_millis(50));
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn script(name: &str, parent: &str) -> (tempfile::TempDir, CgroupParent, Command) {
    let work = tempfile::tempdir().unwrap();
    let guard = CgroupParent(cgroup2_mount().join(parent));
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--", "bash"])
        .arg(format!("tests/host/{name}"))
        .arg(env!("CARGO_BIN_EXE_mvm"))
        .arg(work.path())
        .arg(parent)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    (work, guard, cmd)
}

#[test]
fn full_cycle_on_a_real_host() {
    if !is_root() {
        eprintln!("SKIPPED full_cycle_on_a_real_host: needs root for tmpfs mounts and cgroups");
        return;
    }
    let parent = format!("mvm-test-cycle-{}", std::process::id());
    let (_work, _guard, mut cmd) = script("reconcile.sh", &parent);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok: ").count(), 7, "{stdout}");
}

#[test]
fn crash_at_random_points_then_converge() {
    if !is_root() {
        eprintln!(
            "SKIPPED crash_at_random_points_then_converge: needs root for tmpfs mounts and cgroups"
        );
        return;
    }
    let parent = format!("mvm-test-crash-{}", std::process::id());
    let (_work, _guard, mut cmd) = script("crash.sh", &parent);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let converged = stdout.matches("converged after kill").count();
    assert_eq!(converged, 20, "{stdout}");
    assert!(stdout.contains("ok: nothing leaked"), "{stdout}");
}

#[test]
fn two_reconciles_at_once() {
    if !is_root() {
        eprintln!("SKIPPED two_reconciles_at_once: needs root for tmpfs mounts and cgroups");
        return;
    }
    let parent = format!("mvm-test-lock-{}", std::process::id());
    let (_work, _guard, mut cmd) = script("lock.sh", &parent);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok: ").count(), 2, "{stdout}");
}
