//! Property: for any desired state and any starting host, applying the plan
//! (as the resources' `simulate` models it) gives a host that plans no
//! changes. Also: planning is deterministic.

#[path = "common/desired.rs"]
mod generated;

use generated::desired;
use mvm::observed::Observed;
use mvm::plan::{Plan, PlanError, PlanOptions, plan, simulate};
use mvm::spec::{DesiredState, NodeConfig};
use proptest::prelude::*;

fn fresh() -> Observed {
    serde_json::from_str(&std::fs::read_to_string("fixtures/observed/fresh.json").unwrap()).unwrap()
}

/// Plans, or `None` for the legitimate refusals (an address a kept tenant
/// holds), which are not convergence failures.
fn try_plan(d: &DesiredState, obs: &Observed, prune: bool) -> Option<Plan> {
    match plan(
        d,
        &NodeConfig::default_config(),
        obs,
        PlanOptions {
            prune,
            ..Default::default()
        },
    ) {
        Ok(p) => Some(p),
        Err(PlanError::AddressInUse { .. } | PlanError::MacInUse { .. }) => None,
        Err(e) => panic!("planning failed: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn applying_a_plan_converges(first in desired(6), second in desired(6), prune in any::<bool>()) {
        // Start from a host that already runs `first`, then move to `second`.
        let p1 = try_plan(&first, &fresh(), false).expect("fresh host accepts any valid desired state");
        let host = simulate::apply_to(&p1, &fresh()).unwrap();
        prop_assert!(!try_plan(&first, &host, false).unwrap().has_changes());

        let Some(p2) = try_plan(&second, &host, prune) else { return Ok(()) };
        // Every plan mvm makes passes the checks a saved plan is held to.
        let node = NodeConfig::default_config();
        prop_assert_eq!(mvm::plan::check::saved(&p1, &node, &fresh()), Ok(()));
        prop_assert_eq!(mvm::plan::check::saved(&p2, &node, &host), Ok(()));
        let after = simulate::apply_to(&p2, &host).unwrap();
        let p3 = try_plan(&second, &after, prune).expect("a converged host plans");
        let leftover: Vec<String> = p3.resource_changes.iter().filter(|c| c.is_change()).map(|c| c.address.to_string()).collect();
        prop_assert!(leftover.is_empty(), "changes after apply: {:?}", leftover);
        if prune {
            prop_assert!(p3.kept_tenants.is_empty());
        }
        // Deterministic: the same inputs give the same plan, byte for byte.
        let again = try_plan(&second, &host, prune).unwrap();
        prop_assert_eq!(serde_json::to_string(&p2).unwrap(), serde_json::to_string(&again).unwrap());
    }
}

/// Planning in chunks on several threads gives the plan one thread makes,
/// byte for byte — from nothing, and against a host where half the
/// tenants change (their VMs replaced).
#[test]
fn plans_are_the_same_on_any_number_of_threads() {
    let node = mvm::spec::parse_node(
        std::path::Path::new("node.toml"),
        "[bridge]\nsubnet = \"10.200.0.0/16\"\ngateway = \"10.200.0.1\"\n",
    )
    .unwrap();
    let doc = |vcpus_of: fn(usize) -> usize| {
        let tenants: Vec<serde_json::Value> = (0..2600)
            .map(|i| {
                serde_json::json!({"tenant_id": format!("t{i}"), "flake_ref": "github:org/app",
                    "profile": "minimal", "vcpus": vcpus_of(i), "mem_mib": 512,
                    "state": if i % 10 == 0 { "stopped" } else { "running" }, "metadata": i % 3 == 0})
            })
            .collect();
        let text = serde_json::json!({ "tenants": tenants }).to_string();
        mvm::spec::parse_desired(std::path::Path::new("d.json"), &text, &node).unwrap()
    };
    let with = |d: &DesiredState, obs: &Observed, threads: usize| {
        let opts = PlanOptions {
            threads,
            ..Default::default()
        };
        serde_json::to_string(&plan(d, &node, obs, opts).unwrap()).unwrap()
    };
    let (first, second) = (doc(|_| 1), doc(|i| 1 + i % 2));
    let one = with(&first, &fresh(), 1);
    assert_eq!(one, with(&first, &fresh(), 3));
    let p = plan(&first, &node, &fresh(), PlanOptions::default()).unwrap();
    assert!(p.has_changes());
    let host = simulate::apply_to(&p, &fresh()).unwrap();
    let changed = with(&second, &host, 1);
    let replaced = plan(&second, &node, &host, PlanOptions::default())
        .unwrap()
        .resource_changes
        .iter()
        .filter(|c| c.actions == mvm::plan::Action::Replace)
        .count();
    assert!(
        replaced >= 1000,
        "half the VMs change vcpus: {replaced} replaced"
    );
    assert_eq!(changed, with(&second, &host, 4));
}
