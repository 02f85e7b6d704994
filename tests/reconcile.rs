//! The whole reconcile use case on the recording host — lock, probe, plan,
//! apply, remember — for every kind (bridge, firewall, metadata service,
//! and tenants with their tree, cgroup, secrets, build, jail, tap, nft
//! and a running VM). The host answers the probe from its own model, so a
//! second reconcile must find nothing to do and make **zero** mutating
//! calls; stopping a tenant and pruning one change exactly what they
//! name; and every change leaves an audit record (tenant steps in the
//! tenant's log, node steps in the node's).

mod common;

use common::operator::{Approve, capable_node};
use mvm::agent::Node;
use mvm::agent::reconcile::{Goal, Outcome, OverrideChange, Request, reconcile};
use mvm::host::recording::{Call, RecordingHost};
use mvm::host::{Host, Locks};
use mvm::plan::{Action, Plan, PlanOptions};
use mvm::security::audit::{Log, verify};
use mvm::spec::{self, DesiredState, NodeConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const STATE: &str = "/var/lib/mvm-recorded";

fn config() -> NodeConfig {
    let text = format!("state_dir = \"{STATE}\"\n[cgroup]\nparent = \"mvm\"\n");
    spec::parse_node(Path::new("node.toml"), &text).unwrap()
}

fn desired(node: &NodeConfig, tenants: serde_json::Value) -> DesiredState {
    spec::parse_desired(
        Path::new("desired.json"),
        &serde_json::json!({ "tenants": tenants }).to_string(),
        node,
    )
    .unwrap()
}

fn two(node: &NodeConfig) -> DesiredState {
    desired(
        node,
        serde_json::json!([
            {"tenant_id": "acme", "flake_ref": "github:o/a?rev=0123456789abcdef0123456789abcdef01234567",
             "profile": "minimal", "vcpus": 2, "mem_mib": 512, "state": "running",
             "metadata": true, "data_mib": 64, "ssh_from_gateway": true},
            {"tenant_id": "beta", "flake_ref": "github:o/b?rev=0123456789abcdef0123456789abcdef01234567",
             "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "cpuset": "1"},
        ]),
    )
}

fn run(node: &Node, goal: Goal) -> (Outcome, Plan) {
    let ui = Approve::default();
    let req = Request {
        goal,
        parallelism: Some(4),
        lock_timeout: Duration::ZERO,
        command_line: "mvm agent reconcile",
        operator: "uid 0",
    };
    let out = reconcile(node, req, &ui, Arc::new(AtomicBool::new(false)), false).unwrap();
    (out, ui.shown())
}

fn mutating(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.mutates()).collect()
}

fn setup() -> (Arc<RecordingHost>, Node) {
    let rec = Arc::new(RecordingHost::new().with_base(capable_node(true)));
    let node = Node::new(config(), Host::recording(rec.clone()));
    (rec, node)
}

#[test]
fn a_whole_reconcile_converges_and_the_second_run_makes_zero_mutating_calls() {
    let (rec, node) = setup();
    let goal = Goal::Desired {
        desired: two(&node.config),
        options: PlanOptions::default(),
    };
    let (out, plan) = run(&node, goal);
    let Outcome::Applied(report) = out else {
        panic!("the first run applies")
    };
    assert!(
        report.success(),
        "{:#?} {:?}",
        report.steps,
        report.audit_errors
    );
    assert!(
        plan.resource_changes.iter().all(|c| c.blocked.is_none()),
        "nothing is blocked on a capable host: {:#?}",
        plan.resource_changes
            .iter()
            .filter(|c| c.blocked.is_some())
            .collect::<Vec<_>>()
    );
    // Every kind took part: both VMs run.
    let calls = rec.calls();
    let launches = calls
        .iter()
        .filter(
            |c| matches!(c, Call::Launch { args, .. } if args.first().is_some_and(|a| a == "--id")),
        )
        .count();
    assert_eq!(launches, 2, "{calls:#?}");
    // The state dir (which holds the lock) is made, then the lock taken,
    // then the host probed, before any other change.
    assert!(
        matches!(&calls[0], Call::EnsureDir { path, .. } if path == Path::new(STATE)),
        "{:?}",
        calls[0]
    );
    assert!(matches!(calls[1], Call::NodeLock(_)), "{:?}", calls[1]);
    assert!(matches!(calls[2], Call::Observe(_)), "{:?}", calls[2]);
    // The applied desired state was remembered for `net verify`.
    assert!(rec.file(&Path::new(STATE).join("desired.json")).is_some());

    let before = calls.len();
    let goal = Goal::Desired {
        desired: two(&node.config),
        options: PlanOptions::default(),
    };
    let (out, plan) = run(&node, goal);
    let changes: Vec<String> = plan
        .resource_changes
        .iter()
        .filter(|c| c.actions != Action::NoOp)
        .map(|c| {
            format!(
                "{} {:?}: {:?} -> {:?}",
                c.address, c.actions, c.before, c.after
            )
        })
        .collect();
    assert!(
        changes.is_empty(),
        "the second plan changes:\n{}",
        changes.join("\n")
    );
    assert!(matches!(out, Outcome::NoChanges));
    let second = rec.calls()[before..].to_vec();
    assert_eq!(
        mutating(&second),
        Vec::<&Call>::new(),
        "the no-op run changed the host"
    );
    assert_eq!(second.len(), 2, "it took the lock and probed: {second:?}");
}

#[test]
fn stopping_a_tenant_stops_exactly_its_vm_and_pruning_removes_exactly_one_tenant() {
    let (rec, node) = setup();
    let goal = Goal::Desired {
        desired: two(&node.config),
        options: PlanOptions::default(),
    };
    assert!(matches!(run(&node, goal).0, Outcome::Applied(r) if r.success()));

    let before = rec.calls().len();
    let goal = Goal::Override {
        id: spec::types::TenantId::parse("beta").unwrap(),
        change: OverrideChange::State(spec::RunState::Stopped),
    };
    let (out, plan) = run(&node, goal);
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let changed: Vec<String> = plan
        .resource_changes
        .iter()
        .filter(|c| c.actions != Action::NoOp)
        .map(|c| c.address.to_string())
        .collect();
    assert_eq!(changed, ["tenant.beta.vm"]);
    let stops = rec.calls()[before..]
        .iter()
        .filter(|c| matches!(c, Call::Stop { .. }))
        .count();
    assert_eq!(stops, 1);

    // beta leaves the desired state: with --prune everything of beta
    // goes, and nothing of acme or the node changes.
    let only_acme = desired(
        &node.config,
        serde_json::json!([
            {"tenant_id": "acme", "flake_ref": "github:o/a?rev=0123456789abcdef0123456789abcdef01234567",
             "profile": "minimal", "vcpus": 2, "mem_mib": 512, "state": "running",
             "metadata": true, "data_mib": 64, "ssh_from_gateway": true},
        ]),
    );
    let goal = Goal::Desired {
        desired: only_acme.clone(),
        options: PlanOptions {
            prune: true,
            targets: Vec::new(),
            ..Default::default()
        },
    };
    let (out, plan) = run(&node, goal);
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let changed: Vec<(String, Action)> = plan
        .resource_changes
        .iter()
        .filter(|c| c.actions != Action::NoOp)
        .map(|c| (c.address.to_string(), c.actions))
        .collect();
    assert!(
        changed
            .iter()
            .all(|(a, act)| a.starts_with("tenant.beta.") && *act == Action::Delete),
        "{changed:?}"
    );
    // And the node converged again.
    let goal = Goal::Desired {
        desired: only_acme,
        options: PlanOptions {
            prune: true,
            targets: Vec::new(),
            ..Default::default()
        },
    };
    assert!(matches!(run(&node, goal).0, Outcome::NoChanges));
}

#[test]
fn every_change_is_audited_node_changes_in_the_node_log() {
    let (rec, node) = setup();
    let goal = Goal::Desired {
        desired: two(&node.config),
        options: PlanOptions::default(),
    };
    let (_, plan) = run(&node, goal);
    let node_id = node.node_id().unwrap().expect("the run made a node id");
    let state = Path::new(STATE);
    let node_log = rec
        .file(&state.join("audit.log"))
        .expect("a node audit log");
    let text = String::from_utf8(node_log.clone()).unwrap();
    for addr in ["node.bridge", "node.nft", "node.metadata"] {
        assert!(
            text.contains(&format!("\"resource\":\"{addr}\"")),
            "{addr} not in the node log:\n{text}"
        );
    }
    assert!(!text.contains("\"tenant_id\""), "{text}");
    let v = verify(
        &node_log,
        rec.file(&state.join("audit.head")).as_deref(),
        Log::Node,
        Some(&node_id),
    );
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(
        v.records as usize,
        plan.resource_changes
            .iter()
            .filter(|c| c.address.tenant().is_none() && c.actions != Action::NoOp)
            .count()
    );
    let acme = rec
        .file(&state.join("tenants/acme/audit.log"))
        .expect("acme's log");
    let acme = String::from_utf8(acme).unwrap();
    assert!(acme.contains("\"resource\":\"tenant.acme.vm\""), "{acme}");
    assert!(!acme.contains("node.nft"), "{acme}");
}

#[test]
fn a_second_reconcile_waits_for_the_lock_and_gives_up_naming_the_holder() {
    let (rec, node) = setup();
    let held = rec
        .as_ref()
        .node_lock(
            &Path::new(STATE).join("lock"),
            "pid 1 (mvm agent run)",
            Duration::ZERO,
            &mut |_| {},
        )
        .unwrap();
    let ui = Approve::default();
    let req = Request {
        goal: Goal::Desired {
            desired: two(&node.config),
            options: PlanOptions::default(),
        },
        parallelism: None,
        lock_timeout: Duration::from_millis(50),
        command_line: "mvm agent reconcile",
        operator: "uid 0",
    };
    let e = reconcile(&node, req, &ui, Arc::new(AtomicBool::new(false)), false)
        .err()
        .expect("the lock is held");
    assert!(e.to_string().contains("mvm agent run"), "{e}");
    assert!(
        mutating(&rec.calls())
            .iter()
            .all(|c| matches!(c, Call::EnsureDir { .. }))
    );
    drop(held);
}

/// The operator's overrides hold against the control plane: a stop and a
/// pin survive the next `agent reconcile --desired`, every plan lists
/// them, the tenant's log records who set them and what changed, and
/// `release` hands the tenant back.
#[test]
fn overrides_hold_against_the_next_reconcile_until_released() {
    let (rec, node) = setup();
    let reconcile_two = |node: &Node| {
        let goal = Goal::Desired {
            desired: two(&node.config),
            options: PlanOptions::default(),
        };
        run(node, goal)
    };
    assert!(matches!(reconcile_two(&node).0, Outcome::Applied(r) if r.success()));
    let beta = spec::types::TenantId::parse("beta").unwrap();
    let pinned = "github:o/b?rev=89abcdef0123456789abcdef0123456789abcdef";
    let (out, plan) = run(
        &node,
        Goal::Override {
            id: beta.clone(),
            change: OverrideChange::Pin {
                flake_ref: pinned.into(),
                lock: None,
            },
        },
    );
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    assert!(
        plan.overrides[0].text.contains(pinned) && plan.overrides[0].text.contains("uid 0"),
        "{:?}",
        plan.overrides
    );
    let vm = plan
        .resource_changes
        .iter()
        .find(|c| c.address.to_string() == "tenant.beta.vm")
        .unwrap();
    assert_eq!(vm.actions, Action::Replace, "the VM restarts onto the pin");
    assert!(
        plan.resource_changes
            .iter()
            .filter(|c| c.actions != Action::NoOp)
            .all(|c| c.address.tenant() == Some(&beta)),
        "only beta changes"
    );

    // The plan shows it above the changes; tenant list and status too.
    let text = mvm::plan::render::render(&plan, false);
    assert!(
        text.contains("Overrides set by hand on this node:\n  beta: pinned by hand to"),
        "{text}"
    );
    let (desired, _, notes) = node.desired(None).unwrap();
    let observed = node.observed(None).unwrap();
    let mut p = mvm::plan::plan(&desired, &node.config, &observed, PlanOptions::default()).unwrap();
    p.overrides = notes;
    let rows = mvm::agent::status::list(&desired, &observed, &p);
    let row = |id: &str| rows.iter().find(|r| r.tenant_id.as_str() == id).unwrap();
    assert_eq!(row("beta").overrides, ["pin"]);
    assert!(row("acme").overrides.is_empty());
    let st = mvm::agent::status::status(&node.config, &beta, &desired, &observed, &p).unwrap();
    assert!(
        st.override_notes[0].contains("mvm tenant unpin beta"),
        "{:?}",
        st.override_notes
    );

    // The control plane runs again with its own document: the pin holds,
    // and the plan says so.
    let (out, plan) = reconcile_two(&node);
    assert!(
        matches!(out, Outcome::NoChanges),
        "{:?}",
        plan.resource_changes
            .iter()
            .filter(|c| c.actions != Action::NoOp)
            .map(|c| c.address.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(plan.overrides.len(), 1);

    // A stop holds too.
    let (out, _) = run(
        &node,
        Goal::Override {
            id: beta.clone(),
            change: OverrideChange::State(spec::RunState::Stopped),
        },
    );
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    assert!(matches!(reconcile_two(&node).0, Outcome::NoChanges));
    let overrides = node.overrides().unwrap();
    assert!(overrides.tenants[&beta].pin.is_some() && overrides.tenants[&beta].state.is_some());

    // The log names who set each override and what changed.
    let log = String::from_utf8(
        rec.file(&Path::new(STATE).join("tenants/beta/audit.log"))
            .unwrap(),
    )
    .unwrap();
    let records: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"action\":\"override\""))
        .collect();
    assert_eq!(records.len(), 2, "{log}");
    assert!(
        records[1].contains("\\\"state\\\":\\\"stopped\\\"") && records[1].contains("uid 0"),
        "{}",
        records[1]
    );

    // Release: the control plane's again — its revision, running.
    let (out, plan) = run(
        &node,
        Goal::Override {
            id: beta.clone(),
            change: OverrideChange::Release,
        },
    );
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    assert!(plan.overrides.is_empty());
    assert!(node.overrides().unwrap().tenants.is_empty());
    assert!(matches!(reconcile_two(&node).0, Outcome::NoChanges));
    // Nothing left to undo is an error, not a silent no-op.
    let ui = Approve::default();
    let req = Request {
        goal: Goal::Override {
            id: beta,
            change: OverrideChange::Unpin,
        },
        parallelism: None,
        lock_timeout: Duration::ZERO,
        command_line: "mvm tenant unpin beta",
        operator: "uid 0",
    };
    let e = reconcile(&node, req, &ui, Arc::new(AtomicBool::new(false)), false)
        .err()
        .expect("no pin to drop");
    assert!(e.to_string().contains("has no pin"), "{e}");
}

/// A damaged `overrides.json` stops planning, naming the file and what to
/// do; the plan never guesses which overrides were meant.
#[test]
fn a_damaged_overrides_file_stops_the_plan_and_is_named() {
    let (_rec, node) = setup();
    let goal = Goal::Desired {
        desired: two(&node.config),
        options: PlanOptions::default(),
    };
    assert!(matches!(run(&node, goal).0, Outcome::Applied(r) if r.success()));
    let path = Path::new(STATE).join("overrides.json");
    for (bad, why) in [
        (
            &b"{\"format_version\": 1, \"tenants\": {\"beta\": {}, \"beta\": {}}}"[..],
            "duplicate",
        ),
        (
            b"{\"format_version\": 2, \"tenants\": {}}",
            "format_version 2",
        ),
        (b"not json", "overrides file"),
    ] {
        node.host.files.write_file(&path, bad, 0o600).unwrap();
        let req = Request {
            goal: Goal::Desired {
                desired: two(&node.config),
                options: PlanOptions::default(),
            },
            parallelism: None,
            lock_timeout: Duration::ZERO,
            command_line: "mvm agent reconcile",
            operator: "uid 0",
        };
        let e = reconcile(
            &node,
            req,
            &Approve::default(),
            Arc::new(AtomicBool::new(false)),
            false,
        )
        .err()
        .expect("a damaged overrides file is refused");
        let shown = e.to_string();
        assert!(
            shown.contains("overrides.json") && shown.contains(why),
            "{shown}"
        );
        assert!(
            e.hint().unwrap().contains("move it aside"),
            "{:?}",
            e.hint()
        );
    }
}

fn override_req<'a>(id: &str, change: OverrideChange) -> Request<'a> {
    Request {
        goal: Goal::Override {
            id: spec::types::TenantId::parse(id).unwrap(),
            change,
        },
        parallelism: None,
        lock_timeout: Duration::ZERO,
        command_line: "mvm tenant",
        operator: "uid 0",
    }
}

fn gamma(vcpus: u64) -> serde_json::Value {
    serde_json::json!({"tenant_id": "gamma", "flake_ref": "github:o/g?rev=0123456789abcdef0123456789abcdef01234567",
        "profile": "minimal", "vcpus": vcpus, "mem_mib": 256, "state": "running"})
}

/// A tenant created by hand lives on this node whatever the control plane
/// says: `--prune` keeps it, `destroy` removes all of it; a control-plane
/// tenant cannot be destroyed here; a refused flag is named and changes
/// nothing; the control plane later naming the same id blocks it, naming
/// both sources.
#[test]
fn local_tenants_survive_prune_until_destroyed_and_conflicts_are_blocked() {
    let (rec, node) = setup();
    let stop = || Arc::new(AtomicBool::new(false));
    let prune_to_two = |node: &Node| {
        run(
            node,
            Goal::Desired {
                desired: two(&node.config),
                options: PlanOptions {
                    prune: true,
                    targets: Vec::new(),
                    ..Default::default()
                },
            },
        )
    };
    assert!(matches!(prune_to_two(&node).0, Outcome::Applied(r) if r.success()));

    // A flag the spec refuses: named, nothing written.
    let e = reconcile(
        &node,
        override_req("gamma", OverrideChange::Create(gamma(99))),
        &Approve::default(),
        stop(),
        false,
    )
    .err()
    .expect("vcpus 99 is refused");
    let problems: Vec<String> = match &e {
        mvm::agent::AgentError::Spec(s) => s.problems().iter().map(|p| p.to_string()).collect(),
        e => panic!("{e}"),
    };
    assert!(
        problems.iter().any(|p| p.starts_with("--vcpus")),
        "{problems:?}"
    );
    assert!(rec.file(&Path::new(STATE).join("overrides.json")).is_none());

    let ui = Approve::default();
    let out = reconcile(
        &node,
        override_req("gamma", OverrideChange::Create(gamma(1))),
        &ui,
        stop(),
        false,
    )
    .unwrap();
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    assert!(ui.shown().overrides[0].text.contains("created by hand"));
    // It had no log yet: the node's records who created it, before the apply.
    let node_log =
        String::from_utf8(rec.file(&Path::new(STATE).join("audit.log")).unwrap()).unwrap();
    assert!(
        node_log
            .lines()
            .any(|l| l.contains("\"action\":\"override\"")
                && l.contains("tenant.gamma")
                && l.contains("uid 0")),
        "{node_log}"
    );
    // The control plane's next run, with --prune, keeps it.
    let (out, plan) = prune_to_two(&node);
    assert!(matches!(out, Outcome::NoChanges), "{:?}", plan.summary);
    assert!(
        node.observed(None)
            .unwrap()
            .tenants
            .keys()
            .any(|k| k.as_str() == "gamma")
    );

    // Destroying a control-plane tenant is refused; a local one goes whole.
    let e = reconcile(
        &node,
        override_req("beta", OverrideChange::Destroy),
        &Approve::default(),
        stop(),
        false,
    )
    .err()
    .expect("beta is the control plane's");
    assert!(e.to_string().contains("would bring it back"), "{e}");
    let out = reconcile(
        &node,
        override_req("gamma", OverrideChange::Destroy),
        &Approve::default(),
        stop(),
        false,
    )
    .unwrap();
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    assert!(
        !node
            .observed(None)
            .unwrap()
            .tenants
            .keys()
            .any(|k| k.as_str() == "gamma")
    );
    assert!(node.overrides().unwrap().tenants.is_empty());

    // Both sources claiming one id: that tenant is blocked, both named.
    let out = reconcile(
        &node,
        override_req("gamma", OverrideChange::Create(gamma(1))),
        &Approve::default(),
        stop(),
        false,
    )
    .unwrap();
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let mut three = two(&node.config);
    let mut g = three.tenants[1].clone();
    g.tenant_id = spec::types::TenantId::parse("gamma").unwrap();
    g.vcpus = 2;
    three.tenants.push(g);
    let (_, plan) = run(
        &node,
        Goal::Desired {
            desired: three,
            options: PlanOptions::default(),
        },
    );
    let blocked: Vec<&str> = plan
        .resource_changes
        .iter()
        .filter_map(|c| c.blocked.as_deref())
        .collect();
    assert!(
        !blocked.is_empty() && blocked.iter().all(|b| b.contains("created by hand")),
        "{blocked:?}"
    );
    assert!(!plan.applyable);
}

/// `tenant rollback --steps 1` pins the tenant to the revision it ran one
/// start back — its flake ref and lock hash — and the plan says so; past
/// the recorded history is an error that changes nothing.
#[test]
fn a_rollback_pins_the_revision_one_start_back() {
    let (_rec, node) = setup();
    let goal = Goal::Desired {
        desired: two(&node.config),
        options: PlanOptions::default(),
    };
    assert!(matches!(run(&node, goal).0, Outcome::Applied(r) if r.success()));
    let stop = || Arc::new(AtomicBool::new(false));
    let first = "github:o/b?rev=0123456789abcdef0123456789abcdef01234567";
    let second = "github:o/b?rev=89abcdef0123456789abcdef0123456789abcdef";
    let pin = OverrideChange::Pin {
        flake_ref: second.into(),
        lock: None,
    };
    let out = reconcile(
        &node,
        override_req("beta", pin),
        &Approve::default(),
        stop(),
        false,
    )
    .unwrap();
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let beta = spec::types::TenantId::parse("beta").unwrap();
    let history = mvm::agent::history::read_revisions(&node, &beta).unwrap();
    assert_eq!(history.len(), 2);

    let ui = Approve::default();
    let out = reconcile(
        &node,
        override_req("beta", OverrideChange::Rollback { steps: 1 }),
        &ui,
        stop(),
        false,
    )
    .unwrap();
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let pin = node.overrides().unwrap().tenants[&beta]
        .pin
        .clone()
        .unwrap();
    assert_eq!(pin.flake_ref, first);
    assert_eq!(pin.lock.as_deref(), Some(history[0].lock.as_str()));
    assert!(
        ui.shown().overrides[0].text.contains("rolled back by hand"),
        "{:?}",
        ui.shown().overrides
    );
    let now = mvm::agent::history::read_revisions(&node, &beta).unwrap();
    assert_eq!(
        now.last().unwrap().flake_ref,
        first,
        "the VM runs the first revision again"
    );
    assert_eq!(
        now.last().unwrap().fc_config_sha256,
        history[0].fc_config_sha256
    );

    let e = reconcile(
        &node,
        override_req("beta", OverrideChange::Rollback { steps: 9 }),
        &Approve::default(),
        stop(),
        false,
    )
    .err()
    .expect("past the history");
    assert!(e.to_string().contains("--steps 9 reaches none"), "{e}");
    assert_eq!(
        node.overrides().unwrap().tenants[&beta]
            .pin
            .clone()
            .unwrap()
            .flake_ref,
        first
    );
}
