//! Property: every kind's `simulate` does what its provider does. For any
//! host that already runs one desired state and any next one, the plan
//! applied by the providers on the recording host (which answers the
//! probe from its own model of what the calls did) leaves exactly the
//! attributes the plan's simulation predicts — for every resource, changed
//! or not, except the values the plan says are known only after apply.

#[path = "common/desired.rs"]
mod generated;

mod common;

use common::operator::{Approve, capable_node};
use generated::desired;
use mvm::agent::Node;
use mvm::agent::reconcile::{Goal, Outcome, Request, reconcile};
use mvm::host::Host;
use mvm::host::recording::RecordingHost;
use mvm::observed::Observed;
use mvm::plan::{PlanOptions, simulate};
use mvm::resources::{At, Attrs, KindId, PlanCtx, ResourceAddr, Scope};
use mvm::spec::{DesiredState, NodeConfig};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The recording host's builds lock a flake to a hash of its reference:
/// a generated `lock` pin would never match it.
fn unpinned(mut d: DesiredState) -> DesiredState {
    for t in &mut d.tenants {
        t.lock = None;
    }
    d
}

fn reconcile_to(node: &Node, d: DesiredState, prune: bool) -> Result<Outcome, String> {
    let req = Request {
        goal: Goal::Desired {
            desired: d,
            options: PlanOptions {
                prune,
                targets: Vec::new(),
                ..Default::default()
            },
        },
        parallelism: Some(4),
        lock_timeout: Duration::ZERO,
        command_line: "mvm agent reconcile",
        operator: "uid 0",
    };
    reconcile(
        node,
        req,
        &Approve::default(),
        Arc::new(AtomicBool::new(false)),
        false,
    )
    .map_err(|e| e.to_string())
}

/// Every resource's attributes in `obs`, by address.
fn attributes(node: &NodeConfig, obs: &Observed) -> Vec<(ResourceAddr, Attrs)> {
    let ctx = PlanCtx::new(node, obs);
    let mut out = Vec::new();
    for kind in KindId::all(Scope::Node) {
        if let Some(a) = kind.get().observed(&ctx, At::Node) {
            out.push((ResourceAddr::node(kind), a));
        }
    }
    for (id, t) in &obs.tenants {
        for kind in KindId::all(Scope::Tenant) {
            if let Some(a) = kind.get().observed(&ctx, At::Tenant(id, t)) {
                out.push((ResourceAddr::tenant_kind(id.clone(), kind), a));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn simulate_predicts_what_the_providers_did(first in desired(5), second in desired(5), prune in any::<bool>()) {
        let (first, second) = (unpinned(first), unpinned(second));
        let rec = Arc::new(RecordingHost::new().with_base(capable_node(true)));
        let node = Node::new(NodeConfig::default_config(), Host::recording(rec.clone()));
        // A legitimate refusal (an address a kept tenant holds) is not a
        // simulation failure.
        let Ok(_) = reconcile_to(&node, first, false) else { return Ok(()) };
        let before = node.host.probe.observe(&node.config);
        let Ok(plan) = mvm::plan::plan(&second, &node.config, &before, PlanOptions { prune, targets: Vec::new(), ..Default::default() }) else {
            return Ok(());
        };
        prop_assume!(plan.resource_changes.iter().all(|c| c.blocked.is_none()));
        let predicted = simulate::apply_to(&plan, &before).unwrap();
        let out = reconcile_to(&node, second, prune).unwrap();
        if let Outcome::Applied(r) = &out {
            prop_assert!(r.success(), "{:#?}", r.steps);
        }
        let actual = node.host.probe.observe(&node.config);

        let unknown: std::collections::HashMap<&ResourceAddr, BTreeSet<String>> = plan
            .resource_changes
            .iter()
            .map(|c| (&c.address, c.after_unknown.iter().map(|a| a.to_string()).collect()))
            .collect();
        let mask = |attrs: Vec<(ResourceAddr, Attrs)>| -> Vec<(String, Attrs)> {
            attrs
                .into_iter()
                .map(|(addr, mut a)| {
                    if let Some(u) = unknown.get(&addr) {
                        a.retain(|k, _| !u.contains(&k.to_string()));
                    }
                    (addr.to_string(), a)
                })
                .collect()
        };
        let want = mask(attributes(&node.config, &predicted));
        let got = mask(attributes(&node.config, &actual));
        for (w, g) in want.iter().zip(&got) {
            prop_assert_eq!(w, g);
        }
        prop_assert_eq!(want.len(), got.len(), "resources: predicted {:?}, found {:?}",
            want.iter().map(|w| &w.0).collect::<Vec<_>>(), got.iter().map(|g| &g.0).collect::<Vec<_>>());
    }
}
