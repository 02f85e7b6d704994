//! `mvm agent reconcile` on a real kernel, as root, inside a throwaway mount
//! namespace: the full cycle (create → no-op → repair → keep → prune), crash
//! safety under SIGKILL at random points, and two reconciles at once. Skips
//! with a printed reason when not root (`tests/common/host.rs`); the
//! scripts are `tests/host/reconcile/`.

mod common;

use common::host::{Need, Script, require};

#[test]
fn full_cycle_on_a_real_host() {
    if require("full_cycle_on_a_real_host", &[Need::Root]) {
        Script::new("reconcile/cycle").checks(7);
    }
}

#[test]
fn crash_at_random_points_then_converge() {
    if !require("crash_at_random_points_then_converge", &[Need::Root]) {
        return;
    }
    let stdout = Script::new("reconcile/crash").run();
    assert_eq!(
        stdout.matches("converged after kill").count(),
        20,
        "{stdout}"
    );
    assert!(stdout.contains("ok: nothing leaked"), "{stdout}");
}

#[test]
fn two_reconciles_at_once() {
    if require("two_reconciles_at_once", &[Need::Root]) {
        Script::new("reconcile/lock").checks(2);
    }
}

/// The filesystem attacks of a hostile review: links, hard links, mounts,
/// FIFOs and a cut log planted under the state dir.
#[test]
fn planted_links_mounts_and_fifos_are_refused() {
    if require("planted_links_mounts_and_fifos_are_refused", &[Need::Root]) {
        Script::new("reconcile/planted_paths").checks(12);
    }
}

/// A tenant dir swapped with a link to a canary during 50 reconciles and
/// prunes: the canary is left byte for byte as it was.
#[test]
fn swapping_a_tenant_dir_for_a_link_never_reaches_the_target() {
    if require(
        "swapping_a_tenant_dir_for_a_link_never_reaches_the_target",
        &[Need::Root],
    ) {
        let stdout = Script::new("reconcile/race").run();
        assert!(stdout.contains("ok: the canary is untouched"), "{stdout}");
    }
}

/// 10 kills of `mvm tenant stop` at random points
/// (`tests/host/reconcile/override_crash.sh`): overrides.json is always the
/// old or the new one, and the command run again converges.
#[test]
fn killed_override_commands_never_tear_the_overrides_file() {
    if !require(
        "killed_override_commands_never_tear_the_overrides_file",
        &[Need::Root],
    ) {
        return;
    }
    let stdout = Script::new("reconcile/override_crash").net().checks(1);
    assert_eq!(
        stdout.matches("converged after kill").count(),
        10,
        "{stdout}"
    );
}

/// `mvm tenant secrets set` for real (`tests/host/reconcile/secrets.sh`):
/// staged on the tmpfs only as a whole ext4 image, every bad input refused
/// with the previous generation byte-identical, the guest's mount step on
/// loop devices, and 10 kills of `set` that the next one converges from.
#[test]
fn secrets_are_staged_on_tmpfs_and_mounted_read_only_by_the_guest() {
    if !require(
        "secrets_are_staged_on_tmpfs_and_mounted_read_only_by_the_guest",
        &[Need::Root],
    ) {
        return;
    }
    let stdout = Script::new("reconcile/secrets").net().checks(5);
    assert_eq!(
        stdout.matches("converged after kill").count(),
        10,
        "{stdout}"
    );
}
