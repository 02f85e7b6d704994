//! `mvm agent reconcile`: how the reconcile talks to an operator — the
//! plan printed, the question asked on a terminal, progress as spinners or
//! lines — and the summary at the end. The sequence itself is
//! `agent::reconcile`.

use super::progress::{Bars, Lines};
use super::{LifecycleArgs, ReconcileArgs, output};
use crate::agent::reconcile::{self, Goal, Outcome, OverrideChange, Request};
use crate::agent::{self, AgentError, Node};
use crate::apply::progress::Progress;
use crate::apply::{Report, StepOutcome};
use crate::plan::{Plan, PlanOptions};
use crate::settings::Settings;
use console::Style;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

struct Operator<'a> {
    settings: &'a Settings,
    auto_approve: bool,
    lock_timeout: &'a str,
    /// The result is a JSON document on stdout: everything else goes to
    /// stderr.
    json: bool,
}

impl reconcile::Ui for Operator<'_> {
    fn waiting_for_lock(&self, holder: &str) {
        eprintln!(
            "Waiting for the node lock, held by {} (up to {})...",
            crate::text::one_line(holder),
            self.lock_timeout
        );
    }

    /// The plan on stdout; its warnings (a missing jailer, limits not
    /// enforced, …) also on stderr unless both streams are one destination
    /// (a terminal, a journal, `>log 2>&1`), so an agent's log of errors has
    /// them too and no reader sees them twice.
    fn show_plan(&self, plan: &Plan) {
        if self.json {
            let colors = self.settings.colors && self.settings.terminal.stderr;
            crate::cli::output::write_all(
                std::io::stderr().lock(),
                &crate::plan::render::render(plan, colors),
            );
            return;
        }
        output::write_stdout(&crate::plan::render::render(plan, self.settings.colors));
        let t = self.settings.terminal;
        let one_destination = t.merged || (t.stdout && t.stderr);
        if !one_destination && !plan.warnings.is_empty() {
            let text: String = plan
                .warnings
                .iter()
                .map(|w| format!("warning: {}\n", crate::text::one_line(w)))
                .collect();
            crate::cli::output::write_all(std::io::stderr().lock(), &text);
        }
    }

    /// Asks whenever a person can answer — stdin is a terminal, whatever
    /// stdout is piped to (Terraform's rule) — unless --auto-approve;
    /// without one (a node agent, a script) it applies. With stdout piped
    /// (`| tee log`) the question goes to stderr, which the person sees.
    fn confirm(&self, _: &Plan) -> Result<bool, AgentError> {
        let t = self.settings.terminal;
        if self.auto_approve || !t.stdin {
            return Ok(true);
        }
        ask(
            "Do you want to perform these actions?",
            t.stdout && !self.json,
        )
    }

    fn progress(&self) -> Arc<dyn Progress> {
        if self.settings.terminal.stderr && self.settings.colors {
            Arc::new(Bars::new())
        } else if self.json {
            Arc::new(Lines(std::sync::Mutex::new(std::io::stderr())))
        } else {
            Arc::new(Lines(std::sync::Mutex::new(std::io::stdout())))
        }
    }

    fn interrupted(&self) {
        eprintln!("Interrupt received: letting running steps finish, starting no new ones.");
    }
}

pub fn run(s: &Settings, node: &Node, args: &ReconcileArgs) -> Result<ExitCode, AgentError> {
    let lock_timeout = agent::parse_duration(&args.lock_timeout)?;
    let targets = agent::targets(&args.target)?;
    // Validate desired.json before taking the lock or probing anything.
    let goal = match (&args.plan, &args.desired) {
        (Some(path), _) => Goal::SavedPlan(path),
        (None, Some(path)) => Goal::Desired {
            desired: agent::load_desired(&node.config, path)?,
            options: PlanOptions {
                prune: args.prune,
                targets,
                threads: crate::host::service::cpus(),
                ..Default::default()
            },
        },
        // clap requires one of the two.
        (None, None) => unreachable!("clap requires --desired or --plan"),
    };
    let ui = Operator {
        settings: s,
        auto_approve: args.auto_approve,
        lock_timeout: &args.lock_timeout,
        json: args.json,
    };
    let req = Request {
        goal,
        parallelism: args.parallelism.map(usize::from),
        lock_timeout,
        command_line: &s.command_line,
        operator: &s.operator,
    };
    finish(s, node, req, &ui, None, None)
}

/// `mvm tenant stop|start|pin|unpin|release ID`: the override written under
/// the node lock, then that tenant reconciled.
/// Asks `question` Terraform's way (on stdout when `on_stdout`, else on
/// stderr) and reads the answer from stdin: only `yes` approves.
pub(super) fn ask(question: &str, on_stdout: bool) -> Result<bool, AgentError> {
    let text =
        format!("\n{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ");
    if on_stdout {
        print!("{text}");
        let _ = std::io::stdout().flush();
    } else {
        eprint!("{text}");
    }
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(AgentError::Confirm)?;
    Ok(answer.trim() == "yes")
}

pub fn tenant_override(
    s: &Settings,
    node: &Node,
    args: &LifecycleArgs,
    change: OverrideChange,
) -> Result<ExitCode, AgentError> {
    agent::parse_duration(&args.lock_timeout)?;
    let id = agent::parse_tenant_id(&args.tenant)?;
    let already = match &change {
        OverrideChange::State(crate::spec::RunState::Stopped) => {
            format!(
                "Tenant {id}'s VM is not running: nothing to stop. It is kept stopped (`mvm tenant release {id}` hands it back)."
            )
        }
        OverrideChange::State(crate::spec::RunState::Running) => {
            format!(
                "Tenant {id}'s VM is already running. It is kept running (`mvm tenant release {id}` hands it back)."
            )
        }
        OverrideChange::Pin { flake_ref, .. } => {
            format!(
                "Tenant {id} already runs {flake_ref}. It is kept on it (`mvm tenant unpin {id}`)."
            )
        }
        OverrideChange::Unpin | OverrideChange::Release => {
            format!("Tenant {id} is the control plane's again; nothing on the node changes.")
        }
        OverrideChange::Create(_) => format!("Tenant {id} exists on this node already."),
        OverrideChange::Rollback { .. } => {
            format!(
                "Tenant {id} already runs that revision. It is kept on it (`mvm tenant unpin {id}`)."
            )
        }
        OverrideChange::Destroy => format!("Nothing of tenant {id} is on this node."),
    };
    let kept = format!(
        "The override is kept in {}: run the command again once the cause is fixed, or undo it (`mvm tenant release {id}`; `mvm tenant destroy {id}` for a tenant created by hand).",
        node.layout.overrides().display()
    );
    run_goal(
        s,
        node,
        args,
        Goal::Override { id, change },
        &already,
        &kept,
    )
}

/// Reconciles toward `goal` for a tenant command: `no_changes` is said
/// when there is nothing to do, `kept` when the apply fails.
pub(super) fn run_goal(
    s: &Settings,
    node: &Node,
    args: &LifecycleArgs,
    goal: Goal,
    no_changes: &str,
    kept: &str,
) -> Result<ExitCode, AgentError> {
    let lock_timeout = agent::parse_duration(&args.lock_timeout)?;
    let ui = Operator {
        settings: s,
        auto_approve: args.auto_approve,
        lock_timeout: &args.lock_timeout,
        json: args.json,
    };
    let req = Request {
        goal,
        parallelism: None,
        lock_timeout,
        command_line: &s.command_line,
        operator: &s.operator,
    };
    finish(s, node, req, &ui, Some(no_changes), Some(kept))
}

fn finish(
    s: &Settings,
    node: &Node,
    req: Request,
    ui: &Operator,
    no_changes: Option<&str>,
    kept: Option<&str>,
) -> Result<ExitCode, AgentError> {
    let outcome = reconcile::reconcile(node, req, ui, Arc::new(AtomicBool::new(false)), true)?;
    if ui.json {
        let (code, doc) = json_result(&outcome);
        output::write_stdout(&format!("{doc}\n"));
        return Ok(code);
    }
    Ok(match outcome {
        Outcome::NoChanges => {
            if let Some(line) = no_changes {
                output::write_stdout(&format!("{line}\n"));
            }
            ExitCode::SUCCESS
        }
        Outcome::Cancelled => {
            output::write_stdout("Apply cancelled.\n");
            ExitCode::from(1)
        }
        Outcome::Applied(report) => {
            output::write_stdout(&summary(&report, s.colors));
            if report.success() {
                ExitCode::SUCCESS
            } else {
                if let Some(kept) = kept {
                    output::write_stdout(&format!("{kept}\n"));
                }
                ExitCode::from(1)
            }
        }
    })
}

/// Terraform's closing lines, and every resource that did not get done
/// with why.
/// The machine-readable result (`--json`) and the exit code.
fn json_result(outcome: &Outcome) -> (ExitCode, serde_json::Value) {
    use serde_json::json;
    match outcome {
        Outcome::NoChanges => (
            ExitCode::SUCCESS,
            json!({"format_version": crate::plan::FORMAT_VERSION, "outcome": "no_changes", "success": true,
                   "summary": {"added": 0, "changed": 0, "destroyed": 0, "failed": 0, "blocked": 0, "skipped": 0},
                   "resources": [], "audit_errors": []}),
        ),
        Outcome::Cancelled => (
            ExitCode::from(1),
            json!({"format_version": crate::plan::FORMAT_VERSION, "outcome": "cancelled", "success": false,
                   "summary": {"added": 0, "changed": 0, "destroyed": 0, "failed": 0, "blocked": 0, "skipped": 0},
                   "resources": [], "audit_errors": []}),
        ),
        Outcome::Applied(r) => {
            let c = r.counts();
            let resources: Vec<serde_json::Value> = r
                .steps
                .iter()
                .map(|s| {
                    let (result, error) = match &s.outcome {
                        StepOutcome::Done => ("ok", None),
                        StepOutcome::Failed(e) => ("failed", Some(e.clone())),
                        StepOutcome::Blocked(why) => ("blocked", Some(why.clone())),
                        StepOutcome::Skipped { because } => {
                            ("skipped", Some(format!("{because} did not succeed")))
                        }
                        StepOutcome::Interrupted => ("interrupted", None),
                    };
                    json!({
                        "address": s.address.to_string(),
                        "phase": match s.phase { crate::apply::Phase::Destroy => "destroy", crate::apply::Phase::Apply => "apply" },
                        "actions": s.action.words(),
                        "result": result,
                        "error": error,
                        "duration_ms": s.elapsed.as_millis() as u64,
                    })
                })
                .collect();
            let success = r.success();
            (
                if success {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                },
                json!({
                    "format_version": crate::plan::FORMAT_VERSION,
                    "outcome": "applied",
                    "success": success,
                    "summary": {
                        "added": c.added, "changed": c.changed, "destroyed": c.destroyed,
                        "failed": r.failed().count(), "blocked": r.blocked().count(),
                        "skipped": r.skipped().count(),
                    },
                    "resources": resources,
                    "audit_errors": r.audit_errors,
                }),
            )
        }
    }
}

fn summary(r: &Report, colors: bool) -> String {
    let green = Style::new().bold().green().force_styling(colors);
    let red = Style::new().bold().red().force_styling(colors);
    let c = r.counts();
    let counts = format!(
        "Resources: {} added, {} changed, {} destroyed",
        c.added, c.changed, c.destroyed
    );
    let blocked = r.blocked().count();
    let mut out = String::from("\n");
    if r.success() {
        out.push_str(&format!(
            "{} {counts}.\n",
            green.apply_to("Apply complete!")
        ));
    } else {
        let head = if r.interrupted {
            format!(
                "{} {counts} before it stopped",
                red.apply_to("Apply interrupted.")
            )
        } else if r.failed().count() == 0 && blocked > 0 {
            format!("{} {counts}", red.apply_to("Apply incomplete."))
        } else {
            format!("{} {counts}", red.apply_to("Apply failed."))
        };
        let blocked_note = if blocked > 0 {
            format!("; {blocked} blocked on this node")
        } else {
            String::new()
        };
        out.push_str(&format!("{head}{blocked_note}.\n"));
        let mut rows: Vec<(&str, String, String)> = Vec::new();
        for s in &r.steps {
            match &s.outcome {
                StepOutcome::Failed(e) => rows.push((
                    "failed:",
                    s.address.to_string(),
                    crate::text::one_line(e).into_owned(),
                )),
                StepOutcome::Blocked(why) => rows.push((
                    "blocked:",
                    s.address.to_string(),
                    crate::text::one_line(why).into_owned(),
                )),
                StepOutcome::Skipped { because } => rows.push((
                    "skipped:",
                    s.address.to_string(),
                    format!("{because} did not succeed"),
                )),
                StepOutcome::Interrupted => {
                    rows.push(("not started:", s.address.to_string(), "interrupted".into()))
                }
                StepOutcome::Done => {}
            }
        }
        rows.sort_by_key(|(w, _, _)| match *w {
            "failed:" => 0,
            "blocked:" => 1,
            "skipped:" => 2,
            _ => 3,
        });
        let w1 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (word, addr, why) in rows {
            out.push_str(&format!("  {word:<w1$} {addr} ({why})\n"));
        }
        if blocked > 0
            && blocked
                == r.steps
                    .iter()
                    .filter(|s| s.outcome != StepOutcome::Done)
                    .count()
        {
            out.push_str(
                "Blocked changes are not attempted and leave no audit record; see the plan's Blocked: lines.\n",
            );
        } else {
            out.push_str(
                "Run reconcile again to continue; it converges from wherever this run stopped.\n",
            );
        }
    }
    for e in &r.audit_errors {
        out.push_str(&format!("  warning: audit record not written: {e}\n"));
    }
    out
}
