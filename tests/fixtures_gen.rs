//! Derives the observed fixtures from `fixtures/observed/fresh.json`:
//! `converged.json` by simulating apply of `fixtures/desired/example.json`,
//! and `drifted.json` from it by the hand edits an operator might make.
//! Run with `MVM_REGEN_FIXTURES=1 cargo test --test fixtures_gen` after a
//! change to a resource's attributes; without it, the test checks that the
//! committed fixtures are what this code would write.

use mvm::observed::Observed;
use mvm::plan::{PlanOptions, plan, simulate};
use mvm::spec::types::TenantId;
use mvm::spec::{self, NodeConfig};
use std::path::Path;

fn load(path: &str) -> Observed {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn converged() -> Observed {
    let fresh = load("fixtures/observed/fresh.json");
    let node = NodeConfig::default_config();
    let desired = "fixtures/desired/example.json";
    let d = spec::parse_desired(
        Path::new(desired),
        &std::fs::read_to_string(desired).unwrap(),
        &node,
    )
    .unwrap();
    let p = plan(&d, &node, &fresh, PlanOptions::default()).unwrap();
    simulate::apply_to(&p, &fresh).unwrap()
}

/// Changes made by hand on a converged node.
fn drifted(mut o: Observed) -> Observed {
    let id = |s: &str| TenantId::parse(s).unwrap();
    o.bridge.as_mut().unwrap().up = false; // `ip link set mvmbr0 down`
    let acme = o.tenants.get_mut(&id("acme")).unwrap();
    acme.tap = None; // `ip link del tap-acme`
    acme.secrets
        .as_mut()
        .unwrap()
        .options
        .retain(|f| f != "noexec"); // remounted exec
    let globex = o.tenants.get_mut(&id("globex")).unwrap();
    globex
        .cgroup
        .as_mut()
        .unwrap()
        .files
        .insert("memory.max".into(), "max".into()); // limit lifted
    globex.tap.as_mut().unwrap().isolated = Some(false); // port isolation off
    globex.vm = None; // the VM crashed
    let initech = o.tenants.get_mut(&id("initech")).unwrap();
    initech.nft.as_mut().unwrap().mac = Some("02:00:de:ad:be:ef".parse().unwrap()); // element rewritten
    o
}

fn check(path: &str, obs: &Observed) {
    let text = serde_json::to_string_pretty(obs).unwrap() + "\n";
    if std::env::var_os("MVM_REGEN_FIXTURES").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        text,
        "{path} is stale: rerun with MVM_REGEN_FIXTURES=1"
    );
}

#[test]
fn derived_fixtures_are_current() {
    let c = converged();
    check("fixtures/observed/converged.json", &c);
    check("fixtures/observed/drifted.json", &drifted(c));
}
