//! What the executor tells whoever watches an apply: each step as it
//! starts and ends. The renderers (spinners, log lines) are the CLI's
//! (`cli/progress.rs`).

use super::report::{Phase, StepResult};
use crate::plan::Action;
use crate::resources::ResourceAddr;

pub trait Progress: Send + Sync {
    fn started(&self, addr: &ResourceAddr, phase: Phase, action: Action);
    fn finished(&self, result: &StepResult);
}
