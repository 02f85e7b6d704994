//! The inputs: desired.json (what the control plane wants) and node.toml
//! (how this node is set up). Pure: callers pass text, not paths to open,
//! except `load_*` which read a file and attach its name to every error.

pub mod desired;
pub mod jail;
pub mod json;
pub mod node;
pub mod overrides;
pub mod problems;
pub mod types;

pub use desired::{DesiredState, Profile, RunState, SeccompLevel, TenantSpec};
pub use node::NodeConfig;
pub use problems::{Problem, Problems};

use std::path::{Path, PathBuf};

/// Why an input file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{} is not valid ({})", path.display(), count(.problems.len()))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".into()
    } else {
        format!("{n} problems")
    }
}

impl SpecError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            SpecError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// How much of each input mvm reads at most. A file over its cap is
/// refused with the cap named, so a planted `/dev/zero` or a runaway
/// generator cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// desired.json: 10,000 tenants are about 3 MiB.
    Desired,
    /// node.toml.
    NodeConfig,
    /// A captured observation (`--observed`).
    Observed,
    /// A saved plan (`--plan`): 10,000 tenants are about 60 MiB.
    Plan,
}

impl Input {
    pub const fn cap(self) -> u64 {
        match self {
            Input::Desired => 64 << 20,
            Input::NodeConfig => 1 << 20,
            Input::Observed => 256 << 20,
            Input::Plan => 256 << 20,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Input::Desired => "desired state",
            Input::NodeConfig => "node config",
            Input::Observed => "observed state",
            Input::Plan => "saved plan",
        }
    }
}

/// Parses and validates desired.json text.
pub fn parse_desired(
    path: &Path,
    text: &str,
    node: &NodeConfig,
) -> Result<DesiredState, SpecError> {
    let tree: serde_json::Value = json::parse(text).map_err(|e| {
        let (line, column) = json::error_position(text, &e);
        SpecError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: if text.trim().is_empty() {
                "the file is empty; expected {\"tenants\": [...]}".into()
            } else {
                json_message(&e)
            },
        }
    })?;
    let mut problems = Problems::default();
    match desired::from_tree(&tree, node, &mut problems) {
        Some(d) if problems.is_empty() => Ok(d),
        _ => Err(SpecError::Invalid {
            path: path.to_path_buf(),
            problems: problems.0,
        }),
    }
}

/// Parses node.toml text over the embedded defaults and validates the result.
pub fn parse_node(path: &Path, text: &str) -> Result<NodeConfig, SpecError> {
    let user = node::toml_tree(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        SpecError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().to_string(),
        }
    })?;
    let mut tree = node::toml_tree(node::DEFAULT_NODE_TOML).expect("embedded node.toml parses");
    node::merge(&mut tree, &user);
    let mut problems = Problems::default();
    match node::from_tree(&tree, &mut problems) {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(SpecError::Invalid {
            path: path.to_path_buf(),
            problems: problems.0,
        }),
    }
}

/// serde_json's message without its trailing " at line X column Y", which
/// we print in the `file:line:col` prefix instead.
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}
