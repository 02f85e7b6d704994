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
