//! `mvm agent plan` against the fixture matrix, snapshotted through the real
//! binary: every desired × observed case an operator meets in review.

mod common;

use common::{run, settings};

/// (snapshot name, desired fixture, observed fixture, extra flags)
const MATRIX: &[(&str, &str, &str, &[&str])] = &[
    ("fresh-host", "example", "fresh", &[]),
    ("converged-no-changes", "example", "converged", &[]),
    ("new-revision-replaces-vm", "new-revision", "converged", &[]),
    ("vcpus-change", "vcpus", "converged", &[]),
    ("tenant-stopped", "stopped", "converged", &[]),
    ("tenant-removed-kept", "removed", "converged", &[]),
    (
        "tenant-removed-pruned",
        "removed",
        "converged",
        &["--prune"],
    ),
    ("metadata-disabled", "no-metadata", "converged", &[]),
    ("empty-desired-pruned", "empty", "converged", &["--prune"]),
    ("drifted-host", "example", "drifted", &[]),
    ("hybrid-cgroup-host", "example", "hybrid", &[]),
    ("fresh-host-json", "example", "fresh", &["--json"]),
    (
        "new-revision-json",
        "new-revision",
        "converged",
        &["--json"],
    ),
];

#[test]
fn plan_matrix() {
    for (name, desired, observed, extra) in MATRIX {
        let desired = format!("fixtures/desired/{desired}.json");
        let observed = format!("fixtures/observed/{observed}.json");
        let mut args = vec![
            "agent",
            "plan",
            "--desired",
            &desired,
            "--observed",
            &observed,
        ];
        args.extend_from_slice(extra);
        let r = run(&args);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        settings().bind(|| insta::assert_snapshot!(*name, r.snapshot(&args)));
    }
}

#[test]
fn detailed_exitcode_is_0_2_1() {
    let plan = |desired: &str, observed: &str| {
        run(&[
            "agent",
            "plan",
            "--detailed-exitcode",
            "--desired",
            &format!("fixtures/{desired}"),
            "--observed",
            &format!("fixtures/observed/{observed}.json"),
        ])
        .code
    };
    assert_eq!(plan("desired/example.json", "converged"), 0);
    assert_eq!(plan("desired/vcpus.json", "converged"), 2);
    assert_eq!(plan("bad/desired-vcpus-zero.json", "converged"), 1);
    // Without the flag, changes still exit 0.
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        "fixtures/desired/vcpus.json",
        "--observed",
        "fixtures/observed/converged.json",
    ]);
    assert_eq!(r.code, 0);
}

#[test]
fn kept_tenant_ip_cannot_be_taken() {
    // initech is kept on the node (not pruned); a new tenant asking for its
    // recorded IP must be refused, not silently share it.
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired.json");
    std::fs::write(
        &desired,
        r#"{"tenants": [{"tenant_id": "hooli", "flake_ref": "github:hooli/x", "profile": "minimal",
            "vcpus": 1, "mem_mib": 256, "state": "running", "ip": "10.200.0.3"}]}"#,
    )
    .unwrap();
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        desired.to_str().unwrap(),
        "--observed",
        "fixtures/observed/converged.json",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "tenant hooli asks for IP 10.200.0.3, which tenant initech on this node holds"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
}

#[test]
fn colors_only_when_forced_or_on_a_terminal() {
    let args = [
        "agent",
        "plan",
        "--desired",
        "fixtures/desired/vcpus.json",
        "--observed",
        "fixtures/observed/converged.json",
    ];
    let plain = run(&args);
    assert!(!plain.stdout.contains('\u{1b}'), "no escapes when piped");
    let colored = common::run_cmd(common::mvm().args(args).env("CLICOLOR_FORCE", "1"));
    assert!(colored.stdout.contains("\u{1b}["), "CLICOLOR_FORCE colors");
    let off = common::run_cmd(
        common::mvm()
            .args(args)
            .arg("--no-color")
            .env("CLICOLOR_FORCE", "1"),
    );
    assert!(!off.stdout.contains('\u{1b}'), "--no-color wins");
    let off = common::run_cmd(
        common::mvm()
            .args(args)
            .env("CLICOLOR_FORCE", "1")
            .env("NO_COLOR", "1"),
    );
    assert!(!off.stdout.contains('\u{1b}'), "NO_COLOR wins");
}

#[test]
fn json_plan_is_versioned_and_complete() {
    let r = run(&[
        "agent",
        "plan",
        "--json",
        "--desired",
        "fixtures/desired/new-revision.json",
        "--observed",
        "fixtures/observed/converged.json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["format_version"], "1.0");
    assert!(
        v["observed_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let changes = v["resource_changes"].as_array().unwrap();
    // No-ops are listed too, like Terraform's JSON plan.
    assert!(
        changes
            .iter()
            .any(|c| c["actions"] == serde_json::json!(["no-op"]))
    );
    let vm = changes
        .iter()
        .find(|c| c["address"] == "tenant.acme.vm")
        .unwrap();
    assert_eq!(vm["actions"], serde_json::json!(["delete", "create"]));
    assert_eq!(vm["action_reason"]["kind"], "replace_because_cannot_update");
    assert!(
        vm["replace_paths"]
            .as_array()
            .unwrap()
            .contains(&"flake_ref".into())
    );
    assert!(
        vm["after_unknown"]
            .as_array()
            .unwrap()
            .contains(&"pid".into())
    );
    // The plan round-trips: what apply will read is what plan wrote.
    let back: mvm::plan::Plan = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), v);
}

#[test]
fn config_precedence_flag_over_env() {
    let dir = tempfile::tempdir().unwrap();
    let env_cfg = dir.path().join("env.toml");
    let flag_cfg = dir.path().join("flag.toml");
    std::fs::write(&env_cfg, "[bridge]\nname = \"envbr\"\n").unwrap();
    std::fs::write(&flag_cfg, "[bridge]\nname = \"flagbr\"\n").unwrap();
    let args = [
        "agent",
        "plan",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/fresh.json",
    ];
    let r = common::run_cmd(common::mvm().args(args).env("MVM_CONFIG", &env_cfg));
    assert!(r.stdout.contains("\"envbr\""), "{}", r.stderr);
    let r = common::run_cmd(
        common::mvm()
            .args(args)
            .arg("--config")
            .arg(&flag_cfg)
            .env("MVM_CONFIG", &env_cfg),
    );
    assert!(
        r.stdout.contains("\"flagbr\"") && !r.stdout.contains("envbr"),
        "{}",
        r.stderr
    );
}

#[test]
fn lost_record_is_rewritten_not_the_tree_destroyed() {
    // A tenant dir whose tenant.json vanished: the plan rewrites the record
    // in place instead of replacing (deleting) the tenant's tree.
    let text = std::fs::read_to_string("fixtures/observed/converged.json").unwrap();
    let mut obs: serde_json::Value = serde_json::from_str(&text).unwrap();
    obs["tenants"]["acme"]["record"] = serde_json::Value::Null;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observed.json");
    std::fs::write(&path, obs.to_string()).unwrap();
    let r = run(&[
        "agent",
        "plan",
        "--json",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        path.to_str().unwrap(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let dirs = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "tenant.acme.dirs")
        .unwrap();
    assert_eq!(dirs["actions"], serde_json::json!(["update"]), "{dirs}");
    // The VM, whose launch record is gone, is replaced: nothing vouches for it.
    let vm = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "tenant.acme.vm")
        .unwrap();
    assert_eq!(
        vm["actions"],
        serde_json::json!(["delete", "create"]),
        "{vm}"
    );
}

/// A tenant kept on the node (absent from desired.json, no --prune) keeps
/// what it depends on: globex has metadata on, so node.metadata stays.
#[test]
fn kept_tenant_keeps_the_metadata_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired.json");
    std::fs::write(
        &desired,
        r#"{"tenants": [{"tenant_id": "acme", "flake_ref": "github:acme/app?rev=1a2b3c4d5e6fb58fd099373dbd7e53ed13e7357e",
            "profile": "minimal", "vcpus": 2, "mem_mib": 1024, "state": "running",
            "ip": "10.200.0.10", "mac": "02:00:0a:c8:00:0a"}]}"#,
    )
    .unwrap();
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "agent",
            "plan",
            "--json",
            "--desired",
            desired.to_str().unwrap(),
            "--observed",
            "fixtures/observed/converged.json",
        ];
        args.extend_from_slice(extra);
        let r = run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["resource_changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == "node.metadata")
            .map(|c| c["actions"].clone())
    };
    assert_eq!(plan(&[]), Some(serde_json::json!(["no-op"])));
    // Pruned, nothing needs it any more.
    assert_eq!(plan(&["--prune"]), Some(serde_json::json!(["delete"])));
}

/// A target that matches nothing says so, with the closest address.
/// A bug fixed: a mistyped tenant in `--target` printed "No changes. The
/// node matches the desired state." and `--detailed-exitcode` exited 0, so
/// a CI gate passed with changes pending. It is an error now; a wildcard
/// that matches nothing is said; a targeted plan says what it covers.
#[test]
fn target_matching_nothing_is_an_error_and_targeted_plans_say_so() {
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/drifted.json",
        "--target",
        "tenant.acm.cgroup",
        "--detailed-exitcode",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "--target tenant.acm.cgroup matches no resource in desired.json or on this node; did you mean tenant.acme.cgroup?"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint: check the tenant id"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("No changes"), "{}", r.stdout);
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/converged.json",
        "--target",
        "tenant.acme.cgroup",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("No changes. The targeted resources (tenant.acme.cgroup, and what they depend on) match the desired state; the rest of the node was not planned."),
        "{}",
        r.stdout
    );
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/drifted.json",
        "--target",
        "tenant.*.tap",
    ]);
    assert!(
        r.stdout.contains("to destroy (only tenant.*.tap and what they depend on; the rest of the node was not planned)."),
        "{}",
        r.stdout
    );
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        "x.json",
        "--target",
        "tenant.acme.vms",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("tenant kinds are dirs, artifact, cgroup"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint: targets take the forms"),
        "{}",
        r.stderr
    );
}

/// Usage errors exit 1, never 2 (which --detailed-exitcode reserves for
/// "changes pending"); --help exits 0.
#[test]
fn usage_errors_exit_1() {
    let r = run(&[
        "agent",
        "plan",
        "--detailed-exitcode",
        "--desried",
        "x.json",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("--desried"), "{}", r.stderr);
    assert_eq!(run(&["agent", "plan", "--help"]).code, 0);
}

/// `--out` into a missing directory names the target and the real cause.
#[test]
fn plan_out_names_the_target_and_the_cause() {
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/fresh.json",
        "--out",
        "/nonexistent/dir/p.json",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot write the plan to /nonexistent/dir/p.json: the directory /nonexistent/dir does not exist"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: check that the directory /nonexistent/dir exists"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(".tmp") && !r.stderr.contains("backup"),
        "{}",
        r.stderr
    );
}

/// `mvm tenant audit` of an unknown tenant names it and says where to look.
#[test]
fn audit_of_an_unknown_tenant_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, format!("state_dir = \"{}\"\n", dir.path().display())).unwrap();
    let r = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "tenant",
        "audit",
        "nosuch",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no tenant nosuch on this node"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: `mvm agent observe` lists the tenants"),
        "{}",
        r.stderr
    );
}

/// A cpuset naming CPUs the host does not have is warned about.
#[test]
fn cpuset_beyond_the_host_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired.json");
    std::fs::write(
        &desired,
        r#"{"tenants": [{"tenant_id": "acme", "flake_ref": "github:acme/app", "profile": "minimal",
            "vcpus": 2, "mem_mib": 256, "state": "running", "cpuset": "2-3"}]}"#,
    )
    .unwrap();
    let observed = dir.path().join("observed.json");
    let mut o: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/observed/fresh.json").unwrap())
            .unwrap();
    o["cpus_online"] = "0-2".into();
    std::fs::write(&observed, o.to_string()).unwrap();
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        desired.to_str().unwrap(),
        "--observed",
        observed.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "tenant acme pins cpuset 2-3, but CPU 3 is not online on this host (online: 0-2)"
        ),
        "{}",
        r.stdout
    );
    // A bug fixed: on a hybrid host that lets limits go (no cpuset
    // controller), the plan writes no cpuset, yet the warning said writing
    // it would fail. It says the pin is not enforced instead.
    let hybrid: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/observed/hybrid.json").unwrap())
            .unwrap();
    o["cgroup"] = hybrid["cgroup"].clone();
    std::fs::write(&observed, o.to_string()).unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[cgroup]\nallow_missing_controllers = true\n").unwrap();
    let r = run(&[
        "--config",
        config.to_str().unwrap(),
        "agent",
        "plan",
        "--desired",
        desired.to_str().unwrap(),
        "--observed",
        observed.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains("writing cpuset.cpus will fail"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("cpuset.cpus ="),
        "the plan writes a cpuset: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("cpuset")
            && r.stdout
                .contains("are missing and cgroup.allow_missing_controllers is set"),
        "{}",
        r.stdout
    );
}

/// A saved plan edited by hand is decoded into each kind's typed
/// attributes before anything is applied: a uid of 2^32 is refused with
/// the address and attribute, never truncated to 0.
#[test]
fn edited_saved_plan_is_refused_with_the_attribute() {
    let node = mvm::spec::NodeConfig::default_config();
    let observed =
        mvm::agent::load_observed(std::path::Path::new("fixtures/observed/fresh.json")).unwrap();
    let desired =
        mvm::agent::load_desired(&node, std::path::Path::new("fixtures/desired/example.json"))
            .unwrap();
    let plan = mvm::plan::plan(&desired, &node, &observed, Default::default()).unwrap();
    let mut v = serde_json::to_value(&plan).unwrap();
    let dirs = v["resource_changes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["address"] == "tenant.acme.dirs")
        .unwrap();
    dirs["after"]["uid"] = serde_json::json!(4_294_967_296u64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let e = mvm::agent::load_saved_plan(&path, &node, &observed)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tenant.acme.dirs: the plan's attribute uid is not valid"),
        "{e}"
    );
}

/// `mvm net verify` on captured observations: a converged node passes
/// every check (JSON, stable), a drifted one names each failing item.
#[test]
fn net_verify_names_each_failing_item() {
    for (name, observed, json, code) in [
        ("net-verify-converged-json", "converged", true, 0),
        ("net-verify-drifted", "drifted", false, 1),
    ] {
        let path = format!("fixtures/observed/{observed}.json");
        let mut args = vec![
            "net",
            "verify",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            &path,
        ];
        if json {
            args.push("--json");
        }
        let r = run(&args);
        assert_eq!(r.code, code, "{}", r.stderr);
        common::settings().bind(|| insta::assert_snapshot!(name, r.snapshot(&args)));
    }
}

/// A flake reference that pins nothing (no rev=, no lock) is warned about:
/// each build may take a newer commit.
#[test]
fn an_unpinned_flake_ref_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d.json");
    std::fs::write(
        &d,
        r#"{"tenants": [{"tenant_id": "un", "flake_ref": "github:o/r", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}]}"#,
    )
    .unwrap();
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        d.to_str().unwrap(),
        "--observed",
        "fixtures/observed/fresh.json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("tenant un's flake_ref \"github:o/r\" is not pinned (no rev=, no lock)"),
        "{}",
        r.stdout
    );
}

/// A bug fixed: an observation captured under a node's config, planned
/// without `--config`, was silently planned with the defaults — another
/// node. The observation records its config; another one is refused,
/// naming both.
#[test]
fn an_observation_is_planned_only_with_its_own_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[bridge]\nname = \"br-x\"\nsubnet = \"10.9.0.0/24\"\ngateway = \"10.9.0.1\"\ndns = [\"10.9.0.1\"]\n").unwrap();
    let observed = dir.path().join("observed.json");
    let r = run(&[
        "--config",
        config.to_str().unwrap(),
        "agent",
        "observe",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::write(&observed, &r.stdout).unwrap();
    let desired = dir.path().join("d.json");
    std::fs::write(&desired, r#"{"tenants": []}"#).unwrap();
    let args = [
        "agent",
        "plan",
        "--desired",
        desired.to_str().unwrap(),
        "--observed",
        observed.to_str().unwrap(),
    ];
    let r = run(&args);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("this observation was made under another node config"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint: plan with the node's own config"),
        "{}",
        r.stderr
    );
    let mut with = vec!["--config", config.to_str().unwrap()];
    with.extend(args);
    let r = run(&with);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
