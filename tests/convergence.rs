//! Property: for any desired state and any starting host, applying the plan
//! (as the resources' `simulate` models it) gives a host that plans no
//! changes. Also: planning is deterministic.

use mvm::observed::Observed;
use mvm::plan::{Plan, PlanError, PlanOptions, plan, simulate};
use mvm::spec::{self, DesiredState, NodeConfig};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;

fn tenant() -> impl Strategy<Value = Value> {
    ((
        "[a-z][a-z0-9]{0,5}",
        prop::sample::select(vec!["github:org/app?rev=1356a192b7913b04c54574d18c28d46e6395428a", "github:org/app?rev=2da4b9237bacccdf19c0760cab7aec4a8359010b", "git+https://git.example/x.git"]),
        prop::sample::select(vec!["minimal", "standard"]),
        1u8..=4,
        prop::sample::select(vec![256u32, 512, 1024]),
        prop::sample::select(vec!["running", "running", "stopped"]),
    ), (
        prop::option::of(2u8..250),
        prop::option::of(any::<u8>()),
        any::<(bool, bool, bool)>(),
        prop::option::of(prop::sample::select(vec!["0-3", "4-7"])),
        prop::option::of(prop::sample::select(vec![64u32, 512])),
        prop::option::of(Just(4096u32)),
        any::<bool>(),
    ))
        .prop_map(|((id, flake, profile, vcpus, mem, state), (ip, mac, (strict, metadata, ssh), cpuset, pids, data, lock))| {
            let mut t = json!({"tenant_id": id, "flake_ref": flake, "profile": profile, "vcpus": vcpus,
                "mem_mib": mem, "state": state, "metadata": metadata, "ssh_from_gateway": ssh});
            let o = t.as_object_mut().unwrap();
            if let Some(ip) = ip {
                o.insert("ip".into(), format!("10.200.0.{ip}").into());
            }
            if let Some(m) = mac {
                o.insert("mac".into(), format!("02:01:00:00:00:{m:02x}").into());
            }
            if strict {
                o.insert("seccomp".into(), "strict".into());
            }
            if let Some(c) = cpuset {
                o.insert("cpuset".into(), c.into());
            }
            if let Some(p) = pids {
                o.insert("pids_max".into(), p.into());
            }
            if let Some(d) = data {
                o.insert("data_mib".into(), d.into());
            }
            if lock {
                o.insert("lock".into(), "a".repeat(64).into());
            }
            t
        })
}

/// Up to `n` tenants with unique ids, IPs and MACs, validated like a file.
fn desired(n: usize) -> impl Strategy<Value = DesiredState> {
    prop::collection::vec(tenant(), 0..n).prop_map(|ts| {
        let (mut ids, mut ips, mut macs) = (Vec::new(), Vec::new(), Vec::new());
        let mut kept = Vec::new();
        for mut t in ts {
            let id = t["tenant_id"].clone();
            if ids.contains(&id) {
                continue;
            }
            ids.push(id);
            let o = t.as_object_mut().unwrap();
            for (key, seen) in [("ip", &mut ips), ("mac", &mut macs)] {
                if let Some(v) = o.get(key).cloned() {
                    if seen.contains(&v) {
                        o.remove(key);
                    } else {
                        seen.push(v);
                    }
                }
            }
            kept.push(t);
        }
        let node = NodeConfig::default_config();
        let text = json!({ "tenants": kept }).to_string();
        spec::parse_desired(Path::new("generated.json"), &text, &node)
            .expect("generated desired state is valid")
    })
}

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
