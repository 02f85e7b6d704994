//! Tenant networking on a real kernel, as root, inside throwaway network
//! (and mount) namespaces: the rendered ruleset round-trips through nft,
//! reconcile builds the bridge, taps and rules and repairs drift, and
//! stand-in guests behind the real taps prove each flow of the policy.
//! Skips with a printed reason when not root.

use mvm::net::ruleset;
use mvm::spec::NodeConfig;
use std::collections::BTreeMap;

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Runs `f` on a thread in a fresh network namespace of its own (gone when
/// the thread ends), so nothing it does reaches the host.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the network");
        f()
    })
    .join()
    .expect("the namespace thread finished")
}

/// What nft lists for mvm's tables: rules and chain specs by "family
/// table chain", and set specs.
type Listing = (
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, String>,
    Vec<String>,
);

/// The rules nft lists for mvm's tables, by "family table chain".
fn listed(known: &ruleset::Ruleset) -> Listing {
    let json = mvm::providers::nft::list_ruleset("nft").expect("nft lists the ruleset");
    let st = mvm::providers::nft::parse(&json, known);
    let mut rules = BTreeMap::new();
    let mut specs = BTreeMap::new();
    let mut sets = Vec::new();
    for (table, t) in &st.tables {
        for (chain, rs) in &t.rules {
            rules.insert(format!("{table} {chain}"), rs.clone());
        }
        for (chain, spec) in &t.specs {
            specs.insert(format!("{table} {chain}"), spec.clone());
        }
        sets.extend(t.sets.values().cloned());
    }
    sets.sort();
    (rules, specs, sets)
}

/// nft lists back exactly the JSON mvm renders, for the default node and
/// for one with outside DNS servers and a one-entry deny list — so the
/// plan's rule-by-rule comparison never shows phantom drift.
#[test]
fn the_rendered_ruleset_is_what_nft_lists_back() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for a network namespace and nft");
        return;
    }
    let mut other = NodeConfig::default_config();
    other.bridge.dns = vec![
        "10.200.0.1".parse().unwrap(),
        "9.9.9.9".parse().unwrap(),
        "1.1.1.1".parse().unwrap(),
    ];
    other.network.egress_deny = vec!["192.168.0.0/16".parse().unwrap()];
    for node in [NodeConfig::default_config(), other] {
        let rs = ruleset::render(&node);
        let (rules, specs, sets) = in_netns(move || {
            mvm::providers::nft::apply("nft", &ruleset::transaction(&rs, &[], &[], &[]))
                .expect("nft takes the rendered ruleset");
            // Applying again is a no-op in effect.
            mvm::providers::nft::apply("nft", &ruleset::transaction(&rs, &[], &[], &[]))
                .expect("and takes it again");
            listed(&rs)
        });
        let rs = ruleset::render(&node);
        let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &rs.rules {
            want.entry(format!("{} {} {}", r.family, r.table, r.chain))
                .or_default()
                .push(r.display());
        }
        for (chain, want_rules) in &want {
            let got = rules.get(chain).cloned().unwrap_or_default();
            for (i, w) in want_rules.iter().enumerate() {
                assert_eq!(
                    got.get(i),
                    Some(w),
                    "{chain} rule {i}: nft lists it differently"
                );
            }
            assert_eq!(got.len(), want_rules.len(), "{chain}");
        }
        for c in &rs.chains {
            let key = c.key();
            assert_eq!(
                specs.get(&key).map(|s| format!("{key}: {s}")),
                Some(c.spec()),
                "{key}"
            );
        }
        let mut want_sets: Vec<String> = rs.sets.iter().map(|s| s.spec()).collect();
        want_sets.sort();
        assert_eq!(sets, want_sets);
    }
}

/// Reconcile, stand-in guests proving the policy, drift repaired, prune
/// (`tests/host/net.sh`, in fresh network, mount and pid namespaces: a
/// service the script leaves running dies with it).
#[test]
fn reconcile_isolates_tenants_for_real() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces, taps and nft");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "bash",
            "tests/host/net.sh",
        ])
        .arg(env!("CARGO_BIN_EXE_mvm"))
        .arg(work.path())
        .arg(format!("mvm-test-net-{}", std::process::id()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok: ").count(), 10, "{stdout}");
}

/// A transaction nft refuses changes nothing: mvm's tables stay as they
/// were, rule for rule.
#[test]
fn a_refused_transaction_leaves_the_old_ruleset() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for a network namespace and nft");
        return;
    }
    let rs = ruleset::render(&NodeConfig::default_config());
    let (before, after, err) = in_netns(move || {
        mvm::providers::nft::apply("nft", &ruleset::transaction(&rs, &[], &[], &[])).unwrap();
        let before = listed(&rs);
        // A new ruleset with one command nft refuses at the end.
        let mut other = NodeConfig::default_config();
        other.network.egress_deny = vec![];
        let mut bad = ruleset::transaction(&ruleset::render(&other), &[], &[], &[]);
        bad["nftables"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"add": {"rule": {"family": "inet", "table": "mvm", "chain": "no_such_chain", "expr": [{"accept": null}]}}}));
        let err = mvm::providers::nft::apply("nft", &bad).unwrap_err();
        (before, listed(&rs), err)
    });
    assert!(err.contains("nothing changed"), "{err}");
    assert_eq!(before, after);
}
