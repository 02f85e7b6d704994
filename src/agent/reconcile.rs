//! The reconcile sequence: validate the inputs, take the node lock,
//! observe, plan (or load a saved plan and check it is still current),
//! show it, ask, apply, report. The caller supplies how to talk to the
//! operator (`Ui`) and the host; this module prints nothing itself.

use super::{AgentError, Node};
use crate::apply::progress::Progress;
use crate::apply::{self, Report};
use crate::plan::{Plan, PlanOptions};
use crate::spec::overrides::{Local, Pin, Set, StateOverride, TenantOverrides};
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
    /// An operator's override of tenant `id` (`mvm tenant stop|start|pin|
    /// unpin|release`): written to `overrides.json` under the node lock (so
    /// a reconcile running meanwhile is not undone, and the next one keeps
    /// it), recorded in the tenant's audit log, then that tenant reconciled
    /// — for a state change its VM only (and, to start it, what it needs: a
    /// stop builds nothing).
    Override {
        id: TenantId,
        change: OverrideChange,
    },
    /// `mvm tenant secrets rotate`: the tenant's VM moved to its newest
    /// staged secrets generation — a plan of that VM alone (replaced when
    /// it runs another), against the desired state as the last reconcile
    /// applied it with the overrides.
    RotateSecrets {
        id: TenantId,
    },
}

/// What an override command changes of a tenant's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideChange {
    State(RunState),
    Pin {
        flake_ref: String,
        lock: Option<String>,
    },
    /// A pin to the revision `steps` starts back in `revisions.json`: its
    /// flake ref and lock hash.
    Rollback {
        steps: usize,
    },
    /// Drops the pin.
    Unpin,
    /// Drops every override: the tenant is the control plane's again.
    Release,
    /// A tenant of this node alone, as desired.json would give it.
    Create(serde_json::Value),
    /// Removes a tenant created by hand: all its resources, its audit log
    /// archived as a prune does.
    Destroy,
}

impl OverrideChange {
    /// `before` changed as asked, set now by `set`; an error when there is
    /// nothing to undo.
    fn apply(
        &self,
        node: &Node,
        id: &TenantId,
        before: &TenantOverrides,
        set: Set,
    ) -> Result<TenantOverrides, AgentError> {
        let mut after = before.clone();
        match self {
            OverrideChange::State(state) => {
                after.state = Some(StateOverride { state: *state, set })
            }
            OverrideChange::Pin { flake_ref, lock } => {
                after.pin = Some(Pin {
                    flake_ref: flake_ref.clone(),
                    lock: lock.clone(),
                    rollback_to: None,
                    store_path: None,
                    profile: None,
                    set,
                })
            }
            OverrideChange::Rollback { steps } => {
                after.pin = Some(rollback_pin(node, id, *steps, set)?)
            }
            OverrideChange::Unpin if before.pin.is_none() => {
                return Err(AgentError::NoOverride {
                    id: id.clone(),
                    what: "pin",
                });
            }
            OverrideChange::Unpin => after.pin = None,
            OverrideChange::Release if before.is_empty() => {
                return Err(AgentError::NoOverride {
                    id: id.clone(),
                    what: "override",
                });
            }
            OverrideChange::Release => after = TenantOverrides::default(),
            OverrideChange::Create(spec) => {
                after = TenantOverrides {
                    local: Some(Local {
                        spec: spec.clone(),
                        set,
                    }),
                    ..TenantOverrides::default()
                }
            }
            OverrideChange::Destroy => after = TenantOverrides::default(),
        }
        Ok(after)
    }

    /// What the command reconciles: the VM for a state change, the whole
    /// tenant otherwise.
    fn target(&self, id: &TenantId) -> String {
        match self {
            OverrideChange::State(_) => format!("tenant.{id}.vm"),
            _ => format!("tenant.{id}"),
        }
    }
}

pub struct Request<'a> {
    pub goal: Goal<'a>,
    /// Steps at once; `None`: node.toml's `apply.parallelism`.
    pub parallelism: Option<usize>,
    pub lock_timeout: Duration,
    /// Recorded in the lock file and every audit record.
    pub command_line: &'a str,
    /// Who runs it (`uid 0, SUDO_USER alice`), recorded with an override.
    pub operator: &'a str,
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
    // The state dir holds the lock, so it is made before anything else.
    let _lock = node.lock(req.command_line, req.lock_timeout, &mut |holder| {
        ui.waiting_for_lock(holder)
    })?;

    let started = crate::host::service::Moment::now();
    let observed = super::Aside::new(host.probe.observe(config));
    let (plan, desired) = match req.goal {
        Goal::SavedPlan(path) => (super::load_saved_plan(path, config, &observed)?, None),
        Goal::Desired { desired, options } => {
            let merged = node.merged(&desired)?;
            let mut plan = crate::plan::plan(&merged.desired, config, &observed, options)?;
            plan.overrides = merged.notes;
            plan.block_tenants(&merged.conflicts);
            (plan, Some(desired))
        }
        Goal::Override { id, change } => {
            let plan = set_override(
                node,
                req.command_line,
                req.operator,
                &id,
                &change,
                &observed,
            )?;
            // The control plane's document did not change: nothing to
            // remember.
            (plan, None)
        }
        Goal::RotateSecrets { id } => {
            let (doc, _) = node.document(None)?;
            let merged = node.merged(&doc)?;
            if !merged.desired.tenants.iter().any(|t| t.tenant_id == id) {
                return Err(AgentError::NotDesired { id });
            }
            // What a rotate killed after its VM started left: generations
            // older than the one the VM runs, and staging debris.
            if let Some(live) = observed
                .tenants
                .get(&id)
                .and_then(super::secrets::live_generation)
            {
                host.secrets
                    .prune_secrets(&layout.secrets(&id), live, &[])?;
            }
            let options = PlanOptions {
                targets: super::targets(&[format!("tenant.{id}.vm")])?,
                rotate_secrets: [id].into(),
                ..Default::default()
            };
            let mut plan = crate::plan::plan(&merged.desired, config, &observed, options)?;
            plan.overrides = merged.notes;
            plan.block_tenants(&merged.conflicts);
            (plan, None)
        }
    };
    let plan = super::Aside::new(plan);
    ui.show_plan(&plan);
    if !plan.has_changes() {
        if let Some(d) = &desired {
            remember_desired(node, d)?;
        }
        // Nothing touched, this file neither (`agent run` reports its
        // no-op runs itself).
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
    record_last(node, started, &report);
    Ok(Outcome::Applied(report))
}

/// Writes what this reconcile did to `<state>/last-reconcile.json` (for
/// `mvm node metrics`): the last one that applied a plan — a run with
/// nothing to do touches nothing. A failure to write it is not the
/// reconcile's: the metrics then show the one before.
fn record_last(node: &Node, started: crate::host::service::Moment, report: &apply::Report) {
    let counts = report.counts();
    let result = if report.interrupted {
        "interrupted"
    } else if report.success() {
        "converged"
    } else {
        "failed"
    };
    let last = crate::state::LastReconcile {
        at: node.host.clock.now().to_string(),
        result: result.into(),
        duration_ms: started.elapsed().as_millis() as u64,
        added: counts.added,
        changed: counts.changed,
        destroyed: counts.destroyed,
        failed: report.failed().count(),
        blocked: report.blocked().count(),
    };
    let _ = node.host.files.write_file(
        &node.layout.last_reconcile(),
        &crate::spec::json::file_text(&last),
        0o644,
    );
}

/// Writes the override (under the caller's node lock), records it in the
/// tenant's audit log when the tenant has one, and plans that tenant.
fn set_override(
    node: &Node,
    command: &str,
    operator: &str,
    id: &TenantId,
    change: &OverrideChange,
    observed: &crate::observed::Observed,
) -> Result<Plan, AgentError> {
    let doc = match node.document(None) {
        Ok((doc, _)) => doc,
        // Never reconciled: no tenant is the control plane's yet.
        Err(AgentError::NoAppliedDesired { .. }) => {
            return Err(AgentError::NotDesired { id: id.clone() });
        }
        Err(e) => return Err(e),
    };
    let mut overrides = node.overrides()?;
    let before = overrides.tenants.get(id).cloned().unwrap_or_default();
    let upstream = doc.tenants.iter().any(|t| &t.tenant_id == id);
    let local = before.local.is_some();
    match change {
        OverrideChange::Create(_) if upstream || local => {
            return Err(AgentError::TenantExists { id: id.clone() });
        }
        OverrideChange::Create(_) => {}
        OverrideChange::Destroy if upstream => {
            return Err(AgentError::DestroyUpstream { id: id.clone() });
        }
        OverrideChange::Destroy if !local => {
            return Err(AgentError::UnknownTenant { id: id.clone() });
        }
        _ if !upstream && !local => return Err(AgentError::NotDesired { id: id.clone() }),
        _ => {}
    }
    let set = Set {
        since: node
            .host
            .clock
            .now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        by: operator.to_string(),
    };
    let after = change.apply(node, id, &before, set)?;
    if after.is_empty() {
        overrides.tenants.remove(id);
    } else {
        overrides.tenants.insert(id.clone(), after.clone());
    }
    // A created tenant is validated with the document before anything is
    // written: a refused flag changes nothing.
    node.merge(&doc, &overrides)
        .map_err(|e| as_flags(e, change))?;
    // In the tenant's log; a tenant not on the node yet (one being
    // created) has none, so the node's log records it.
    let log = if node.host.files.is_dir(&node.layout.tenant_dir(id)) {
        crate::security::audit::Log::Tenant(id)
    } else {
        crate::security::audit::Log::Node
    };
    // A command killed while writing left its temporary files; the run
    // again may find nothing to write, so it removes them here.
    node.sweep_temps(&node.layout.overrides())?;
    node.sweep_temps(&log.paths(&node.layout).1)?;
    if after != before {
        // The record first, then the change: a kill between the two leaves
        // a record of an override that the run again writes (and records
        // once more) — never an override the audit log does not show.
        let show = |o: &TenantOverrides| serde_json::to_string(o).expect("overrides serialize");
        let writer = crate::resources::audit_log::AuditWriter::new(
            node.layout.clone(),
            node.ensure_node_id()?,
            command.to_string(),
        );
        let ev = crate::security::audit::AuditEvent {
            log,
            action: "override",
            resource: format!("tenant.{id}"),
            error: None,
            details: [
                ("by".to_string(), operator.to_string()),
                ("before".to_string(), show(&before)),
                ("after".to_string(), show(&after)),
            ]
            .into(),
        };
        writer.append(&node.host, ev)?;
        node.write_overrides(&overrides)?;
    }
    let merged = node
        .merge(&doc, &overrides)
        .map_err(|e| as_flags(e, change))?;
    let options = PlanOptions {
        prune: matches!(change, OverrideChange::Destroy),
        targets: super::targets(&[change.target(id)])?,
        ..Default::default()
    };
    let mut plan = crate::plan::plan(&merged.desired, &node.config, observed, options)?;
    plan.overrides = merged.notes;
    plan.block_tenants(&merged.conflicts);
    Ok(plan)
}

/// The revision `steps` starts back, as the pin a rollback sets.
fn rollback_pin(node: &Node, id: &TenantId, steps: usize, set: Set) -> Result<Pin, AgentError> {
    let history = super::history::read_revisions(node, id)?;
    if steps == 0 || steps >= history.len() {
        return Err(AgentError::NoRevision {
            id: id.clone(),
            steps,
            earlier: history.len().saturating_sub(1),
        });
    }
    let rev = &history[history.len() - 1 - steps];
    // The build's store path: the directory its files are in.
    let store_path = rev
        .files
        .first()
        .and_then(|f| std::path::Path::new(&f.store_path).parent())
        .map(|d| d.display().to_string());
    Ok(Pin {
        flake_ref: rev.flake_ref.clone(),
        lock: Some(rev.lock.clone()),
        rollback_to: Some(rev.started_at.clone()),
        store_path,
        profile: serde_json::from_value(serde_json::Value::from(rev.profile.clone())).ok(),
        set,
    })
}

/// The validator's problems with a created tenant, named by flag
/// (`tenants[2].mem_mib` → `--mem-mib`).
fn as_flags(e: AgentError, change: &OverrideChange) -> AgentError {
    match (change, e) {
        (
            OverrideChange::Create(_),
            AgentError::Spec(crate::spec::SpecError::Invalid { path, problems }),
        ) => {
            let problems = problems
                .into_iter()
                .map(|mut p| {
                    if let Some((_, field)) = p.path.rsplit_once(']') {
                        let field = field.trim_start_matches('.');
                        if !field.is_empty() {
                            let flag = match field {
                                "flake_ref" => "flake".to_string(),
                                "tenant_id" => "tenant id".to_string(),
                                f => f.replace('_', "-"),
                            };
                            p.path = format!("--{flag}");
                        }
                    }
                    p
                })
                .collect();
            AgentError::Spec(crate::spec::SpecError::Invalid { path, problems })
        }
        (_, e) => e,
    }
}

/// Keeps the desired state a reconcile converged to as
/// `<state>/desired.json`, for `mvm net verify`; written only when it
/// changed, so a no-op reconcile changes nothing.
fn remember_desired(node: &Node, d: &DesiredState) -> Result<(), AgentError> {
    let host = &node.host;
    let text = crate::spec::json::file_text(d);
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
