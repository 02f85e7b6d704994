//! `mvm agent` orchestration: load the inputs, observe (or read a captured
//! observation), plan. The CLI formats what these return.

use crate::observed::{OBSERVED_VERSION, Observed};
use crate::plan::{self, Plan, PlanError, PlanOptions};
use crate::spec::{self, NodeConfig, SpecError};
use std::path::{Path, PathBuf};

/// Where the node config comes from, in precedence order.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    /// `--config PATH`
    Flag(PathBuf),
    /// `MVM_CONFIG=PATH`
    Env(PathBuf),
    /// `/etc/mvm/node.toml`, when it exists.
    System(PathBuf),
    /// The embedded default.
    Builtin,
}

pub const SYSTEM_CONFIG: &str = "/etc/mvm/node.toml";

impl ConfigSource {
    /// `--config` beats `MVM_CONFIG` beats `/etc/mvm/node.toml` beats the
    /// built-in default.
    pub fn resolve(flag: Option<PathBuf>, env: Option<PathBuf>, system: &Path) -> Self {
        match (flag, env) {
            (Some(p), _) => ConfigSource::Flag(p),
            (None, Some(p)) => ConfigSource::Env(p),
            (None, None) if system.exists() => ConfigSource::System(system.to_path_buf()),
            (None, None) => ConfigSource::Builtin,
        }
    }

    pub fn load(&self) -> Result<NodeConfig, SpecError> {
        match self {
            ConfigSource::Flag(p) | ConfigSource::Env(p) | ConfigSource::System(p) => {
                spec::parse_node(p, &spec::read(p)?)
            }
            ConfigSource::Builtin => Ok(NodeConfig::default_config()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot read observed state {}: {source}", path.display())]
    ObservedRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: not a valid observed state: {message}", path.display())]
    ObservedParse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: observed state has format_version {found}; this mvm reads {OBSERVED_VERSION}", path.display())]
    ObservedVersion { path: PathBuf, found: u32 },
}

impl AgentError {
    pub fn hint(&self) -> Option<String> {
        match self {
            AgentError::Spec(SpecError::Invalid { .. }) => Some("fix the values above and run the command again".into()),
            AgentError::Spec(SpecError::Syntax { .. }) => Some("fix the syntax at that line and column".into()),
            AgentError::Spec(SpecError::Read { .. }) => Some("check the path and its permissions".into()),
            AgentError::Plan(e) => Some(e.hint()),
            AgentError::ObservedRead { .. } => Some("check the path; capture one with `mvm agent observe --json > observed.json`".into()),
            AgentError::ObservedParse { .. } | AgentError::ObservedVersion { .. } => {
                Some("capture a fresh one on the node with `mvm agent observe --json` from this mvm version".into())
            }
        }
    }
}

pub fn load_observed(path: &Path) -> Result<Observed, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::ObservedRead {
        path: path.to_path_buf(),
        source,
    })?;
    let obs: Observed = serde_json::from_str(&text).map_err(|e| AgentError::ObservedParse {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e
            .to_string()
            .rsplit_once(" at line ")
            .map(|(m, _)| m.to_string())
            .unwrap_or_else(|| e.to_string()),
    })?;
    if obs.format_version != OBSERVED_VERSION {
        return Err(AgentError::ObservedVersion {
            path: path.to_path_buf(),
            found: obs.format_version,
        });
    }
    Ok(obs)
}

pub struct PlanRequest<'a> {
    pub node: &'a NodeConfig,
    pub desired: &'a Path,
    pub observed: Option<&'a Path>,
    pub prune: bool,
}

/// Reads desired.json, observes the host (or reads `--observed`), plans.
pub fn plan(req: &PlanRequest) -> Result<(Plan, Observed), AgentError> {
    let desired = spec::parse_desired(req.desired, &spec::read(req.desired)?, req.node)?;
    let observed = match req.observed {
        Some(p) => load_observed(p)?,
        None => crate::providers::observe(req.node),
    };
    let plan = plan::plan(
        &desired,
        req.node,
        &observed,
        PlanOptions { prune: req.prune },
    )?;
    Ok((plan, observed))
}
