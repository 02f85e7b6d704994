//! Tenant secrets on the recording host, end to end through the engine:
//! `set` stages a generation and leaves the VM alone, `rotate` replaces
//! exactly that VM onto the newest generation and removes the older one
//! once it runs, nothing staged is no change, `set` supersedes a staged
//! generation the VM does not run, and a value never reaches a plan, a
//! record, an audit line or any file outside the tmpfs.

mod common;

use common::operator::{Approve, capable_node};
use mvm::agent::reconcile::{Goal, Outcome, Request, reconcile};
use mvm::agent::secrets::{SetRequest, SetUi, set};
use mvm::agent::{AgentError, Node};
use mvm::host::Host;
use mvm::host::recording::{Call, RecordingHost};
use mvm::plan::{Action, Plan, PlanOptions};
use mvm::security::secrets::{Manifest, SecretFile};
use mvm::spec::types::TenantId;
use mvm::spec::{self, NodeConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const STATE: &str = "/var/lib/mvm-secrets";
const CANARY: &str = "canary-7f3a9c1e-do-not-leak";

fn config() -> NodeConfig {
    let text = format!("state_dir = \"{STATE}\"\n[cgroup]\nparent = \"mvm\"\n");
    spec::parse_node(Path::new("node.toml"), &text).unwrap()
}

fn setup() -> (Arc<RecordingHost>, Node) {
    setup_on(RecordingHost::new())
}

/// Two running tenants, acme and beta, reconciled on `host`.
fn setup_on(host: RecordingHost) -> (Arc<RecordingHost>, Node) {
    let rec = Arc::new(host.with_base(capable_node(true)));
    let node = Node::new(config(), Host::recording(rec.clone()));
    let desired = spec::parse_desired(
        Path::new("desired.json"),
        &serde_json::json!({"tenants": [
            {"tenant_id": "acme", "flake_ref": "github:o/a?rev=0123456789abcdef0123456789abcdef01234567",
             "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"},
            {"tenant_id": "beta", "flake_ref": "github:o/b?rev=0123456789abcdef0123456789abcdef01234567",
             "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"},
        ]})
        .to_string(),
        &node.config,
    )
    .unwrap();
    let (out, _) = run(
        &node,
        Goal::Desired {
            desired,
            options: PlanOptions::default(),
        },
    );
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    (rec, node)
}

fn run(node: &Node, goal: Goal) -> (Outcome, Option<Plan>) {
    let ui = Approve::default();
    let req = Request {
        goal,
        parallelism: Some(4),
        lock_timeout: Duration::ZERO,
        command_line: "mvm test",
        operator: "uid 0",
    };
    let out = reconcile(node, req, &ui, Arc::new(AtomicBool::new(false)), false).unwrap();
    let shown = ui.0.lock().unwrap().clone();
    (out, shown)
}

struct Yes;
impl SetUi for Yes {
    fn waiting_for_lock(&self, _: &str) {}
    fn confirm(&self, _: &TenantId, _: &Manifest, _: Option<u64>) -> Result<bool, AgentError> {
        Ok(true)
    }
}

fn file(name: &str, value: &str) -> SecretFile {
    SecretFile {
        name: name.into(),
        value: zeroize::Zeroizing::new(value.as_bytes().to_vec()),
    }
}

fn stage(node: &Node, id: &str, files: Vec<SecretFile>) -> Result<u64, AgentError> {
    let req = SetRequest {
        id: TenantId::parse(id).unwrap(),
        files,
        lock_timeout: Duration::ZERO,
        command_line: "mvm tenant secrets set",
        operator: "uid 0",
    };
    set(node, req, &Yes).map(|s| s.expect("approved").generation)
}

fn rotate(node: &Node, id: &str) -> (Outcome, Option<Plan>) {
    run(
        node,
        Goal::RotateSecrets {
            id: TenantId::parse(id).unwrap(),
        },
    )
}

fn gen_dir(id: &str, g: u64) -> std::path::PathBuf {
    Path::new(STATE).join(format!("tenants/{id}/secrets/gen-{g}"))
}

fn launches(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Launch { tenant, .. } => Some(tenant.clone()),
            _ => None,
        })
        .collect()
}

fn secrets_bind(calls: &[Call]) -> Option<std::path::PathBuf> {
    calls.iter().rev().find_map(|c| match c {
        Call::StageJail(s) => s
            .binds
            .iter()
            .find(|(name, _, _)| name == "secrets.img")
            .map(|(_, src, _)| src.clone()),
        _ => None,
    })
}

#[test]
fn set_stages_without_touching_the_vm_and_rotate_replaces_exactly_that_vm() {
    let (rec, node) = setup();
    let before = rec.calls().len();
    let g = stage(
        &node,
        "acme",
        vec![file("db-password", CANARY), file("api.key", "k")],
    )
    .unwrap();
    assert_eq!(g, 1);
    let calls = rec.calls()[before..].to_vec();
    assert!(
        calls.iter().any(
            |c| matches!(c, Call::StageSecrets { generation: 1, files, .. } if files.len() == 2)
        )
    );
    assert!(launches(&calls).is_empty(), "set starts no VM: {calls:#?}");
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Stop { .. })),
        "set stops no VM"
    );
    assert!(
        rec.file(&gen_dir("acme", 1).join("manifest.json"))
            .is_some()
    );

    // A plain reconcile keeps the running VM on what it has.
    let (doc, _) = node.document(None).unwrap();
    let (out, _) = run(
        &node,
        Goal::Desired {
            desired: doc,
            options: PlanOptions::default(),
        },
    );
    assert!(
        matches!(out, Outcome::NoChanges),
        "set alone changes nothing"
    );

    let before = rec.calls().len();
    let (out, plan) = rotate(&node, "acme");
    let plan = plan.unwrap();
    let changed: Vec<String> = plan
        .resource_changes
        .iter()
        .filter(|c| c.is_change())
        .map(|c| format!("{} {:?}", c.address, c.actions))
        .collect();
    assert_eq!(changed, ["tenant.acme.vm Replace"]);
    let vm = plan
        .resource_changes
        .iter()
        .find(|c| c.is_change())
        .unwrap();
    assert!(vm.replace_paths.iter().any(|p| p.as_ref() == "secrets"));
    assert_eq!(
        vm.after.as_ref().unwrap()["secrets"],
        "(sensitive) generation 1, 2 files"
    );
    assert_eq!(vm.before.as_ref().unwrap()["secrets"], "(sensitive) none");
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let calls = rec.calls()[before..].to_vec();
    assert_eq!(launches(&calls), ["acme"]);
    assert_eq!(
        secrets_bind(&calls).unwrap(),
        gen_dir("acme", 1).join("secrets.img")
    );

    // A second generation: rotate moves onto it and removes the first.
    assert_eq!(
        stage(&node, "acme", vec![file("db-password", "v2")]).unwrap(),
        2
    );
    assert!(
        rec.file(&gen_dir("acme", 1).join("manifest.json"))
            .is_some(),
        "the live one stays"
    );
    let (out, plan) = rotate(&node, "acme");
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let plan = plan.unwrap();
    let vm = plan
        .resource_changes
        .iter()
        .find(|c| c.is_change())
        .unwrap();
    assert_eq!(
        vm.before.as_ref().unwrap()["secrets"],
        "(sensitive) generation 1, 2 files"
    );
    assert_eq!(
        vm.after.as_ref().unwrap()["secrets"],
        "(sensitive) generation 2, 1 file"
    );
    assert!(
        rec.file(&gen_dir("acme", 1).join("manifest.json"))
            .is_none(),
        "the old one is gone once the VM runs on the new"
    );
    assert!(
        rec.file(&gen_dir("acme", 2).join("manifest.json"))
            .is_some()
    );

    // Nothing staged: no change.
    let (out, _) = rotate(&node, "acme");
    assert!(matches!(out, Outcome::NoChanges));
}

#[test]
fn set_supersedes_a_staged_generation_but_never_the_live_one() {
    let (rec, node) = setup();
    stage(&node, "acme", vec![file("a", "1")]).unwrap();
    rotate(&node, "acme");
    stage(&node, "acme", vec![file("a", "2")]).unwrap();
    stage(&node, "acme", vec![file("a", "3")]).unwrap();
    let here = |g| {
        rec.file(&gen_dir("acme", g).join("manifest.json"))
            .is_some()
    };
    assert!(here(1), "the VM runs generation 1");
    assert!(!here(2), "generation 2 was never live and is superseded");
    assert!(here(3));
    // The other tenant is untouched.
    assert!(
        rec.file(&gen_dir("beta", 1).join("manifest.json"))
            .is_none()
    );
}

#[test]
fn a_stopped_vm_starts_with_the_newest_generation() {
    let (rec, node) = setup();
    let id = TenantId::parse("beta").unwrap();
    run(
        &node,
        Goal::Override {
            id: id.clone(),
            change: mvm::agent::reconcile::OverrideChange::State(spec::RunState::Stopped),
        },
    );
    stage(&node, "beta", vec![file("token", "t")]).unwrap();
    let (out, _) = rotate(&node, "beta");
    assert!(
        matches!(out, Outcome::NoChanges),
        "a stopped tenant has no VM to replace"
    );
    let before = rec.calls().len();
    let (out, plan) = run(
        &node,
        Goal::Override {
            id,
            change: mvm::agent::reconcile::OverrideChange::State(spec::RunState::Running),
        },
    );
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let vm = plan
        .unwrap()
        .resource_changes
        .into_iter()
        .find(|c| c.address.to_string() == "tenant.beta.vm")
        .unwrap();
    assert_eq!(vm.actions, Action::Create);
    assert_eq!(
        vm.after.unwrap()["secrets"],
        "(sensitive) generation 1, 1 file"
    );
    assert_eq!(
        secrets_bind(&rec.calls()[before..]).unwrap(),
        gen_dir("beta", 1).join("secrets.img")
    );
}

#[test]
fn bad_input_and_unknown_tenants_stage_nothing() {
    let (rec, node) = setup();
    stage(&node, "acme", vec![file("a", "1")]).unwrap();
    let before = rec.calls().len();
    for bad in [
        vec![file(".hidden", "x")],
        vec![file("a/b", "x")],
        vec![file("a", "x"), file("a", "y")],
        vec![],
    ] {
        let e = stage(&node, "acme", bad).unwrap_err();
        assert!(matches!(e, AgentError::SecretsInput(_)), "{e}");
    }
    let e = stage(&node, "nosuch", vec![file("a", "1")]).unwrap_err();
    assert!(matches!(e, AgentError::UnknownTenant { .. }), "{e}");
    assert!(
        !rec.calls()[before..].iter().any(|c| c.mutates()),
        "nothing changed: {:#?}",
        &rec.calls()[before..]
    );
    assert!(
        rec.file(&gen_dir("acme", 1).join("manifest.json"))
            .is_some()
    );
}

#[test]
fn no_value_reaches_a_plan_a_record_or_an_audit_line() {
    let (rec, node) = setup();
    stage(&node, "acme", vec![file("db-password", CANARY)]).unwrap();
    let (_, plan) = rotate(&node, "acme");
    let plan = plan.unwrap();
    let text = serde_json::to_string(&plan).unwrap() + &mvm::plan::render::render(&plan, false);
    assert!(!text.contains(CANARY));
    assert!(text.contains("(sensitive) generation 1, 1 file"));
    // Every file the model holds outside the generation's own files: the
    // records, the audit logs, the revisions, the manifest and the key.
    for path in rec.paths() {
        if path.starts_with(gen_dir("acme", 1).join("files")) {
            continue;
        }
        if let Some(bytes) = rec.file(&path) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(CANARY),
                "{} holds the value",
                path.display()
            );
        }
    }
    // The set and the start are in the tenant's audit log, with the
    // generation, the file's name and size, and the fingerprint.
    let log = rec
        .file(&Path::new(STATE).join("tenants/acme/audit.log"))
        .unwrap();
    let log = String::from_utf8(log).unwrap();
    let set_line = log.lines().find(|l| l.contains("secrets-set")).unwrap();
    assert!(set_line.contains("db-password (27 bytes)"), "{set_line}");
    assert!(set_line.contains("hmac-sha256:"), "{set_line}");
    let start = log.lines().rfind(|l| l.contains("tenant.acme.vm")).unwrap();
    assert!(
        start.contains("(sensitive) generation 1, 1 file"),
        "{start}"
    );
    assert!(start.contains("db-password (27 bytes)"), "{start}");
}

#[test]
fn a_failed_start_keeps_both_generations_and_a_rotate_again_converges() {
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let (rec, node) = setup_on(RecordingHost::new().failing(move |c| {
        f.load(std::sync::atomic::Ordering::SeqCst) && matches!(c, Call::Launch { .. })
    }));
    stage(&node, "acme", vec![file("a", "1")]).unwrap();
    rotate(&node, "acme");
    stage(&node, "acme", vec![file("a", "2")]).unwrap();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let (out, _) = rotate(&node, "acme");
    assert!(
        matches!(out, Outcome::Applied(r) if !r.success()),
        "the start fails"
    );
    let here = |g| {
        rec.file(&gen_dir("acme", g).join("manifest.json"))
            .is_some()
    };
    assert!(here(1) && here(2), "a failed start keeps both generations");
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let (out, plan) = rotate(&node, "acme");
    assert!(matches!(out, Outcome::Applied(r) if r.success()));
    let vm = plan
        .unwrap()
        .resource_changes
        .into_iter()
        .find(|c| c.is_change())
        .unwrap();
    assert_eq!(
        vm.actions,
        Action::Create,
        "the VM is gone after the failed start"
    );
    assert_eq!(
        vm.after.unwrap()["secrets"],
        "(sensitive) generation 2, 1 file"
    );
    assert!(!here(1) && here(2), "once it runs on 2, 1 goes");
}
