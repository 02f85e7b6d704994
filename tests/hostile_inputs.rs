//! Inputs an attacker (or an accident) controls, refused before anything
//! is applied: a saved plan edited by hand, duplicate JSON keys, files that
//! never end or block, lists that explode when expanded. Each case was a
//! finding of a hostile review; none needs root.

mod common;

use common::run;
use mvm::spec::NodeConfig;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn fresh() -> mvm::observed::Observed {
    mvm::agent::load_observed(Path::new("fixtures/observed/fresh.json")).unwrap()
}

/// The example plan as JSON, for editing.
fn plan_json(node: &NodeConfig) -> Value {
    let desired =
        mvm::agent::load_desired(node, Path::new("fixtures/desired/example.json")).unwrap();
    let plan = mvm::plan::plan(&desired, node, &fresh(), Default::default()).unwrap();
    serde_json::to_value(&plan).unwrap()
}

fn change<'a>(v: &'a mut Value, address: &str) -> &'a mut Value {
    v["resource_changes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["address"] == address)
        .unwrap()
}

/// `tenant.acme.nft` pointed at another address or mark, its elements
/// made to match (so only the identity is wrong).
fn retarget_nft(v: &mut Value, ip: Option<&str>, mark: Option<u32>) {
    let a = &mut change(v, "tenant.acme.nft")["after"];
    if let Some(ip) = ip {
        a["ip"] = json!(ip);
    }
    if let Some(mark) = mark {
        a["mark"] = json!(mark);
    }
    a["elements"] = json!(mvm::net::ruleset::tenant_element_lines(
        a["tap"].as_str().unwrap(),
        a["mac"].as_str().unwrap().parse().unwrap(),
        a["ip"].as_str().unwrap().parse().unwrap(),
        a["mark"].as_u64().unwrap() as u32,
        a["metadata"].as_bool().unwrap(),
        a["ssh_from_gateway"].as_bool().unwrap(),
    ));
}

fn load(text: &str, node: &NodeConfig) -> Result<mvm::plan::Plan, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, text).unwrap();
    mvm::agent::load_saved_plan(&path, node, &fresh()).map_err(|e| e.to_string())
}

/// Each edit a reviewer would not see coming, and what the refusal says.
#[test]
fn hand_edited_saved_plans_are_refused() {
    let node = NodeConfig::default_config();
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "cgroup mount pointed elsewhere",
            |v| v["apply_context"]["cgroup_mount"] = json!("/tmp/evil"),
            "apply_context.cgroup_mount is /tmp/evil",
        ),
        (
            "dirs mode 4777",
            |v| change(v, "tenant.acme.dirs")["after"]["mode"] = json!("4777"),
            "mode is \"4777\"",
        ),
        (
            "dirs uid 0",
            |v| change(v, "tenant.acme.dirs")["after"]["uid"] = json!(0),
            "uid 0 is outside the tenant range",
        ),
        (
            "dirs uid of another tenant",
            |v| change(v, "tenant.acme.dirs")["after"]["uid"] = json!(100001),
            "would both have uid 100001",
        ),
        (
            "dirs ip outside the subnet",
            |v| change(v, "tenant.acme.dirs")["after"]["ip"] = json!("192.168.1.5"),
            "is outside the node subnet",
        ),
        (
            "dirs path elsewhere",
            |v| change(v, "tenant.acme.dirs")["after"]["path"] = json!("/etc"),
            "path is \"/etc\"",
        ),
        (
            "secrets mode 0777",
            |v| change(v, "tenant.acme.secrets")["after"]["mode"] = json!("0777"),
            "mode is \"0777\"",
        ),
        (
            "secrets size 0 (unlimited)",
            |v| change(v, "tenant.acme.secrets")["after"]["size"] = json!("0"),
            "not a tmpfs size",
        ),
        (
            "secrets size huge",
            |v| change(v, "tenant.acme.secrets")["after"]["size"] = json!("900g"),
            "size is \"900g\"",
        ),
        (
            "cgroup limit with a newline",
            |v| change(v, "tenant.acme.cgroup")["after"]["pids.max"] = json!("max\n+memory"),
            "pids.max",
        ),
        (
            "cgroup memory beyond any tenant",
            |v| change(v, "tenant.acme.cgroup")["after"]["memory.max"] = json!("1"),
            "memory.max \"1\"",
        ),
        (
            "cgroup path elsewhere",
            |v| change(v, "tenant.acme.cgroup")["after"]["path"] = json!("../../x"),
            "path is \"../../x\"",
        ),
        (
            "nft ip a free address that is not the tenant's",
            |v| retarget_nft(v, Some("10.200.0.99"), None),
            "tenant.acme.nft: ip 10.200.0.99 is not tenant acme's (10.200.0.10)",
        ),
        (
            "nft mark a free uid that is not the tenant's",
            |v| retarget_nft(v, None, Some(100050)),
            "uid 100050 is not tenant acme's",
        ),
        (
            "tap neighbour a free address",
            |v| {
                let a = &mut change(v, "tenant.acme.tap")["after"];
                let mac = a["fdb"].as_str().unwrap().to_string();
                a["neighbour"] = json!(format!("10.200.0.99 {mac}"));
            },
            "tenant.acme.tap: ip 10.200.0.99 is not tenant acme's",
        ),
        (
            "unknown format version",
            |v| v["format_version"] = json!("2.0"),
            "format_version \"2.0\"",
        ),
    ];
    for (name, edit, says) in cases {
        let mut v = plan_json(&node);
        edit(&mut v);
        let e = load(&v.to_string(), &node).expect_err(name);
        assert!(e.contains(says), "{name}: {e}");
    }
    // Unedited, it loads.
    load(&plan_json(&node).to_string(), &node).unwrap();
}

#[test]
fn a_saved_plan_with_a_duplicate_key_is_refused() {
    let node = NodeConfig::default_config();
    let text = plan_json(&node).to_string();
    let doubled = text.replacen("\"prune\":false", "\"prune\":false,\"prune\":true", 1);
    assert_ne!(text, doubled);
    let e = load(&doubled, &node).unwrap_err();
    assert!(e.contains("duplicate key \"prune\""), "{e}");
}

/// A bug fixed: `{"tenants":[…acme…],"tenants":[]}` read as no tenants,
/// and with `--prune` destroyed acme.
#[test]
fn duplicate_keys_in_desired_json_are_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("desired.json");
    let acme = r#"{"tenant_id":"acme","flake_ref":"github:a/b","profile":"minimal","vcpus":1,"mem_mib":256,"state":"running"}"#;
    std::fs::write(&p, format!(r#"{{"tenants":[{acme}],"tenants":[]}}"#)).unwrap();
    let r = run(&[
        "agent",
        "plan",
        "--prune",
        "--desired",
        p.to_str().unwrap(),
        "--observed",
        "fixtures/observed/fresh.json",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("duplicate key \"tenants\""),
        "{}",
        r.stderr
    );
    let inner = acme.replace(r#""vcpus":1"#, r#""vcpus":1,"vcpus":2"#);
    std::fs::write(&p, format!(r#"{{"tenants":[{inner}]}}"#)).unwrap();
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        p.to_str().unwrap(),
        "--observed",
        "fixtures/observed/fresh.json",
    ]);
    assert!(
        r.stderr.contains("duplicate key \"vcpus\" in tenants[0]"),
        "{}",
        r.stderr
    );
}

/// A bug fixed: `/dev/zero` as `--desired` grew memory without bound; a
/// FIFO hung `plan`. Both are refused at once as not regular files.
#[test]
fn devices_and_fifos_are_refused_without_reading_or_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("desired.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (path, what) in [
        ("/dev/zero", "a character device"),
        (fifo.to_str().unwrap(), "a FIFO"),
    ] {
        let start = Instant::now();
        let r = run(&[
            "agent",
            "plan",
            "--desired",
            path,
            "--observed",
            "fixtures/observed/fresh.json",
        ]);
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains(what) && r.stderr.contains("regular file"),
            "{}",
            r.stderr
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        let r = run(&[
            "agent",
            "plan",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            path,
        ]);
        assert!(r.stderr.contains(what), "{}", r.stderr);
    }
    let big = dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        big.to_str().unwrap(),
        "--observed",
        "fixtures/observed/fresh.json",
    ]);
    assert!(
        r.stderr
            .contains("larger than the 64 MiB cap for a desired state"),
        "{}",
        r.stderr
    );
}

/// A bug fixed: a 10 MB desired.json whose cpuset repeated `0-1023` took
/// 5.6 GB and 22 s.
#[test]
fn an_exploding_cpuset_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("desired.json");
    let cpuset = vec!["0-1023"; 1_400_000].join(",");
    let text = format!(
        r#"{{"tenants":[{{"tenant_id":"acme","flake_ref":"github:a/b","profile":"minimal","vcpus":1,"mem_mib":256,"state":"running","cpuset":"{cpuset}"}}]}}"#
    );
    assert!(text.len() > 9_000_000);
    std::fs::write(&p, text).unwrap();
    let start = Instant::now();
    let r = run(&[
        "agent",
        "plan",
        "--desired",
        p.to_str().unwrap(),
        "--observed",
        "fixtures/observed/fresh.json",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("at most 4096"), "{}", r.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn option_like_and_invisible_flake_refs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("desired.json");
    for (flake, says) in [
        (
            "git+ssh://-oProxyCommand=touch${IFS}/tmp/pwned/x",
            "read as an option",
        ),
        ("github:acme/app\u{202e}ppa", "U+202E"),
        ("github:acme/a\u{200b}pp", "U+200B"),
    ] {
        let t = json!({"tenants": [{"tenant_id": "acme", "flake_ref": flake, "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}]});
        std::fs::write(&p, t.to_string()).unwrap();
        let r = run(&[
            "agent",
            "plan",
            "--desired",
            p.to_str().unwrap(),
            "--observed",
            "fixtures/observed/fresh.json",
        ]);
        assert_eq!(r.code, 1, "{flake}");
        assert!(r.stderr.contains(says), "{flake}: {}", r.stderr);
    }
}

/// A bug fixed: a `tenant.json` with uid 0, another tenant's uid, or
/// 4294967295 was planned as is (the jail, tap and nft would use it).
#[test]
fn records_with_an_identity_the_node_does_not_allow_stop_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let observed = dir.path().join("observed.json");
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/observed/converged.json").unwrap())
            .unwrap();
    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        (
            |v| v["tenants"]["acme"]["record"]["uid"] = json!(0),
            "uid 0 is outside the tenant range",
        ),
        (
            |v| v["tenants"]["acme"]["record"]["gid"] = json!(4294967295u64),
            "gid 4294967295 is outside",
        ),
        (
            |v| v["tenants"]["acme"]["record"]["uid"] = json!(100001),
            "uid 100001 is also tenant",
        ),
        (
            |v| v["tenants"]["acme"]["record"]["ip"] = json!("10.9.9.9"),
            "outside the node subnet",
        ),
    ];
    for (edit, says) in cases {
        let mut v = base.clone();
        edit(&mut v);
        std::fs::write(&observed, v.to_string()).unwrap();
        let r = run(&[
            "agent",
            "plan",
            "--desired",
            "fixtures/desired/example.json",
            "--observed",
            observed.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 1, "{says}: {}", r.stdout);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
    }
}

/// Plans `desired` (a fixture) against `observed` (edited converged.json).
fn plan_against(desired: &str, observed: &Value, prune: bool) -> mvm::plan::Plan {
    let node = NodeConfig::default_config();
    let desired = mvm::agent::load_desired(&node, Path::new(desired)).unwrap();
    let observed: mvm::observed::Observed = serde_json::from_value(observed.clone()).unwrap();
    let opts = mvm::plan::PlanOptions {
        prune,
        ..Default::default()
    };
    mvm::plan::plan(&desired, &node, &observed, opts).unwrap()
}

fn converged() -> Value {
    serde_json::from_str(&std::fs::read_to_string("fixtures/observed/converged.json").unwrap())
        .unwrap()
}

fn fresh_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string("fixtures/observed/fresh.json").unwrap()).unwrap()
}

fn blocked<'a>(plan: &'a mvm::plan::Plan, address: &str) -> Option<&'a str> {
    plan.resource_changes
        .iter()
        .find(|c| c.address.to_string() == address)
        .and_then(|c| c.blocked.as_deref())
}

/// Bugs fixed: a bridge, tap or nft tables mvm did not create (another
/// mvm node's, a host `br0`) were taken over and, on prune, deleted; a
/// bridge subnet over a network the host already has was planned.
#[test]
fn links_and_tables_that_are_not_this_nodes_are_never_managed_or_pruned() {
    // A bridge of node.toml's name with another node's mark.
    let mut v = converged();
    v["bridge"]["alias"] = json!("mvm node /srv/other");
    let plan = plan_against("fixtures/desired/example.json", &v, false);
    let why = blocked(&plan, "node.bridge").expect("a foreign bridge blocks node.bridge");
    assert!(why.contains("\"mvm node /srv/other\""), "{why}");
    assert!(!plan.applyable);
    let pruned = plan_against("fixtures/desired/empty.json", &v, true);
    assert!(
        pruned
            .resource_changes
            .iter()
            .all(|c| c.address.to_string() != "node.bridge"),
        "a foreign bridge is never deleted"
    );
    // No mark and another MAC: a host bridge mvm did not create.
    let mut v = converged();
    v["bridge"]["alias"] = Value::Null;
    v["bridge"]["mac"] = json!("52:54:00:12:34:56");
    let plan = plan_against("fixtures/desired/example.json", &v, false);
    let why = blocked(&plan, "node.bridge").expect("an unmarked bridge blocks node.bridge");
    assert!(why.contains("mvm did not create it"), "{why}");
    // No mark and mvm's fixed MAC: an mvm bridge from before marks, adopted.
    let mut v = converged();
    v["bridge"]["alias"] = Value::Null;
    let plan = plan_against("fixtures/desired/example.json", &v, false);
    assert_eq!(blocked(&plan, "node.bridge"), None);
    assert!(plan.applyable);

    // A tap of another node: not this tenant's, never pruned.
    let mut v = converged();
    v["tenants"]["acme"]["tap"]["alias"] = json!("mvm node /srv/other");
    let plan = plan_against("fixtures/desired/example.json", &v, false);
    let why = blocked(&plan, "tenant.acme.tap").expect("another node's tap blocks");
    assert!(why.contains("tap-acme exists with the alias"), "{why}");
    let pruned = plan_against("fixtures/desired/empty.json", &v, true);
    assert!(
        pruned
            .resource_changes
            .iter()
            .all(|c| c.address.to_string() != "tenant.acme.tap"),
        "another node's tap is never deleted"
    );
    // An unmarked tap whose tenant has no record here is not mvm's.
    let mut v = converged();
    v["tenants"]["acme"]["tap"]["alias"] = Value::Null;
    v["tenants"]["acme"]["record"] = Value::Null;
    let pruned = plan_against("fixtures/desired/empty.json", &v, true);
    assert!(
        pruned
            .resource_changes
            .iter()
            .all(|c| c.address.to_string() != "tenant.acme.tap")
    );

    // nft tables whose owner chain names another node.
    let mut v = converged();
    v["nft"]["inet mvm"]["rules"]["owner"] =
        json!(["inet mvm owner: counter comment \"mvm node /srv/other\""]);
    let plan = plan_against("fixtures/desired/example.json", &v, false);
    let why = blocked(&plan, "node.nft").expect("another node's tables block node.nft");
    assert!(why.contains("belong to another mvm node"), "{why}");
    assert!(blocked(&plan, "tenant.acme.nft").is_some());
    let pruned = plan_against("fixtures/desired/empty.json", &v, true);
    for c in &pruned.resource_changes {
        let a = c.address.to_string();
        assert!(
            a != "node.nft" && !a.ends_with(".nft"),
            "{a} planned in another node's tables"
        );
    }
}

#[test]
fn a_bridge_subnet_over_a_host_network_is_refused_naming_the_link() {
    for (net, link, source) in [
        ("10.200.0.0/16", "eth0", "route"),
        ("10.200.0.128/25", "wg0", "address"),
    ] {
        let mut v = fresh_json();
        v["host_networks"] = json!([{"net": net, "link": link, "source": source}]);
        let plan = plan_against("fixtures/desired/example.json", &v, false);
        let why = blocked(&plan, "node.bridge").expect("an overlap blocks node.bridge");
        assert!(
            why.contains(&format!("{net} on {link} ({source})")),
            "{why}"
        );
        assert!(!plan.applyable);
    }
    let mut v = fresh_json();
    v["host_networks"] = json!([{"net": "10.201.0.0/24", "link": "eth0", "source": "address"}]);
    let plan = plan_against("fixtures/desired/example.json", &v, false);
    assert_eq!(blocked(&plan, "node.bridge"), None);
}

/// A bug fixed: text mvm did not write (a name found on the host, a
/// probe's error, a build's log tail) reached the terminal raw, so it
/// could clear the screen, set the title and draw a fake summary. Every
/// command that shows it escapes control characters, on a pipe and when
/// colors are forced alike.
#[test]
fn control_characters_from_the_host_never_reach_the_terminal() {
    let evil = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[H\u{1b}[32mApply complete!\r";
    let dir = tempfile::tempdir().unwrap();
    let observed = dir.path().join("observed.json");
    let mut v = converged();
    v["bridge"]["ports"] = json!(["tap-acme", "tap-globex", "tap-initech", format!("x{evil}")]);
    v["facts"]["netlink"] = json!(format!("read failed: {evil}"));
    std::fs::write(&observed, v.to_string()).unwrap();
    let obs = observed.to_str().unwrap();
    for force in ["0", "1"] {
        for args in [
            vec![
                "net",
                "verify",
                "--desired",
                "fixtures/desired/example.json",
                "--observed",
                obs,
            ],
            vec![
                "agent",
                "plan",
                "--desired",
                "fixtures/desired/example.json",
                "--observed",
                obs,
            ],
        ] {
            let r = common::run_cmd(common::mvm().args(&args).env("CLICOLOR_FORCE", force));
            for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
                let bad: Vec<char> = text
                    .replace("\u{1b}[", "")
                    .chars()
                    .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
                    .collect();
                assert!(bad.is_empty(), "{args:?} {stream}: {bad:?} in {text}");
                assert!(
                    !text.contains("\u{1b}[2J") && !text.contains("\u{1b}]0"),
                    "{args:?} {stream}: {text}"
                );
            }
            assert!(
                r.stdout.contains("\\x1b[2J") || r.stderr.contains("\\x1b[2J"),
                "{args:?}: the foreign text is not shown escaped: {}{}",
                r.stdout,
                r.stderr
            );
        }
    }
}

/// The addresses a plan changes.
fn changes(plan: &mvm::plan::Plan) -> Vec<String> {
    plan.resource_changes
        .iter()
        .filter(|c| c.is_change())
        .map(|c| c.address.to_string())
        .collect()
}

/// Targeting a delete takes along the dependencies that go too (a prune of
/// the last taps takes the bridge, as before) and never creates or changes
/// one (stopping a VM whose artifact would have to be rebuilt builds
/// nothing).
#[test]
fn a_targeted_delete_takes_only_deletes_along() {
    let node = NodeConfig::default_config();
    let targets = |t: &str| vec![t.parse::<mvm::plan::target::Target>().unwrap()];
    let observed: mvm::observed::Observed = serde_json::from_value(converged()).unwrap();
    let empty = mvm::agent::load_desired(&node, Path::new("fixtures/desired/empty.json")).unwrap();
    let plan = mvm::plan::plan(
        &empty,
        &node,
        &observed,
        mvm::plan::PlanOptions {
            prune: true,
            targets: targets("tenant.*.tap"),
            ..Default::default()
        },
    )
    .unwrap();
    let changed = changes(&plan);
    assert!(changed.contains(&"node.bridge".to_string()), "{changed:?}");

    let mut v = converged();
    v["tenants"]["acme"]["artifact_gone"] = json!(true);
    let observed: mvm::observed::Observed = serde_json::from_value(v).unwrap();
    let mut desired =
        mvm::agent::load_desired(&node, Path::new("fixtures/desired/example.json")).unwrap();
    let acme = desired
        .tenants
        .iter_mut()
        .find(|t| t.tenant_id.as_str() == "acme")
        .unwrap();
    acme.state = mvm::spec::RunState::Stopped;
    let plan = mvm::plan::plan(
        &desired,
        &node,
        &observed,
        mvm::plan::PlanOptions {
            prune: false,
            targets: targets("tenant.acme.vm"),
            ..Default::default()
        },
    )
    .unwrap();
    let changed = changes(&plan);
    assert_eq!(changed, ["tenant.acme.vm"], "{changed:?}");
}
