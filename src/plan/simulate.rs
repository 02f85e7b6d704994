//! What applying a plan does to the observed state, according to each
//! resource kind's `simulate`. Deletes (and the delete half of replaces) run
//! in reverse dependency order, then creates and updates forwards — the
//! order apply uses. Tests use it to check that plans converge: planning
//! against the simulated result must give no changes.

use super::{Action, Plan};
use crate::observed::Observed;
use crate::resources;
use crate::spec::NodeConfig;

/// The observed state after applying `plan` to `observed` on a node where
/// every change can be applied (blocked reasons are ignored: they describe
/// the node or build the plan was made on, not the engine's logic).
pub fn apply_to(plan: &Plan, node: &NodeConfig, observed: &Observed) -> Observed {
    let mut obs = observed.clone();
    for c in plan.resource_changes.iter().rev() {
        if matches!(c.actions, Action::Delete | Action::Replace) {
            resources::simulate(&mut obs, node, &c.address, None, None);
        }
    }
    for c in &plan.resource_changes {
        if matches!(c.actions, Action::Create | Action::Update | Action::Replace) {
            let cfg = c.firecracker_config.as_ref().and_then(|f| f.after.as_ref());
            resources::simulate(&mut obs, node, &c.address, c.after.as_ref(), cfg);
        }
    }
    obs
}
