//! What an apply did: each step's phase and outcome, and the report of
//! the run.

use crate::plan::Action;
use crate::resources::ResourceAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Destroy,
    Apply,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Done,
    Failed(String),
    /// Not attempted: the plan says this node cannot carry it out.
    Blocked(String),
    /// Not attempted because a step it depends on did not succeed.
    Skipped {
        because: ResourceAddr,
    },
    /// Not started: the run was interrupted.
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct StepResult {
    pub address: ResourceAddr,
    pub phase: Phase,
    pub action: Action,
    pub outcome: StepOutcome,
    pub elapsed: Duration,
}

#[derive(Debug, Default)]
pub struct Report {
    /// In completion order.
    pub steps: Vec<StepResult>,
    pub interrupted: bool,
    /// Audit records that could not be written.
    pub audit_errors: Vec<String>,
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Counts {
    pub added: usize,
    pub changed: usize,
    pub destroyed: usize,
}

impl Report {
    /// Every step done and every audit record written: a change that left
    /// no record is not a success.
    pub fn success(&self) -> bool {
        !self.interrupted
            && self.audit_errors.is_empty()
            && self.steps.iter().all(|s| s.outcome == StepOutcome::Done)
    }

    /// Terraform's counting: a replace adds one and destroys one.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in self.steps.iter().filter(|s| s.outcome == StepOutcome::Done) {
            match (s.phase, s.action) {
                (Phase::Destroy, _) => c.destroyed += 1,
                (Phase::Apply, Action::Update) => c.changed += 1,
                (Phase::Apply, _) => c.added += 1,
            }
        }
        c
    }

    pub fn failed(&self) -> impl Iterator<Item = &StepResult> {
        self.steps
            .iter()
            .filter(|s| matches!(s.outcome, StepOutcome::Failed(_)))
    }

    pub fn skipped(&self) -> impl Iterator<Item = &StepResult> {
        self.steps.iter().filter(|s| {
            matches!(
                s.outcome,
                StepOutcome::Skipped { .. } | StepOutcome::Interrupted
            )
        })
    }

    pub fn blocked(&self) -> impl Iterator<Item = &StepResult> {
        self.steps
            .iter()
            .filter(|s| matches!(s.outcome, StepOutcome::Blocked(_)))
    }
}
