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

/// `tenant revisions`: none yet is said plainly; a damaged file is an
/// error naming it, with a hint; the newest start comes first.
#[test]
fn revisions_are_listed_newest_first() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    std::fs::create_dir_all(state.join("tenants/acme")).unwrap();
    let config = work.path().join("node.toml");
    std::fs::write(&config, format!("state_dir = \"{}\"\n", state.display())).unwrap();
    let revs = |args: &[&str]| {
        let mut all = vec![
            "--config",
            config.to_str().unwrap(),
            "tenant",
            "revisions",
            "acme",
        ];
        all.extend_from_slice(args);
        run_cmd(mvm().args(&all))
    };
    let r = revs(&[]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "acme has no VM start recorded.\n")
    );
    let file = state.join("tenants/acme/revisions.json");
    std::fs::write(&file, "{not json").unwrap();
    let r = revs(&[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("revisions.json: not what mvm wrote"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint: it was edited or damaged"),
        "{}",
        r.stderr
    );
    let one = |at: &str, rev: &str| serde_json::json!({"started_at": at, "flake_ref": format!("github:acme/app?rev={rev}"), "lock": "sha256-abcdefghijklmnopqrstuvwxyz", "profile": "minimal", "files": [], "fc_config_sha256": "0123456789abcdef", "seccomp": "baseline", "jailer": true});
    std::fs::write(
        &file,
        serde_json::to_string(&[
            one("2026-11-30T10:00:00Z", "old"),
            one("2026-12-01T10:00:00Z", "new"),
        ])
        .unwrap(),
    )
    .unwrap();
    let r = revs(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("STARTED"), "{}", r.stdout);
    assert!(
        lines[1].contains("rev=new") && lines[2].contains("rev=old"),
        "{}",
        r.stdout
    );
    assert!(
        lines[1].contains("sha256-abcdefghijkl…") && lines[1].contains("0123456789ab "),
        "{}",
        r.stdout
    );
    let j = revs(&["--json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

/// A bug fixed: at a terminal, `mvm agent reconcile … | tee log` applied
/// without asking (it asked only when stdin and stdout were terminals).
/// It asks whenever stdin is a terminal — on stderr when stdout is piped —
/// and "no" changes nothing.
#[test]
fn reconcile_asks_whenever_stdin_is_a_terminal() {
    if std::process::Command::new("python3")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: needs python3 for a pseudo-terminal");
        return;
    }
    let (dir, config) = common::scratch_node();
    let state = dir.path().join("state");
    let script = r#"
import os, pty, subprocess, sys
m, s = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=s, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
os.close(s)
os.write(m, b"no\n")
out, err = p.communicate(timeout=60)
sys.stdout.write(out.decode()); sys.stderr.write(err.decode()); sys.exit(p.returncode)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_mvm"))
        .args(["--config", config.to_str().unwrap(), "agent", "reconcile"])
        .args([
            "--desired",
            "fixtures/desired/example.json",
            "--target",
            "tenant.*.dirs",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("MVM_CONFIG")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("Do you want to perform these actions?"),
        "no question on stderr:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Apply cancelled."), "{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !state.join("tenants").exists(),
        "something was applied after 'no'"
    );
}

/// A bug fixed: without a terminal, a reconcile's warnings were printed
/// twice (in the plan on stdout, again on stderr), and a journal that
/// merges the two showed each twice. Once when both streams are one file;
/// once on each when they are apart.
#[test]
fn warnings_are_read_once_per_destination() {
    let (dir, config) = common::scratch_node();
    let args = |cmd: &mut std::process::Command| {
        cmd.args(["--config", config.to_str().unwrap(), "agent", "reconcile"])
            .args([
                "--desired",
                "fixtures/desired/example.json",
                "--target",
                "tenant.*.dirs",
            ])
            .stdin(std::process::Stdio::null());
    };
    let log = dir.path().join("merged.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = common::mvm();
    args(&mut cmd);
    cmd.stdout(file.try_clone().unwrap()).stderr(file);
    assert!(cmd.status().unwrap().success());
    let merged = std::fs::read_to_string(&log).unwrap();
    let warning = "resource targeting is in effect";
    assert_eq!(merged.matches(warning).count(), 1, "{merged}");
    // Apart: once on each, so stderr alone (an agent's error log) has it.
    let mut cmd = common::mvm();
    args(&mut cmd);
    let r = common::run_cmd(&mut cmd);
    assert_eq!(r.stdout.matches(warning).count(), 1, "{}", r.stdout);
    assert_eq!(r.stderr.matches(warning).count(), 1, "{}", r.stderr);
}

/// A bug fixed: the suite left directories in /tmp that `rm -rf` as root
/// could not remove (append-only audit logs). A scratch dir a reconcile
/// wrote into is gone once the test is done with it.
#[test]
fn a_reconciled_scratch_dir_is_removed() {
    let (dir, config) = common::scratch_node();
    let path = dir.path().to_path_buf();
    let r = common::run_cmd(
        common::mvm()
            .args(["--config", config.to_str().unwrap(), "agent", "reconcile"])
            .args([
                "--desired",
                "fixtures/desired/example.json",
                "--target",
                "tenant.acme.dirs",
            ])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(path.join("state/tenants/acme/audit.log").exists());
    drop(dir);
    assert!(!path.exists(), "{} was left behind", path.display());
}

/// A bug fixed: `tenant stop` of a VM that is not running reconciled the
/// whole tenant — `+ artifact`, `+ jail`, a Nix build, `Apply failed.`.
/// It touches only the VM: nothing to stop is said, exit 0, no build.
#[test]
fn stopping_a_stopped_vm_builds_nothing() {
    let (dir, config) = common::scratch_node();
    let cfg = config.to_str().unwrap();
    let r = common::run_cmd(
        common::mvm()
            .args([
                "--config",
                cfg,
                "agent",
                "reconcile",
                "--desired",
                "fixtures/desired/example.json",
            ])
            .args(["--target", "tenant.*.dirs"])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = common::run_cmd(
        common::mvm()
            .args(["--config", cfg, "tenant", "stop", "acme"])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("Tenant acme's VM is not running: nothing to stop."),
        "{}",
        r.stdout
    );
    for never in ["tenant.acme.artifact", "tenant.acme.jail", "Apply failed"] {
        assert!(!r.stdout.contains(never), "{never}: {}", r.stdout);
    }
    assert!(
        std::fs::read_to_string(dir.path().join("state/desired.json"))
            .unwrap()
            .contains("\"stopped\""),
        "the stop is not remembered"
    );
}

/// `agent reconcile --json` and `tenant stop --json`: one JSON document on
/// stdout (the plan and progress on stderr) — per resource its action,
/// result, error and duration, and the summary.
#[test]
fn reconcile_and_stop_report_their_result_as_json() {
    let (_dir, config) = common::scratch_node();
    let cfg = config.to_str().unwrap();
    let reconcile = || {
        common::run_cmd(
            common::mvm()
                .args(["--config", cfg, "agent", "reconcile", "--json"])
                .args([
                    "--desired",
                    "fixtures/desired/example.json",
                    "--target",
                    "tenant.*.dirs",
                ])
                .stdin(std::process::Stdio::null()),
        )
    };
    let r = reconcile();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).expect("stdout is one JSON document");
    assert_eq!(v["outcome"], "applied", "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["summary"]["added"], 3, "{v}");
    let res = v["resources"].as_array().unwrap();
    assert_eq!(res.len(), 3, "{v}");
    for x in res {
        assert_eq!(x["result"], "ok", "{x}");
        assert_eq!(x["actions"], serde_json::json!(["create"]), "{x}");
        assert!(x["address"].as_str().unwrap().ends_with(".dirs"), "{x}");
        assert!(x["duration_ms"].is_u64(), "{x}");
    }
    assert!(
        r.stderr.contains("tenant.acme.dirs will be created"),
        "the plan is not on stderr: {}",
        r.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&reconcile().stdout).unwrap();
    assert_eq!(v["outcome"], "no_changes", "{v}");
    let r = common::run_cmd(
        common::mvm()
            .args(["--config", cfg, "tenant", "stop", "acme", "--json"])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["outcome"], "no_changes", "{v}");
}

/// Errors that misled a new user: `agent apply` (Terraform's word) with a
/// tip; `agent reconcile` with nothing naming `--plan` too; `metadata serve
/// --state-dir` of a directory that is not there; `tenant audit` and
/// `revisions` on a node never reconciled (was `cannot list …: not found`
/// and a root/permissions hint).
#[test]
fn errors_a_new_user_meets_say_what_to_do() {
    let r = common::run(&["agent", "apply", "--desired", "d.json"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("there is no `mvm agent apply`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: Terraform's apply is `mvm agent reconcile"),
        "{}",
        r.stderr
    );
    let r = common::run(&["agent", "reconcile"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--desired <FILE>|--plan <FILE>"),
        "{}",
        r.stderr
    );
    let r = common::run(&[
        "metadata",
        "serve",
        "--state-dir",
        "/nonexistent/state",
        "--listen",
        "127.0.0.1:9",
        "--rate",
        "1",
        "--burst",
        "1",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("--state-dir /nonexistent/state: not a directory"),
        "{}",
        r.stderr
    );
    let dir = common::scratch();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!("state_dir = \"{}\"\n", dir.path().join("state").display()),
    )
    .unwrap();
    for cmd in ["audit", "revisions"] {
        let r = common::run(&["--config", config.to_str().unwrap(), "tenant", cmd, "acme"]);
        assert_eq!(r.code, 1, "{cmd}");
        assert!(
            r.stderr
                .contains("no tenant acme on this node: its state dir")
                && r.stderr
                    .contains("does not exist (nothing was reconciled here)"),
            "{cmd}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("runs as root"), "{cmd}: {}", r.stderr);
    }
}
