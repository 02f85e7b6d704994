//! The executor against a recording host: ordering, the concurrency bound,
//! failures skipping dependents, replace ordering, interrupts, and a no-op
//! reconcile making no host calls at all, blocked changes never attempted,
//! and audit records written for what ran.

mod common;

use common::operator::Quiet;
use mvm::apply::progress::Progress;
use mvm::apply::{Phase, Report, StepOutcome, StepResult, execute};
use mvm::host::Host;
use mvm::host::recording::{Call, RecordingHost};
use mvm::observed::Observed;
use mvm::plan::{Action, Plan, PlanOptions, plan, simulate};
use mvm::resources::ResourceAddr;
use mvm::spec::{self, DesiredState, NodeConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Stops the run once `after` steps have finished.
struct StopAfter(usize, Arc<AtomicBool>, std::sync::atomic::AtomicUsize);
impl Progress for StopAfter {
    fn started(&self, _: &ResourceAddr, _: Phase, _: Action) {}
    fn finished(&self, _: &StepResult) {
        if self.2.fetch_add(1, Ordering::SeqCst) + 1 >= self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
    }
}

fn node(state: &Path) -> NodeConfig {
    let text = format!(
        "state_dir = \"{}\"\n[cgroup]\nallow_missing_controllers = true\n",
        state.display()
    );
    spec::parse_node(Path::new("node.toml"), &text).unwrap()
}

fn desired(n: usize, node: &NodeConfig) -> DesiredState {
    let tenants: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"tenant_id": format!("t{i}"), "flake_ref": "github:o/a", "profile": "minimal",
            "vcpus": 1, "mem_mib": 256, "state": "stopped"}))
        .collect();
    spec::parse_desired(
        Path::new("d.json"),
        &serde_json::json!({ "tenants": tenants }).to_string(),
        node,
    )
    .unwrap()
}

fn host_observed() -> Observed {
    let mut o = Observed::empty();
    o.binaries.firecracker = true;
    o.binaries.jailer = true;
    o.cgroup = Some(mvm::observed::CgroupMount {
        mount: "/sys/fs/cgroup".into(),
        controllers: ["cpu", "memory", "pids"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    });
    o
}

/// The tenant-tree kinds only: these tests count and order dirs, cgroup
/// and secrets steps, and a whole-tenant plan would add a build, a tap and
/// nft steps to every count.
fn tree_kinds() -> PlanOptions {
    let targets = ["tenant.*.dirs", "tenant.*.cgroup", "tenant.*.secrets"]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    PlanOptions {
        targets,
        ..Default::default()
    }
}

fn run(
    p: &Plan,
    host: Arc<RecordingHost>,
    parallelism: usize,
    progress: Arc<dyn Progress>,
    stop: Arc<AtomicBool>,
) -> Report {
    let ctx = Arc::new(mvm::apply::ctx_for(
        p,
        Host::recording(host),
        "node".into(),
        "mvm test".into(),
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(execute(p, ctx, parallelism, progress, stop))
}

fn position(calls: &[Call], what: &str, pred: impl Fn(&Call) -> bool) -> usize {
    calls
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no {what} call in {calls:#?}"))
}

fn under(c: &Call, part: &str) -> bool {
    c.target().contains(part)
}

#[test]
fn creates_walk_dependencies_forwards_and_failures_skip_dependents() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    let p = plan(
        &desired(2, &node),
        &node,
        &host_observed(),
        PlanOptions::default(),
    )
    .unwrap();
    let host = Arc::new(
        RecordingHost::new()
            .failing(|c| matches!(c, Call::EnsureDir { path, .. } if path.ends_with("tenants/t1"))),
    );
    let r = run(
        &p,
        host.clone(),
        4,
        Arc::new(Quiet),
        Arc::new(AtomicBool::new(false)),
    );
    let calls = host.calls();
    // t0: the tree exists before its tmpfs is mounted.
    let t0_mount = position(&calls, "mount", |c| {
        matches!(c, Call::MountTmpfs { .. }) && under(c, "/t0/")
    });
    let t0_tree = position(
        &calls,
        "ensure_dir",
        |c| matches!(c, Call::EnsureDir { path, mode: 0o700, .. } if path.ends_with("tenants/t0")),
    );
    assert!(t0_tree < t0_mount, "{calls:#?}");
    let outcome = |a: &str, phase: Phase| {
        r.steps
            .iter()
            .find(|s| s.address.to_string() == a && s.phase == phase)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(outcome("tenant.t0.dirs", Phase::Apply), StepOutcome::Done);
    assert_eq!(
        outcome("tenant.t0.secrets", Phase::Apply),
        StepOutcome::Done
    );
    assert_eq!(outcome("tenant.t0.cgroup", Phase::Apply), StepOutcome::Done);
    // t1's tree fails.
    assert!(matches!(
        outcome("tenant.t1.dirs", Phase::Apply),
        StepOutcome::Failed(_)
    ));
    // Everything of t1 is built on its tree and is skipped, naming the
    // cause; t0, unrelated, completed above.
    let dirs: ResourceAddr = "tenant.t1.dirs".parse().unwrap();
    assert_eq!(
        outcome("tenant.t1.secrets", Phase::Apply),
        StepOutcome::Skipped {
            because: dirs.clone()
        }
    );
    assert_eq!(
        outcome("tenant.t1.cgroup", Phase::Apply),
        StepOutcome::Skipped { because: dirs }
    );
    // The network is built for t0 (its tap on the bridge, its elements
    // after the tables), never for t1, whose tree failed.
    assert_eq!(outcome("node.bridge", Phase::Apply), StepOutcome::Done);
    assert_eq!(outcome("tenant.t0.tap", Phase::Apply), StepOutcome::Done);
    let bridge = position(&calls, "bridge", |c| matches!(c, Call::BridgeEnsure { .. }));
    let tap = position(
        &calls,
        "t0 tap",
        |c| matches!(c, Call::TapEnsure { name, .. } if name.ends_with("tap-t0")),
    );
    assert!(bridge < tap, "{calls:#?}");
    assert!(!calls.iter().any(|c| under(c, "tap-t1")));
    // A change this node cannot carry out is blocked: not attempted, its
    // dependents skipped (this observation has no Nix).
    assert!(
        matches!(outcome("tenant.t0.artifact", Phase::Apply), StepOutcome::Blocked(ref e) if e.contains("Nix is not installed")),
        "{:?}",
        outcome("tenant.t0.artifact", Phase::Apply)
    );
    assert!(!calls.iter().any(|c| matches!(c, Call::NixBuild { .. })));
    assert!(!r.success());
}

/// Blocked changes are not attempted and write no audit records, so a
/// timer-driven agent does not grow audit logs on a node that cannot
/// carry them out; what did run is recorded in the tenant's log.
#[test]
fn blocked_changes_are_not_attempted_and_leave_no_audit_record() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    let p = plan(
        &desired(1, &node),
        &node,
        &host_observed(),
        PlanOptions::default(),
    )
    .unwrap();
    assert!(p.summary.blocked > 0);
    let log = tmp.path().join("tenants/t0/audit.log");
    for run_no in 1..=2 {
        let host = Arc::new(RecordingHost::new());
        let r = run(
            &p,
            host.clone(),
            4,
            Arc::new(Quiet),
            Arc::new(AtomicBool::new(false)),
        );
        // Each blocked change ends blocked, or skipped when something it
        // waits on was blocked first; none of them ran.
        let blocked: Vec<&mvm::resources::ResourceAddr> = p
            .resource_changes
            .iter()
            .filter(|c| c.blocked.is_some())
            .map(|c| &c.address)
            .collect();
        assert_eq!(blocked.len(), p.summary.blocked);
        for s in r.steps.iter().filter(|s| blocked.contains(&&s.address)) {
            assert!(
                matches!(
                    s.outcome,
                    StepOutcome::Blocked(_) | StepOutcome::Skipped { .. }
                ),
                "run {run_no}: {} {:?}",
                s.address,
                s.outcome
            );
        }
        assert!(r.blocked().count() > 0);
        let text =
            String::from_utf8(host.file(&log).expect("the tenant's log is written")).unwrap();
        let mut resources: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["resource"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(resources[0], "tenant.t0.dirs", "{text}");
        resources.sort();
        assert_eq!(
            resources,
            [
                "tenant.t0.cgroup",
                "tenant.t0.dirs",
                "tenant.t0.nft",
                "tenant.t0.secrets",
                "tenant.t0.tap"
            ],
            "{text}"
        );
        assert!(
            !text.contains("tenant.t0.vm") && !text.contains("failed"),
            "{text}"
        );
    }
}

#[test]
fn concurrency_is_bounded_by_parallelism() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    let p = plan(
        &desired(12, &node),
        &node,
        &host_observed(),
        PlanOptions::default(),
    )
    .unwrap();
    for parallelism in [1, 3] {
        let host = Arc::new(RecordingHost::new().with_delay(Duration::from_millis(15)));
        let r = run(
            &p,
            host.clone(),
            parallelism,
            Arc::new(Quiet),
            Arc::new(AtomicBool::new(false)),
        );
        assert!(
            host.max_in_flight() <= parallelism,
            "{} > {parallelism}",
            host.max_in_flight()
        );
        if parallelism > 1 {
            assert!(
                host.max_in_flight() > 1,
                "independent tenants ran one at a time"
            );
        }
        assert!(
            r.steps
                .iter()
                .filter(|s| s.outcome == StepOutcome::Done)
                .count()
                >= 36
        );
    }
}

#[test]
fn deletes_walk_backwards_and_replace_destroys_before_creating() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    let d = desired(1, &node);
    let p = plan(&d, &node, &host_observed(), tree_kinds()).unwrap();
    let converged = simulate::apply_to(&p, &host_observed()).unwrap();

    // Prune: the tmpfs is unmounted before the tree holding it is removed.
    let empty = DesiredState { tenants: vec![] };
    let prune = plan(
        &empty,
        &node,
        &converged,
        PlanOptions {
            prune: true,
            ..tree_kinds()
        },
    )
    .unwrap();
    let host = Arc::new(RecordingHost::new());
    let r = run(
        &prune,
        host.clone(),
        8,
        Arc::new(Quiet),
        Arc::new(AtomicBool::new(false)),
    );
    let calls = host.calls();
    assert!(
        position(&calls, "unmount", |c| matches!(c, Call::Unmount(_)))
            < position(&calls, "remove_tree", |c| matches!(c, Call::RemoveTree(_))),
        "{calls:#?}"
    );
    let removed = position(&calls, "cgroup_remove", |c| {
        matches!(c, Call::CgroupRemove(_))
    });
    // The last tenant gone, the empty parent mvm made goes too.
    let parent = position(
        &calls,
        "parent",
        |c| matches!(c, Call::CgroupRemoveIfUnused(p) if p.ends_with("mvm")),
    );
    assert!(removed < parent, "{calls:#?}");
    assert!(r.steps.iter().all(|s| s.phase == Phase::Destroy));

    // Replace: a tmpfs found as another filesystem type cannot be fixed by
    // a remount: it is unmounted (destroy), then mounted anew (create).
    let mut edited = converged.clone();
    let t = edited.tenants.values_mut().next().unwrap();
    t.secrets.as_mut().unwrap().fstype = "ramfs".into();
    let replace = plan(&d, &node, &edited, tree_kinds()).unwrap();
    let change = replace
        .resource_changes
        .iter()
        .find(|c| c.address.to_string() == "tenant.t0.secrets")
        .unwrap();
    assert_eq!(change.actions, Action::Replace);
    // On a host where the tenant was created (the mount point exists).
    let host = Arc::new(RecordingHost::new());
    let quiet = || Arc::new(Quiet);
    assert!(
        run(
            &p,
            host.clone(),
            8,
            quiet(),
            Arc::new(AtomicBool::new(false))
        )
        .success()
    );
    let before = host.calls().len();
    let r = run(
        &replace,
        host.clone(),
        8,
        Arc::new(Quiet),
        Arc::new(AtomicBool::new(false)),
    );
    let calls = host.calls().split_off(before);
    assert!(
        position(&calls, "unmount", |c| matches!(c, Call::Unmount(_)))
            < position(&calls, "mount", |c| matches!(c, Call::MountTmpfs { .. })),
        "{calls:#?}"
    );
    assert_eq!(
        r.counts(),
        mvm::apply::Counts {
            added: 1,
            changed: 0,
            destroyed: 1
        }
    );
}

#[test]
fn interrupt_lets_running_steps_finish_and_starts_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    let p = plan(&desired(6, &node), &node, &host_observed(), tree_kinds()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let host = Arc::new(RecordingHost::new().with_delay(Duration::from_millis(5)));
    let progress = Arc::new(StopAfter(3, stop.clone(), Default::default()));
    let r = run(&p, host.clone(), 2, progress, stop);
    assert!(r.interrupted);
    let done = r
        .steps
        .iter()
        .filter(|s| s.outcome == StepOutcome::Done)
        .count();
    let not_started = r
        .steps
        .iter()
        .filter(|s| s.outcome == StepOutcome::Interrupted)
        .count();
    assert!(
        done >= 1 && not_started > 0,
        "done {done}, not started {not_started}"
    );
    // Every step is accounted for, exactly once.
    let total: usize = p
        .resource_changes
        .iter()
        .map(|c| match c.actions {
            Action::NoOp => 0,
            Action::Replace => 2,
            _ => 1,
        })
        .sum();
    assert_eq!(r.steps.len(), total);
}

#[test]
fn no_op_plan_makes_no_host_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    let d = desired(3, &node);
    let p = plan(&d, &node, &host_observed(), PlanOptions::default()).unwrap();
    let converged = simulate::apply_to(&p, &host_observed()).unwrap();
    let again = plan(&d, &node, &converged, PlanOptions::default()).unwrap();
    assert!(!again.has_changes());
    let host = Arc::new(RecordingHost::new());
    let r = run(
        &again,
        host.clone(),
        4,
        Arc::new(Quiet),
        Arc::new(AtomicBool::new(false)),
    );
    assert!(r.success() && r.steps.is_empty());
    assert_eq!(host.calls().len(), 0);
}

/// What a run's progress saw, in order: (started?, address).
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<(bool, String)>>);
impl Progress for Seen {
    fn started(&self, a: &ResourceAddr, _: Phase, _: Action) {
        self.0.lock().unwrap().push((true, a.to_string()));
    }
    fn finished(&self, r: &StepResult) {
        self.0.lock().unwrap().push((false, r.address.to_string()));
    }
}

/// A prune of 12 tenants' network: the taps' deletes (a kind that deletes
/// together) are all handed over at once even with 2 steps at a time, as
/// are the nft elements'; one tap that cannot be deleted fails alone and
/// skips only its own tenant's tree; each deleted tap has its own audit
/// record, in its tenant's (archived) log.
#[test]
fn ready_deletes_of_a_kind_that_deletes_together_run_as_one_step() {
    let tmp = tempfile::tempdir().unwrap();
    let node = node(tmp.path());
    let d = desired(12, &node);
    let net = || PlanOptions {
        targets: ["tenant.*.tap", "tenant.*.nft"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect(),
        ..Default::default()
    };
    let p = plan(&d, &node, &host_observed(), net()).unwrap();
    let host = Arc::new(
        RecordingHost::new().failing(|c| matches!(c, Call::LinkDelete(name) if name == "tap-t3")),
    );
    // The node's log needs the state dir, as on a node.
    Host::recording(host.clone())
        .ensure_state_dir(tmp.path())
        .unwrap();
    let quiet = Arc::new(Quiet);
    let made = run(&p, host.clone(), 2, quiet, Arc::new(AtomicBool::new(false)));
    assert!(made.success(), "{:#?}", made.audit_errors);
    let converged = simulate::apply_to(&p, &host_observed()).unwrap();
    let prune = plan(
        &DesiredState { tenants: vec![] },
        &node,
        &converged,
        PlanOptions {
            prune: true,
            ..net()
        },
    )
    .unwrap();
    let seen = Arc::new(Seen::default());
    let r = run(
        &prune,
        host.clone(),
        2,
        seen.clone(),
        Arc::new(AtomicBool::new(false)),
    );
    let seen = seen.0.lock().unwrap().clone();
    let is_tap = |a: &str| a.starts_with("tenant.") && a.ends_with(".tap");
    let first_tap_done = seen
        .iter()
        .position(|(start, a)| !start && is_tap(a))
        .expect("a tap finished");
    let taps_started = seen[..first_tap_done]
        .iter()
        .filter(|(start, a)| *start && is_tap(a))
        .count();
    assert_eq!(taps_started, 12, "{seen:#?}");
    let outcome = |a: &str| {
        r.steps
            .iter()
            .find(|s| s.address.to_string() == a)
            .map(|s| s.outcome.clone())
            .unwrap_or_else(|| panic!("no step {a}"))
    };
    assert!(matches!(outcome("tenant.t3.tap"), StepOutcome::Failed(e) if e.contains("tap-t3")));
    assert!(matches!(
        outcome("tenant.t3.dirs"),
        StepOutcome::Skipped { .. }
    ));
    for i in (0..12).filter(|&i| i != 3) {
        for k in ["tap", "nft", "dirs"] {
            assert_eq!(
                outcome(&format!("tenant.t{i}.{k}")),
                StepOutcome::Done,
                "t{i} {k}"
            );
        }
    }
    // The records: t3's log, still in place, says its tap failed; each
    // other tenant's archived log says its tap was deleted.
    let logs: Vec<(std::path::PathBuf, String)> = host
        .paths()
        .into_iter()
        .filter(|p| p.ends_with("audit.log"))
        .map(|p| {
            let text = String::from_utf8(host.file(&p).unwrap()).unwrap();
            (p, text)
        })
        .collect();
    for i in 0..12 {
        let resource = format!("\"resource\":\"tenant.t{i}.tap\"");
        let line = logs
            .iter()
            .flat_map(|(_, t)| t.lines())
            .find(|l| l.contains(&resource) && l.contains("\"action\":\"delete\""))
            .unwrap_or_else(|| panic!("no delete record of t{i}'s tap in {logs:#?}"));
        let result = if i == 3 { "failed" } else { "ok" };
        assert!(line.contains(&format!("\"result\":\"{result}\"")), "{line}");
    }
}
