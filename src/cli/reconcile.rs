//! `mvm agent reconcile` and `mvm tenant audit`: the handlers. They print
//! and ask; the work is in `agent`, `apply` and `security::audit`.

use super::{AuditArgs, ReconcileArgs, Settings, output};
use crate::agent::{self, AgentError};
use crate::apply::context::ApplyCtx;
use crate::apply::progress::{Bars, Lines, Progress};
use crate::apply::{Outcome, Report};
use crate::providers::host::{Host, LinuxHost};
use crate::security::audit::{self, HEAD_FILE, LOG_FILE};
use crate::spec::types::TenantId;
use crate::state::StateLayout;
use crate::state::store::NodeLock;
use console::Style;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The command line, for audit records. mvm takes no secret on its command
/// line (secrets come from files), so argv is safe to record.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("{a:?}")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(s: &Settings, args: &ReconcileArgs) -> Result<ExitCode, AgentError> {
    let node = s.config.load()?;
    let lock_timeout = agent::parse_duration(&args.lock_timeout).map_err(AgentError::Usage)?;
    let targets = super::targets(&args.target)?;
    // Validate desired.json before taking the lock or probing anything.
    let desired = args
        .desired
        .as_deref()
        .map(|p| agent::load_desired(&node, p))
        .transpose()?;
    let host: Arc<dyn Host> = Arc::new(LinuxHost);

    // The state dir holds the lock, so it must exist before anything else.
    let state = &node.state_dir;
    crate::resources::dirs::ensure_state_dir(&*host, state)?;
    let _lock = NodeLock::acquire(
        &state.join("lock"),
        &command_line(),
        lock_timeout,
        |holder| {
            eprintln!(
                "Waiting for the node lock, held by {holder} (up to {})...",
                args.lock_timeout
            );
        },
    )?;

    let observed = crate::providers::observe(&node);
    let plan = match (&args.plan, desired) {
        (Some(path), _) => agent::load_saved_plan(path, &node, &observed)?,
        (None, Some(d)) => crate::plan::plan(
            &d,
            &node,
            &observed,
            crate::plan::PlanOptions {
                prune: args.prune,
                targets,
            },
        )?,
        (None, None) => {
            return Err(AgentError::Usage(
                "give --desired FILE or --plan FILE".into(),
            ));
        }
    };
    output::write_stdout(&crate::plan::render::render(&plan, s.colors));
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }

    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive && !args.auto_approve && !confirm()? {
        output::write_stdout("Apply cancelled.\n");
        return Ok(ExitCode::from(1));
    }

    let node_id = crate::state::store::node_id(state)?;
    let ctx = Arc::new(ApplyCtx::new(&plan, host, node_id, command_line()));
    let parallelism = args
        .parallelism
        .map_or(plan.apply_context.node.apply.parallelism, usize::from);
    let progress: Arc<dyn Progress> = if std::io::stderr().is_terminal() && s.colors {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines(std::sync::Mutex::new(std::io::stdout())))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(parallelism.max(1))
        .enable_all()
        .build()
        .map_err(|e| AgentError::Usage(format!("cannot start the runtime: {e}")))?;
    let report = rt.block_on(async {
        // Listen before the first step starts, so no signal can arrive in
        // between and kill a step halfway.
        use tokio::signal::unix::{SignalKind, signal};
        let listeners = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        if let (Ok(mut int), Ok(mut term)) = listeners {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
                stop.store(true, Ordering::SeqCst);
                eprintln!(
                    "Interrupt received: letting running steps finish, starting no new ones."
                );
            });
        }
        crate::apply::execute(&plan, ctx, parallelism, progress, stop.clone()).await
    });
    summarize(&report, s.colors);
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn confirm() -> Result<bool, AgentError> {
    print!(
        "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    );
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| AgentError::Usage(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim() == "yes")
}

fn summarize(r: &Report, colors: bool) {
    let green = Style::new().bold().green().force_styling(colors);
    let red = Style::new().bold().red().force_styling(colors);
    let c = r.counts();
    let mut out = String::from("\n");
    if r.success() {
        out.push_str(&format!(
            "{} Resources: {} added, {} changed, {} destroyed.\n",
            green.apply_to("Apply complete!"),
            c.added,
            c.changed,
            c.destroyed
        ));
    } else {
        let head = if r.interrupted {
            "Apply interrupted."
        } else {
            "Apply failed."
        };
        out.push_str(&format!(
            "{} Resources: {} added, {} changed, {} destroyed before it stopped.\n",
            red.apply_to(head),
            c.added,
            c.changed,
            c.destroyed
        ));
        for s in r.failed() {
            if let Outcome::Failed(e) = &s.outcome {
                out.push_str(&format!("  failed:  {}: {e}\n", s.address));
            }
        }
        for s in r.skipped() {
            match &s.outcome {
                Outcome::Skipped { because } => out.push_str(&format!(
                    "  skipped: {} ({because} did not succeed)\n",
                    s.address
                )),
                _ => out.push_str(&format!("  not started: {} (interrupted)\n", s.address)),
            }
        }
        out.push_str(
            "Run reconcile again to continue; it converges from wherever this run stopped.\n",
        );
    }
    for e in &r.audit_errors {
        out.push_str(&format!("  warning: audit record not written: {e}\n"));
    }
    output::write_stdout(&out);
}

pub fn audit(s: &Settings, args: &AuditArgs) -> Result<ExitCode, AgentError> {
    let node = s.config.load()?;
    let id = TenantId::parse(&args.tenant)
        .map_err(|e| AgentError::Usage(format!("tenant id {:?} {e}", args.tenant)))?;
    let layout = StateLayout::new(&node.state_dir);
    let dir = match archived_log_dir(&layout, &id) {
        // A pruned tenant's log lives on in the archive: read the newest.
        Some(archived) if !layout.tenant_dir(&id).join(LOG_FILE).exists() => {
            output::write_stdout(&format!(
                "note: {id} was pruned; reading its archived log in {}\n",
                archived.display()
            ));
            archived
        }
        _ => layout.tenant_dir(&id),
    };
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::read(&log_path).map_err(|e| {
        AgentError::Usage(format!(
            "cannot read {}: {e} (no tenant {id} on this node, and no archived log of one)",
            log_path.display()
        ))
    })?;
    if args.verify {
        let head = std::fs::read(dir.join(HEAD_FILE)).ok();
        let v = audit::verify(&log, head.as_deref());
        for n in &v.notes {
            output::write_stdout(&format!("note: {n}\n"));
        }
        if v.problems.is_empty() {
            output::write_stdout(&format!(
                "{}: {} records, chain intact.\n",
                log_path.display(),
                v.records
            ));
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = format!(
            "{}: {} problem(s) — the log was altered:\n",
            log_path.display(),
            v.problems.len()
        );
        for p in &v.problems {
            out.push_str(&format!("  {p}\n"));
        }
        super::write_all(std::io::stderr().lock(), &out);
        return Ok(ExitCode::from(1));
    }
    if args.json {
        super::write_all(std::io::stdout().lock(), &String::from_utf8_lossy(&log));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<audit::AuditRecord>(line) {
            Ok(r) => out.push_str(&format!(
                "{:>5}  {}  {:<7} {:<28} {}{}\n",
                r.seq,
                r.timestamp,
                r.action,
                r.resource,
                r.result,
                r.error.map(|e| format!(": {e}")).unwrap_or_default()
            )),
            Err(_) => out.push_str("  (unreadable record: run with --verify)\n"),
        }
    }
    output::write_stdout(&out);
    Ok(ExitCode::SUCCESS)
}

/// The newest `<state>/archive/<id>-<time>/` (the names sort by time).
fn archived_log_dir(layout: &StateLayout, id: &TenantId) -> Option<std::path::PathBuf> {
    let prefix = format!("{id}-");
    std::fs::read_dir(layout.root().join("archive"))
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|e| e.path())
        .max()
}
