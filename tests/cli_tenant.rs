//! `mvm tenant list` and `mvm tenant status` through the real binary
//! against the fixture matrix (offline: `--desired` and `--observed`),
//! snapshotted; and how they read a node that was never reconciled.

mod common;

use common::{mvm, run, run_cmd, settings};

const CASES: &[(&str, &[&str])] = &[
    (
        "tenant-list-converged",
        &[
            "tenant",
            "list",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            "fixtures/observed/converged.json",
        ],
    ),
    (
        "tenant-list-drifted",
        &[
            "tenant",
            "list",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            "fixtures/observed/drifted.json",
        ],
    ),
    (
        "tenant-list-kept",
        &[
            "tenant",
            "list",
            "--desired",
            "fixtures/desired/removed.json",
            "--observed",
            "fixtures/observed/converged.json",
        ],
    ),
    (
        "tenant-list-json",
        &[
            "tenant",
            "list",
            "--json",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            "fixtures/observed/drifted.json",
        ],
    ),
    (
        "tenant-status-drifted",
        &[
            "tenant",
            "status",
            "acme",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            "fixtures/observed/drifted.json",
        ],
    ),
    (
        "tenant-status-fresh",
        &[
            "tenant",
            "status",
            "acme",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            "fixtures/observed/fresh.json",
        ],
    ),
    (
        "tenant-status-json",
        &[
            "tenant",
            "status",
            "globex",
            "--json",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            "fixtures/observed/converged.json",
        ],
    ),
];

#[test]
fn tenant_list_and_status() {
    for (name, args) in CASES {
        let r = run(args);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        settings().bind(|| insta::assert_snapshot!(*name, r.snapshot(args)));
    }
}

#[test]
fn list_counts_what_a_reconcile_would_change() {
    let r = run(&[
        "tenant",
        "list",
        "--json",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/drifted.json",
    ]);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let plan = run(&[
        "agent",
        "plan",
        "--json",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/drifted.json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        let id = row["tenant_id"].as_str().unwrap();
        let changes = plan["resource_changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["address"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("tenant.{id}."))
                    && c["actions"] != serde_json::json!(["no-op"])
            })
            .count();
        assert_eq!(row["pending"], changes, "{id}");
    }
}

#[test]
fn unknown_tenants_and_bad_ids_are_errors_with_a_hint() {
    let r = run(&[
        "tenant",
        "status",
        "nope",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/converged.json",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "error: no tenant nope is desired or on this node\nhint: `mvm tenant list` lists the tenants\n"
    );
    let r = run(&[
        "tenant",
        "status",
        "../etc",
        "--observed",
        "fixtures/observed/converged.json",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: tenant id \"../etc\""),
        "{}",
        r.stderr
    );
}

/// A node never reconciled has no applied desired state: everything on it
/// is listed as kept, nothing fails.
#[test]
fn a_node_never_reconciled_lists_what_is_on_it() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("node.toml");
    std::fs::write(
        &config,
        format!("state_dir = \"{}\"\n", work.path().join("state").display()),
    )
    .unwrap();
    let r = run_cmd(mvm().args([
        "--config",
        config.to_str().unwrap(),
        "tenant",
        "list",
        "--observed",
        "fixtures/observed/converged.json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.matches("kept (not desired)").count(),
        3,
        "{}",
        r.stdout
    );
    let r = run_cmd(mvm().args([
        "--config",
        config.to_str().unwrap(),
        "tenant",
        "list",
        "--observed",
        "fixtures/observed/fresh.json",
    ]));
    assert_eq!(r.stdout, "No tenants are desired or on this node.\n");
}
