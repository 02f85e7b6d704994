//! Shipping pieces an operator installs with: shell completions and
//! manual pages generate, the annotated example node.toml loads and sets
//! every key, and `mvm config show` says where each value comes from.

mod common;

use common::{run, settings};

#[test]
fn completions_generate_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = run(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        for word in ["agent", "fleet", "secrets", "rotate", "reconcile"] {
            assert!(r.stdout.contains(word), "{shell} completions lack {word}");
        }
    }
    // The bash script is valid bash.
    let r = run(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mvm.bash");
    std::fs::write(&f, &r.stdout).unwrap();
    let ok = std::process::Command::new("bash")
        .arg("-n")
        .arg(&f)
        .status()
        .unwrap();
    assert!(ok.success(), "bash -n refused the completion script");
    assert_ne!(
        run(&["completions", "tcsh"]).code,
        0,
        "an unknown shell is refused"
    );
}

#[test]
fn manual_pages_render_for_every_command() {
    let r = run(&["man"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(".TH mvm 1"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    let r = run(&["man", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for page in [
        "mvm.1",
        "mvm-agent-run.1",
        "mvm-tenant-secrets-set.1",
        "mvm-fleet-status.1",
        "mvm-config-show.1",
    ] {
        let text =
            std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|_| panic!("no {page}"));
        assert!(text.contains(".TH "), "{page} is not a manual page");
    }
    let missing = run(&["man", "--out", "/nonexistent/dir"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
}

#[test]
fn the_example_node_toml_loads_and_sets_every_key() {
    let r = run(&["--config", "examples/node.toml", "config", "show", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let defaults: Vec<&str> = doc["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["from"] != "examples/node.toml")
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    assert!(
        defaults.is_empty(),
        "examples/node.toml does not document {defaults:?}"
    );
    // And it plans: the node accepts it.
    let r = run(&[
        "--config",
        "examples/node.toml",
        "agent",
        "plan",
        "--desired",
        "fixtures/desired/example.json",
        "--observed",
        "fixtures/observed/fresh.json",
    ]);
    assert!(r.code == 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn config_show_says_where_each_value_comes_from() {
    let args = ["--config", "fixtures/node/partial.toml", "config", "show"];
    settings().bind(|| insta::assert_snapshot!("config-show", run(&args).snapshot(&args)));
}
