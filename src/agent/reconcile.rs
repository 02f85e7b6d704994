//! The reconcile sequence: validate the inputs, take the node lock,
//! observe, plan (or load a saved plan and check it is still current),
//! show it, ask, apply, report. The caller supplies how to talk to the
//! operator (`Ui`) and the host; this module prints nothing itself.

use super::{AgentError, Node};
use crate::apply::progress::Progress;
use crate::apply::{self, Report};
use crate::plan::{Plan, PlanOptions};
use crate::spec::types::TenantId;
use crate::spec::{DesiredState, RunState};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What to reconcile toward: a desired state, or exactly a saved plan.
pub enum Goal<'a> {
    Desired {
        desired: DesiredState,
        options: PlanOptions,
    },
    SavedPlan(&'a Path),
    /// The desired state the last reconcile applied, with tenant `id` set
    /// to `state`, for that tenant's VM only (and, to start it, what it
    /// needs: a stop builds nothing). Read under the node lock, so a
    /// reconcile running meanwhile is not undone (`mvm tenant stop|start`).
    TenantState {
        id: TenantId,
        state: RunState,
    },
}

pub struct Request<'a> {
    pub goal: Goal<'a>,
    /// Steps at once; `None`: node.toml's `apply.parallelism`.
    pub parallelism: Option<usize>,
    pub lock_timeout: Duration,
    /// Recorded in the lock file and every audit record.
    pub command_line: &'a str,
}

/// How the reconcile talks to whoever runs it.
pub trait Ui {
    /// The lock is held by `holder`; waiting for it.
    fn waiting_for_lock(&self, holder: &str);
    fn show_plan(&self, plan: &Plan);
    /// Whether to apply the plan shown.
    fn confirm(&self, plan: &Plan) -> Result<bool, AgentError>;
    fn progress(&self) -> Arc<dyn Progress>;
    /// SIGINT or SIGTERM arrived: running steps finish, no new ones start.
    fn interrupted(&self);
}

pub enum Outcome {
    /// The node already matches: nothing was touched.
    NoChanges,
    /// The operator said no.
    Cancelled,
    Applied(Report),
}

/// Reconciles the node. With `signals`, SIGINT and SIGTERM stop new steps
/// (listened for before the first step starts, so none is killed halfway);
/// `stop` does the same from the caller.
pub fn reconcile(
    node: &Node,
    req: Request,
    ui: &dyn Ui,
    stop: Arc<AtomicBool>,
    signals: bool,
) -> Result<Outcome, AgentError> {
    let (host, layout, config) = (&node.host, &node.layout, &node.config);
    // The state dir holds the lock, so it must exist before anything else.
    host.ensure_state_dir(layout.root())?;
    let _lock = host.locks.node_lock(
        &layout.lock(),
        req.command_line,
        req.lock_timeout,
        &mut |holder| ui.waiting_for_lock(holder),
    )?;

    let observed = host.probe.observe(config);
    let (plan, desired) = match req.goal {
        Goal::SavedPlan(path) => (super::load_saved_plan(path, config, &observed)?, None),
        Goal::Desired { desired, options } => {
            let plan = crate::plan::plan(&desired, config, &observed, options)?;
            (plan, Some(desired))
        }
        Goal::TenantState { id, state } => {
            let (mut desired, _) = node.desired(None)?;
            let t = desired
                .tenants
                .iter_mut()
                .find(|t| t.tenant_id == id)
                .ok_or_else(|| AgentError::NotDesired { id: id.clone() })?;
            t.state = state;
            let options = PlanOptions {
                prune: false,
                targets: super::targets(&[format!("tenant.{id}.vm")])?,
            };
            let plan = crate::plan::plan(&desired, config, &observed, options)?;
            (plan, Some(desired))
        }
    };
    ui.show_plan(&plan);
    if !plan.has_changes() {
        if let Some(d) = &desired {
            remember_desired(node, d)?;
        }
        return Ok(Outcome::NoChanges);
    }
    if !ui.confirm(&plan)? {
        return Ok(Outcome::Cancelled);
    }

    let node_id = node.ensure_node_id()?;
    let ctx = Arc::new(apply::ctx_for(
        &plan,
        host.clone(),
        node_id,
        req.command_line.to_string(),
    ));
    let parallelism = req
        .parallelism
        .unwrap_or(plan.apply_context.node.apply.parallelism)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(parallelism)
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    let progress = ui.progress();
    let report = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        if signals {
            // Listening starts here, before the first step, so no signal
            // can arrive in between and kill a step halfway.
            let signal = crate::host::signals::listen_for_termination();
            let stop = stop.clone();
            tokio::spawn(async move {
                signal.await;
                stop.store(true, Ordering::SeqCst);
                let _ = tx.send(());
            });
        }
        let run = apply::execute(&plan, ctx, parallelism, progress, stop.clone());
        tokio::pin!(run);
        let mut told = false;
        let report = loop {
            tokio::select! {
                report = &mut run => break report,
                Some(()) = rx.recv(), if !told => {
                    told = true;
                    ui.interrupted();
                }
            }
        };
        // The run may end before the notice was polled.
        if !told && stop.load(Ordering::SeqCst) {
            ui.interrupted();
        }
        report
    });
    if let (true, Some(d)) = (report.success(), &desired) {
        remember_desired(node, d)?;
    }
    Ok(Outcome::Applied(report))
}

/// Keeps the desired state a reconcile converged to as
/// `<state>/desired.json`, for `mvm net verify`; written only when it
/// changed, so a no-op reconcile changes nothing.
fn remember_desired(node: &Node, d: &DesiredState) -> Result<(), AgentError> {
    let host = &node.host;
    let mut text = serde_json::to_vec_pretty(d).expect("desired state serializes");
    text.push(b'\n');
    let path = node.layout.applied_desired();
    if host
        .files
        .read(&path, crate::host::fs::input::Input::Desired.cap())
        .ok()
        .flatten()
        .as_deref()
        != Some(text.as_slice())
    {
        host.files.write_file(&path, &text, 0o600)?;
    }
    Ok(())
}
