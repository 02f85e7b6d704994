//! `mvm node info` through the real binary, against a throwaway state dir
//! and node.toml: identity, inventory, and the versions of the real
//! Firecracker and jailer builds when `../shared/firecracker/` has them.

mod common;

use common::run;
use std::path::Path;

fn node_toml(dir: &Path, bin: &Path) -> std::path::PathBuf {
    let p = dir.join("node.toml");
    std::fs::write(
        &p,
        format!(
            "state_dir = \"{}\"\n[firecracker]\nbinary = \"{}\"\njailer = \"{}\"\nstrict_seccomp_filter = \"/etc/mvm/seccomp-strict.bpf\"\nstop_timeout_secs = 10\n",
            dir.join("state").display(),
            bin.join("firecracker").display(),
            bin.join("jailer").display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn node_info_reports_identity_and_inventory() {
    let work = tempfile::tempdir().unwrap();
    // No Firecracker here: the inventory says so (the versions are
    // checked by the test below, which needs the binaries).
    let bin = work.path().join("no-firecracker");
    let config = node_toml(work.path(), &bin);
    let config = config.to_str().unwrap();

    let r = run(&["--config", config, "node", "info", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["mvm_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["node_id"], serde_json::Value::Null);
    assert_eq!(v["config"], format!("{config} (--config)"));
    assert_eq!(
        v["state_dir"],
        work.path().join("state").display().to_string()
    );
    assert_eq!(v["tenants"]["on_node"], 0);
    assert_eq!(v["metadata"]["listen"], "10.200.0.1:8775");
    assert!(!v["kernel"].as_str().unwrap().is_empty());
    assert!(v["memory_mib"].as_u64().unwrap() > 0);
    assert_eq!(v["binaries"]["firecracker"]["installed"], false);

    // With a node id, the text form names it first; it is aligned.
    std::fs::create_dir_all(work.path().join("state")).unwrap();
    std::fs::write(
        work.path().join("state/node-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let t = run(&["--config", config, "node", "info"]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let mut lines = t.stdout.lines();
    assert_eq!(lines.next(), Some("Node 0123456789abcdef0123456789abcdef"));
    let value_columns: std::collections::BTreeSet<usize> = lines
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.trim_start().starts_with("missing"))
        .map(|l| {
            let key_end = 2 + l[2..].find("  ").unwrap();
            key_end + l[key_end..].find(|c: char| c != ' ').unwrap()
        })
        .collect();
    assert_eq!(value_columns.len(), 1, "{}", t.stdout);
    assert!(!t.stdout.contains('\u{1b}'), "colors when not a terminal");
}

/// The Firecracker and jailer builds report their versions in the
/// inventory. Needs them (`MVM_TEST_FIRECRACKER_DIR`, default
/// `../shared/firecracker`); `scripts/test.sh` filters this test out,
/// visibly, where they are absent.
#[test]
fn node_info_reports_the_firecracker_and_jailer_versions() {
    use common::host::{Need, firecracker_dir, require};
    if !require(
        "node_info_reports_the_firecracker_and_jailer_versions",
        &[Need::Firecracker],
    ) {
        return;
    }
    let bin = firecracker_dir().join("bin");
    let work = tempfile::tempdir().unwrap();
    let config = node_toml(work.path(), &bin.canonicalize().unwrap());
    let r = run(&[
        "--config",
        config.to_str().unwrap(),
        "node",
        "info",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let fc = v["binaries"]["firecracker"]["version"].as_str().unwrap();
    assert!(fc.starts_with("Firecracker v"), "{fc}");
    let jailer = v["binaries"]["jailer"]["version"].as_str().unwrap();
    assert!(jailer.starts_with("Jailer v"), "{jailer}");
}

/// README's "Logs and metrics" table names exactly the series `mvm node
/// metrics` can write (the host test checks a live node carries them all).
#[test]
fn the_readme_documents_every_metric_series() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("\n## Logs and metrics").expect("the section");
    let end = readme[start + 1..]
        .find("\n## ")
        .map_or(readme.len(), |e| start + 1 + e);
    let table: std::collections::BTreeSet<String> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `mvm_"))
        .map(|l| l[3..].split('`').next().unwrap().to_string())
        .collect();
    let series: std::collections::BTreeSet<String> = mvm::agent::metrics::SERIES
        .iter()
        .map(|(n, _, _)| n.to_string())
        .collect();
    assert_eq!(table, series);
    for (name, kind, _) in mvm::agent::metrics::SERIES {
        let row = readme[start..end]
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap();
        assert!(row.contains(&format!("| {kind} |")), "{row}");
    }
}
