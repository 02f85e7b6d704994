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
    mvm::host::probe::mountinfo::parse(&text)
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

/// Runs `tests/host/<name>` in a fresh mount namespace with a work dir and
/// a test-unique cgroup parent (both removed afterwards) and returns its
/// stdout, failing with everything it printed if it failed. `None` when not
/// root, after saying why the test is skipped.
fn run_script(test: &str, name: &str) -> Option<String> {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root for tmpfs mounts and cgroups");
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let parent = format!("mvm-test-{test}-{}", std::process::id());
    let _guard = CgroupParent(cgroup2_mount().join(&parent));
    let out = Command::new("unshare")
        .args(["--mount", "--", "bash"])
        .arg(format!("tests/host/{name}"))
        .arg(env!("CARGO_BIN_EXE_mvm"))
        .arg(work.path())
        .arg(&parent)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    Some(stdout)
}

#[test]
fn full_cycle_on_a_real_host() {
    let Some(stdout) = run_script("cycle", "reconcile.sh") else {
        return;
    };
    assert_eq!(stdout.matches("ok: ").count(), 7, "{stdout}");
}

#[test]
fn crash_at_random_points_then_converge() {
    let Some(stdout) = run_script("crash", "crash.sh") else {
        return;
    };
    assert_eq!(
        stdout.matches("converged after kill").count(),
        20,
        "{stdout}"
    );
    assert!(stdout.contains("ok: nothing leaked"), "{stdout}");
}

#[test]
fn two_reconciles_at_once() {
    let Some(stdout) = run_script("lock", "lock.sh") else {
        return;
    };
    assert_eq!(stdout.matches("ok: ").count(), 2, "{stdout}");
}

/// The filesystem attacks of a hostile review: links, hard links, mounts,
/// FIFOs and a cut log planted under the state dir.
#[test]
fn planted_links_mounts_and_fifos_are_refused() {
    let Some(stdout) = run_script("hostile", "hostile.sh") else {
        return;
    };
    assert_eq!(stdout.matches("ok: ").count(), 12, "{stdout}");
}

/// A tenant dir swapped with a link to a canary during 50 reconciles and
/// prunes: the canary is left byte for byte as it was.
#[test]
fn swapping_a_tenant_dir_for_a_link_never_reaches_the_target() {
    let Some(stdout) = run_script("race", "race.sh") else {
        return;
    };
    assert!(stdout.contains("ok: the canary is untouched"), "{stdout}");
}
