//! The executor: carries out a `Plan` and nothing else.
//!
//! Each change becomes one or two steps: a *destroy* step (delete, and the
//! first half of a replace) and an *apply* step (create, update, the second
//! half of a replace). Apply steps wait for their dependencies' apply steps
//! and for their own destroy step; destroy steps wait for their dependents'
//! destroy steps — so creates walk the graph forwards and deletes backwards.
//! Ready steps run concurrently, at most `parallelism` at a time. A failed
//! step skips everything that waits on it, with the reason; unrelated steps
//! go on. An interrupt stops new steps from starting and lets running ones
//! finish.
//!
//! A change the plan marked blocked is not attempted: it and what waits on
//! it end as blocked/skipped, with no host call and no audit record, so a
//! timer-driven agent on a node that cannot carry a change out does not
//! grow audit logs run after run. Each step is its kind's provider; the
//! executor never names a kind.

pub mod progress;
mod report;

pub use report::{Counts, Phase, Report, StepOutcome, StepResult};

use crate::plan::{Action, Plan, ResourceChange};
use crate::resources::{ApplyCtx, Attrs, ResourceAddr};
use crate::security::audit::{AuditDetails, AuditEvent, Log};
use progress::Progress;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

struct Step<'p> {
    change: &'p ResourceChange,
    phase: Phase,
    /// Steps that must finish first.
    waits_on: Vec<usize>,
}

fn steps(plan: &Plan) -> Vec<Step<'_>> {
    let mut out: Vec<Step> = Vec::new();
    let mut destroy: HashMap<&ResourceAddr, usize> = HashMap::new();
    let mut apply: HashMap<&ResourceAddr, usize> = HashMap::new();
    for c in &plan.resource_changes {
        if matches!(c.actions, Action::Delete | Action::Replace) {
            destroy.insert(&c.address, out.len());
            out.push(Step {
                change: c,
                phase: Phase::Destroy,
                waits_on: Vec::new(),
            });
        }
        if matches!(c.actions, Action::Create | Action::Update | Action::Replace) {
            apply.insert(&c.address, out.len());
            out.push(Step {
                change: c,
                phase: Phase::Apply,
                waits_on: Vec::new(),
            });
        }
    }
    // Each destroy step waits on its dependents' destroy steps: index them
    // once instead of scanning every change per step.
    let mut destroyed_dependents: HashMap<&ResourceAddr, Vec<usize>> = HashMap::new();
    for c in &plan.resource_changes {
        if let Some(&j) = destroy.get(&c.address) {
            for d in &c.depends_on {
                destroyed_dependents.entry(d).or_default().push(j);
            }
        }
    }
    // What a destroy frees that no two tenants may hold at once (an IP, a
    // MAC, a mark: `Resource::UNIQUE`): a create of the same kind that
    // takes it again waits for that destroy. Else a pruned tenant's delete
    // could run after, and undo, the create of a new tenant reusing its IP
    // (in IP-keyed sets), as tests/simulate.rs found.
    // An in-place update that moves off a value (a tenant's new IP in its
    // nft elements) frees it too; only creates wait for those, so two
    // updates trading values can never wait on each other.
    let mut freed: HashMap<Held, Vec<(usize, bool)>> = HashMap::new();
    for c in &plan.resource_changes {
        let Some(before) = c.before.as_ref() else {
            continue;
        };
        let step = match (destroy.get(&c.address), c.actions) {
            (Some(&j), _) => Some((j, false)),
            (None, Action::Update) => apply.get(&c.address).map(|&j| (j, true)),
            _ => None,
        };
        let Some((j, by_update)) = step else { continue };
        let kind = c.address.kind();
        for attr in kind.get().unique() {
            let after = c.after.as_ref().and_then(|a| a.get(*attr));
            if let Some(v) = before.get(*attr).filter(|v| !v.is_null())
                && (!by_update || after != Some(v))
            {
                freed
                    .entry((kind, attr, v))
                    .or_default()
                    .push((j, by_update));
            }
        }
    }
    let reused = |c: &ResourceChange| -> Vec<usize> {
        let Some(after) = c.after.as_ref() else {
            return Vec::new();
        };
        let kind = c.address.kind();
        let own = destroy.get(&c.address).copied();
        let creates = c.actions == Action::Create;
        kind.get()
            .unique()
            .iter()
            .filter_map(|attr| after.get(*attr).map(|v| (attr, v)))
            .flat_map(|(attr, v)| freed.get(&(kind, *attr, v)).into_iter().flatten().copied())
            .filter(|&(j, by_update)| Some(j) != own && (creates || !by_update))
            .map(|(j, _)| j)
            .collect()
    };
    let waits: Vec<Vec<usize>> = out
        .iter()
        .map(|step| {
            let c = step.change;
            match step.phase {
                Phase::Apply => c
                    .depends_on
                    .iter()
                    .filter_map(|d| apply.get(d).copied())
                    .chain(destroy.get(&c.address).copied())
                    .chain(reused(c))
                    .collect(),
                // Dependents go first.
                Phase::Destroy => destroyed_dependents
                    .get(&c.address)
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    for (step, w) in out.iter_mut().zip(waits) {
        step.waits_on = w;
    }
    out
}

/// A value a resource holds that no two tenants may (kind, attribute,
/// value).
type Held<'a> = (crate::resources::KindId, &'a str, &'a serde_json::Value);

/// The context `plan`'s steps run in: the host, and the node config and
/// cgroup2 mount the plan was made with.
pub fn ctx_for(plan: &Plan, host: crate::host::Host, node_id: String, command: String) -> ApplyCtx {
    ApplyCtx::new(
        host,
        plan.apply_context.node.clone(),
        plan.apply_context.cgroup_mount.clone(),
        node_id,
        command,
    )
}

/// Runs one step on the host through its kind's provider; returns what
/// the audit record of it carries.
fn run_step(ctx: &ApplyCtx, change: &ResourceChange, phase: Phase) -> Result<AuditDetails, String> {
    let kind = change.address.kind().get();
    let r = match phase {
        Phase::Apply => {
            let empty = Attrs::new();
            // An update in place compares with what is there; a create or
            // replace builds from nothing.
            let prior = change
                .before
                .as_ref()
                .filter(|_| change.actions == Action::Update);
            kind.apply(
                ctx,
                &change.address,
                prior,
                change.after.as_ref().unwrap_or(&empty),
                &change.documents,
            )
        }
        Phase::Destroy => kind
            .delete(ctx, &change.address, change.before.as_ref())
            .map(|()| deleted_details(change)),
    };
    r.map_err(|e| e.to_string())
}

/// What the audit record of a delete carries: of the attributes it had.
fn deleted_details(change: &ResourceChange) -> AuditDetails {
    change
        .before
        .as_ref()
        .map(|b| change.address.kind().get().audit_of(&change.address, b))
        .unwrap_or_default()
}

/// The log a step's record goes in: its tenant's — if the tenant's tree
/// is there to hold it (it is not before its dirs are created, nor after
/// they are deleted: that step writes its own record, into the log it
/// archives) — or, for the bridge, the firewall and the metadata service,
/// the node's.
fn log_of<'c>(ctx: &ApplyCtx, change: &'c ResourceChange) -> Option<Log<'c>> {
    match change.address.tenant() {
        Some(id) if ctx.host.files.is_dir(&ctx.layout.tenant_dir(id)) => Some(Log::Tenant(id)),
        Some(_) => None,
        None => Some(Log::Node),
    }
}

/// Whether the step's audit log can record it: a log that was tampered
/// with gets no change at all, since the record of it could not be
/// chained honestly.
fn audit_ready(ctx: &ApplyCtx, change: &ResourceChange) -> Result<(), String> {
    match log_of(ctx, change) {
        Some(log) => ctx.audit.check(&ctx.host, log).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// The audit record of a finished step, in its log (`log_of`).
fn audit(
    ctx: &ApplyCtx,
    change: &ResourceChange,
    phase: Phase,
    outcome: &Result<AuditDetails, String>,
) -> Result<(), String> {
    let Some(log) = log_of(ctx, change) else {
        return Ok(());
    };
    let action = match (phase, change.actions) {
        (Phase::Destroy, _) => "delete",
        (Phase::Apply, Action::Update) => "update",
        _ => "create",
    };
    let (error, details) = match outcome {
        Ok(d) => (None, d.clone()),
        Err(e) => (Some(e.clone()), AuditDetails::new()),
    };
    let ev = AuditEvent {
        log,
        action,
        resource: change.address.to_string(),
        error,
        details,
    };
    ctx.audit.append(&ctx.host, ev).map_err(|e| e.to_string())
}

/// The bookkeeping of one run: what each step waits on, what is ready,
/// what has finished and how.
struct Walk<'p, 'a> {
    steps: &'a [Step<'p>],
    waiting: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    state: Vec<Option<StepOutcome>>,
    ready: std::collections::VecDeque<usize>,
    finished: usize,
    report: Report,
    progress: Arc<dyn Progress>,
}

impl<'p, 'a> Walk<'p, 'a> {
    fn new(steps: &'a [Step<'p>], progress: Arc<dyn Progress>) -> Self {
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
        for (i, s) in steps.iter().enumerate() {
            for &w in &s.waits_on {
                dependents[w].push(i);
            }
        }
        Self {
            waiting: steps.iter().map(|s| s.waits_on.len()).collect(),
            ready: (0..steps.len())
                .filter(|&i| steps[i].waits_on.is_empty())
                .collect(),
            state: vec![None; steps.len()],
            dependents,
            steps,
            finished: 0,
            report: Report::default(),
            progress,
        }
    }

    /// Records how step `i` ended, then releases what waited on it — or,
    /// if it did not succeed, skips all of that, naming the cause.
    fn settle(&mut self, i: usize, outcome: StepOutcome, elapsed: Duration) {
        let cause = match &outcome {
            StepOutcome::Skipped { because } => because.clone(),
            _ => self.steps[i].change.address.clone(),
        };
        let ok = outcome == StepOutcome::Done;
        let result = StepResult {
            address: self.steps[i].change.address.clone(),
            phase: self.steps[i].phase,
            action: self.steps[i].change.actions,
            outcome: outcome.clone(),
            elapsed,
        };
        self.progress.finished(&result);
        self.report.steps.push(result);
        self.state[i] = Some(outcome);
        self.finished += 1;
        for k in 0..self.dependents[i].len() {
            let d = self.dependents[i][k];
            if self.state[d].is_some() {
                continue;
            }
            if ok {
                self.waiting[d] -= 1;
                if self.waiting[d] == 0 {
                    self.ready.push_back(d);
                }
            } else {
                self.settle(
                    d,
                    StepOutcome::Skipped {
                        because: cause.clone(),
                    },
                    Duration::ZERO,
                );
            }
        }
    }
}

/// How a task the executor started ended.
enum Finished {
    /// A step ran and its record was written (`Some`: why the record
    /// could not be).
    Step(usize, StepOutcome, Duration, Option<String>),
    /// Deletes that ran together (`Resource::DELETES_TOGETHER`): each
    /// step's result, and whether it gets a record (not when its log
    /// refused to be extended, so nothing was tried).
    Together(Vec<(usize, Result<AuditDetails, String>, bool)>, Duration),
}

/// The most deletes handed to a kind at once.
const TOGETHER_MAX: usize = 1024;

/// Applies `plan`. `stop` is checked before each new step starts.
///
/// Deletes of a kind that deletes several at once more cheaply than one
/// by one (`Resource::DELETES_TOGETHER`: taps, whose every netlink delete
/// waits for the kernel's RCU) are handed to it together when they are
/// ready at the same time — one task; then each step's record is written
/// as a task of its own, so the records of a batch sync at once. Each
/// step still counts only once its record is written.
pub async fn execute(
    plan: &Plan,
    ctx: Arc<ApplyCtx>,
    parallelism: usize,
    progress: Arc<dyn Progress>,
    stop: Arc<AtomicBool>,
) -> Report {
    let steps = steps(plan);
    let mut walk = Walk::new(&steps, progress.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();
    let mut running = 0usize;
    let parallelism = parallelism.max(1);
    // Steps whose deletes ran together, waiting for their record.
    let mut to_record: std::collections::VecDeque<(usize, Result<AuditDetails, String>, Duration)> =
        std::collections::VecDeque::new();

    while walk.finished < steps.len() {
        while running < parallelism {
            // A step that already changed the host is recorded even after
            // an interrupt.
            if let Some((i, result, took)) = to_record.pop_front() {
                running += 1;
                let change = steps[i].change.clone();
                let phase = steps[i].phase;
                let (ctx, tx) = (ctx.clone(), tx.clone());
                tokio::task::spawn_blocking(move || {
                    let t = ctx.host.clock.now();
                    let audit_error = audit(&ctx, &change, phase, &result).err();
                    let elapsed = took + ctx.host.clock.now().duration_since(t).unsigned_abs();
                    let _ = tx.send(Finished::Step(i, outcome_of(result), elapsed, audit_error));
                });
                continue;
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Some(i) = walk.ready.pop_front() else {
                break;
            };
            if walk.state[i].is_some() {
                continue;
            }
            if let Some(why) = &steps[i].change.blocked {
                walk.settle(i, StepOutcome::Blocked(why.clone()), Duration::ZERO);
                continue;
            }
            running += 1;
            let together = together_with(&steps, &mut walk, i);
            if together.len() > 1 {
                let changes: Vec<(usize, ResourceChange)> = together
                    .iter()
                    .map(|&j| (j, steps[j].change.clone()))
                    .collect();
                for (_, c) in &changes {
                    progress.started(&c.address, Phase::Destroy, c.actions);
                }
                let (ctx, tx) = (ctx.clone(), tx.clone());
                tokio::task::spawn_blocking(move || {
                    let t = ctx.host.clock.now();
                    let results = delete_together(&ctx, &changes);
                    let elapsed = ctx.host.clock.now().duration_since(t).unsigned_abs();
                    let _ = tx.send(Finished::Together(results, elapsed));
                });
                continue;
            }
            let change = steps[i].change.clone();
            let phase = steps[i].phase;
            let ctx = ctx.clone();
            let tx = tx.clone();
            progress.started(&change.address, phase, change.actions);
            tokio::task::spawn_blocking(move || {
                let t = ctx.host.clock.now();
                let (result, audit_error) = match audit_ready(&ctx, &change) {
                    Err(e) => (Err(e), None),
                    Ok(()) => {
                        let result = run_step(&ctx, &change, phase);
                        let audit_error = audit(&ctx, &change, phase, &result).err();
                        (result, audit_error)
                    }
                };
                let elapsed = ctx.host.clock.now().duration_since(t).unsigned_abs();
                let _ = tx.send(Finished::Step(i, outcome_of(result), elapsed, audit_error));
            });
        }
        if running == 0 {
            // Interrupted, or (only with a hand-edited saved plan) steps
            // waiting on each other in a cycle: the rest never runs.
            let interrupted = stop.load(Ordering::SeqCst);
            for (i, step) in steps.iter().enumerate() {
                if walk.state[i].is_none() {
                    let outcome = if interrupted {
                        StepOutcome::Interrupted
                    } else {
                        StepOutcome::Failed(
                            "its dependencies wait on each other (a cycle in the plan)".into(),
                        )
                    };
                    let r = StepResult {
                        address: step.change.address.clone(),
                        phase: step.phase,
                        action: step.change.actions,
                        outcome: outcome.clone(),
                        elapsed: Duration::ZERO,
                    };
                    progress.finished(&r);
                    walk.report.steps.push(r);
                    walk.state[i] = Some(outcome);
                }
            }
            walk.report.interrupted = interrupted;
            break;
        }
        let Some(finished) = rx.recv().await else {
            break;
        };
        running -= 1;
        match finished {
            Finished::Step(i, outcome, elapsed, audit_error) => {
                if let Some(e) = audit_error {
                    walk.report
                        .audit_errors
                        .push(format!("{}: {e}", steps[i].change.address));
                }
                walk.settle(i, outcome, elapsed);
            }
            Finished::Together(results, elapsed) => {
                for (i, result, record) in results {
                    if record {
                        to_record.push_back((i, result, elapsed));
                    } else {
                        walk.settle(i, outcome_of(result), elapsed);
                    }
                }
            }
        }
    }
    walk.report
}

fn outcome_of(result: Result<AuditDetails, String>) -> StepOutcome {
    match result {
        Ok(_) => StepOutcome::Done,
        Err(e) => StepOutcome::Failed(e),
    }
}

/// Step `i` and, when it is a delete of a kind that deletes together,
/// every other such delete of its kind that is ready now (taken off the
/// ready queue).
fn together_with(steps: &[Step], walk: &mut Walk, i: usize) -> Vec<usize> {
    let kind = steps[i].change.address.kind();
    if steps[i].phase != Phase::Destroy || !kind.get().deletes_together() {
        return vec![i];
    }
    let mut out = vec![i];
    let state = &walk.state;
    walk.ready.retain(|&j| {
        let s = &steps[j];
        let joins = out.len() < TOGETHER_MAX
            && state[j].is_none()
            && s.phase == Phase::Destroy
            && s.change.blocked.is_none()
            && s.change.address.kind() == kind;
        if joins {
            out.push(j);
        }
        !joins
    });
    out
}

/// Deletes `changes` (all of one kind) together, after checking each
/// one's audit log as a step alone would.
fn delete_together(
    ctx: &ApplyCtx,
    changes: &[(usize, ResourceChange)],
) -> Vec<(usize, Result<AuditDetails, String>, bool)> {
    let mut out = Vec::with_capacity(changes.len());
    let mut go: Vec<&(usize, ResourceChange)> = Vec::new();
    for item in changes {
        match audit_ready(ctx, &item.1) {
            Err(e) => out.push((item.0, Err(e), false)),
            Ok(()) => go.push(item),
        }
    }
    let Some(first) = go.first() else {
        return out;
    };
    let kind = first.1.address.kind().get();
    let items: Vec<(&ResourceAddr, Option<&Attrs>)> = go
        .iter()
        .map(|(_, c)| (&c.address, c.before.as_ref()))
        .collect();
    for ((i, c), r) in go.iter().zip(kind.delete_together(ctx, &items)) {
        let result = r.map_err(|e| e.to_string()).map(|()| deleted_details(c));
        out.push((*i, result, true));
    }
    out
}
