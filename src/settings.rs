//! Settings: resolved once, from the command line's global flags, the
//! environment and the terminal, before any command runs. Nothing else
//! reads argv, the environment or whether a stream is a terminal, so a
//! command (and the agent a long-running daemon will call in a loop)
//! behaves the same for the same `Settings`.

use crate::spec::{NodeConfig, SpecError};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub const SYSTEM_CONFIG: &str = "/etc/mvm/node.toml";

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

impl ConfigSource {
    /// `--config` beats `MVM_CONFIG` beats `/etc/mvm/node.toml` beats the
    /// built-in default.
    pub fn resolve(flag: Option<PathBuf>, env: Option<PathBuf>, system: &Path) -> Self {
        match (flag, env) {
            (Some(p), _) => ConfigSource::Flag(p),
            (None, Some(p)) => ConfigSource::Env(p),
            (None, None) if crate::host::fs::input::exists(system) => {
                ConfigSource::System(system.to_path_buf())
            }
            (None, None) => ConfigSource::Builtin,
        }
    }

    pub fn load(&self) -> Result<NodeConfig, SpecError> {
        match self {
            ConfigSource::Flag(p) | ConfigSource::Env(p) | ConfigSource::System(p) => {
                let text =
                    crate::host::fs::input::read_text(p, crate::host::fs::input::Input::NodeConfig)
                        .map_err(|source| SpecError::Read {
                            path: p.clone(),
                            source,
                        })?;
                crate::spec::parse_node(p, &text)
            }
            ConfigSource::Builtin => Ok(NodeConfig::default_config()),
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::Flag(p) => write!(f, "{} (--config)", p.display()),
            ConfigSource::Env(p) => write!(f, "{} ($MVM_CONFIG)", p.display()),
            ConfigSource::System(p) => write!(f, "{}", p.display()),
            ConfigSource::Builtin => f.write_str("built-in defaults (no node.toml)"),
        }
    }
}

/// Which standard streams are terminals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terminal {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// stdout and stderr are one destination (a journal stream, `>log
    /// 2>&1`, one terminal): what goes to both would be read twice.
    pub merged: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub config: ConfigSource,
    /// Color stdout (and stderr, when it is a terminal too).
    pub colors: bool,
    pub terminal: Terminal,
    /// The command line, for audit records and the node lock. mvm takes no
    /// secret on its command line (secrets come from files), so it is safe
    /// to record.
    pub command_line: String,
    /// Who runs mvm, for the record of an override: `uid 0`, and the
    /// sudo user when there is one (`uid 0, SUDO_USER alice`).
    pub operator: String,
}

impl Settings {
    /// Captures argv, `MVM_CONFIG`, `NO_COLOR`, `CLICOLOR_FORCE` and the
    /// terminal once.
    pub fn capture(config_flag: Option<PathBuf>, no_color: bool) -> Self {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let terminal = Terminal {
            stdin: std::io::stdin().is_terminal(),
            stdout: std::io::stdout().is_terminal(),
            stderr: std::io::stderr().is_terminal(),
            merged: crate::host::fs::input::stdout_is_stderr(),
        };
        let force = env("CLICOLOR_FORCE").is_some_and(|v| v != "0");
        let colors = !no_color && env("NO_COLOR").is_none() && (force || terminal.stdout);
        Self {
            config: ConfigSource::resolve(
                config_flag,
                env("MVM_CONFIG").map(PathBuf::from),
                Path::new(SYSTEM_CONFIG),
            ),
            colors,
            terminal,
            command_line: command_line(std::env::args()),
            operator: match env("SUDO_USER") {
                Some(u) => format!(
                    "uid {}, SUDO_USER {}",
                    crate::host::fs::input::uid(),
                    u.to_string_lossy()
                ),
                None => format!("uid {}", crate::host::fs::input::uid()),
            },
        }
    }
}

fn command_line(args: impl Iterator<Item = String>) -> String {
    args.map(|a| {
        if a.is_empty() || a.contains(char::is_whitespace) {
            format!("{a:?}")
        } else {
            a
        }
    })
    .collect::<Vec<_>>()
    .join(" ")
}
