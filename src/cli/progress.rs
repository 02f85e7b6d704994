//! Progress of an apply: one spinner line per running resource with its
//! elapsed time on a terminal (indicatif), plain log lines otherwise —
//! Terraform's wording either way.

use crate::apply::progress::Progress;
use crate::apply::{Phase, StepOutcome, StepResult};
use crate::plan::Action;
use crate::resources::ResourceAddr;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

fn verbs(phase: Phase, action: Action) -> (&'static str, &'static str, &'static str) {
    match (phase, action) {
        (Phase::Destroy, _) => (
            "Destroying...",
            "Destruction complete",
            "Destruction failed",
        ),
        (Phase::Apply, Action::Update) => (
            "Modifying...",
            "Modifications complete",
            "Modification failed",
        ),
        _ => ("Creating...", "Creation complete", "Creation failed"),
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The line printed when a step ends.
pub fn finished_line(r: &StepResult) -> String {
    let (_, done, failed) = verbs(r.phase, r.action);
    // Errors quote what mvm did not write: one line, controls escaped.
    let line = match &r.outcome {
        StepOutcome::Done => format!("{}: {done} after {}", r.address, secs(r.elapsed)),
        StepOutcome::Failed(e) => format!("{}: {failed} after {}: {e}", r.address, secs(r.elapsed)),
        StepOutcome::Skipped { because } => {
            format!("{}: Skipped: {because} did not succeed", r.address)
        }
        StepOutcome::Blocked(why) => format!("{}: Blocked: {why}", r.address),
        StepOutcome::Interrupted => format!("{}: Not started: interrupted", r.address),
    };
    crate::text::one_line(&line).into_owned()
}

/// Plain lines, for logs and pipes.
pub struct Lines<W: std::io::Write + Send>(pub Mutex<W>);

impl<W: std::io::Write + Send> Progress for Lines<W> {
    fn started(&self, addr: &ResourceAddr, phase: Phase, action: Action) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(w, "{addr}: {}", verbs(phase, action).0);
    }
    fn finished(&self, r: &StepResult) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(w, "{}", finished_line(r));
    }
}

/// Spinners on a terminal: one per running resource, finished lines
/// printed above them.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<(ResourceAddr, bool), ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bars {
    fn started(&self, addr: &ResourceAddr, phase: Phase, action: Action) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
        );
        bar.set_message(format!("{addr}: {}", verbs(phase, action).0));
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((addr.clone(), phase == Phase::Destroy), bar);
    }
    fn finished(&self, r: &StepResult) {
        let bar = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(r.address.clone(), r.phase == Phase::Destroy));
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(finished_line(r));
    }
}
