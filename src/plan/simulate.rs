//! What applying a plan does to the observed state, according to each
//! resource kind's `simulate`. Deletes (and the delete half of replaces) run
//! in reverse dependency order, then creates and updates forwards — the
//! order apply uses. Tests use it to check that plans converge: planning
//! against the simulated result must give no changes.

use super::{Action, Plan};
use crate::observed::Observed;
use crate::resources::{DecodeError, Documents};

/// The observed state after applying `plan` to `observed` on a node where
/// every change can be applied (blocked reasons are ignored: they describe
/// the node or build the plan was made on, not the engine's logic).
/// A change whose attributes do not decode (a hand-edited plan) is an
/// error naming it.
pub fn apply_to(plan: &Plan, observed: &Observed) -> Result<Observed, DecodeError> {
    let mut obs = observed.clone();
    let none = Documents::new();
    for c in plan.resource_changes.iter().rev() {
        if matches!(c.actions, Action::Delete | Action::Replace) {
            c.address
                .kind()
                .get()
                .simulate(&mut obs, &c.address, None, &none)?;
        }
    }
    for c in &plan.resource_changes {
        if matches!(c.actions, Action::Create | Action::Update | Action::Replace) {
            c.address.kind().get().simulate(
                &mut obs,
                &c.address,
                c.after.as_ref(),
                &c.documents,
            )?;
        }
    }
    Ok(obs)
}
