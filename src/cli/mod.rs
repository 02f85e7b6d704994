//! Command-line surface: clap definitions and the handlers that format
//! results. No business logic lives here.

pub mod output;

use crate::agent::{self, AgentError, ConfigSource, PlanRequest};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "mvm",
    version,
    about = "Keep a Firecracker microVM host in the state a control plane asks for",
    long_about = "mvm runs many tenants' Firecracker microVMs on one Linux host. It observes the host, \
plans the difference to desired.json Terraform-style, and applies it."
)]
pub struct Cli {
    /// Node config file (default: $MVM_CONFIG, else /etc/mvm/node.toml if it exists, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Never color output (also: NO_COLOR=1). Colors are used only on a terminal.
    #[arg(long, global = true)]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Node agent: observe the host, plan changes.
    #[command(subcommand)]
    Agent(AgentCommand),
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Preview what would change to make the node match desired.json. Never changes the host.
    Plan(PlanArgs),
    /// Print what mvm sees on this host (the input `plan --observed` takes).
    Observe(ObserveArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The desired state (desired.json).
    #[arg(long, value_name = "FILE")]
    pub desired: PathBuf,
    /// Plan against a captured observation (`mvm agent observe --json`) instead of this host.
    #[arg(long, value_name = "FILE")]
    pub observed: Option<PathBuf>,
    /// Delete tenants that are on the node but not in desired.json (kept by default).
    #[arg(long)]
    pub prune: bool,
    /// Print the machine-readable plan (versioned JSON) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// Print the full observed state as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Settings resolved once from flags and the environment.
pub struct Settings {
    pub config: ConfigSource,
    pub colors: bool,
}

impl Settings {
    pub fn resolve(cli: &Cli) -> Self {
        let env_path = std::env::var_os("MVM_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let config = ConfigSource::resolve(
            cli.config.clone(),
            env_path,
            std::path::Path::new(agent::SYSTEM_CONFIG),
        );
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let force = std::env::var("CLICOLOR_FORCE").is_ok_and(|v| v != "0");
        let colors = !cli.no_color && !no_color_env && (force || console::Term::stdout().is_term());
        Self { config, colors }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let settings = Settings::resolve(&cli);
    let result = match &cli.command {
        Command::Agent(AgentCommand::Plan(args)) => plan(&settings, args),
        Command::Agent(AgentCommand::Observe(args)) => observe(&settings, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::report(&e, console::Term::stderr().is_term() && settings.colors);
            ExitCode::from(1)
        }
    }
}

fn plan(s: &Settings, args: &PlanArgs) -> Result<ExitCode, AgentError> {
    let node = s.config.load()?;
    let (plan, _) = agent::plan(&PlanRequest {
        node: &node,
        desired: &args.desired,
        observed: args.observed.as_deref(),
        prune: args.prune,
    })?;
    let text = if args.json {
        serde_json::to_string_pretty(&plan).expect("plan serializes") + "\n"
    } else {
        crate::plan::render::render(&plan, s.colors)
    };
    output::write_stdout(&text);
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn observe(s: &Settings, args: &ObserveArgs) -> Result<ExitCode, AgentError> {
    let node = s.config.load()?;
    let obs = crate::providers::observe(&node);
    let text = if args.json {
        serde_json::to_string_pretty(&obs).expect("observed serializes") + "\n"
    } else {
        output::observed_summary(&obs, &node, s.colors)
    };
    output::write_stdout(&text);
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout, tolerating a closed pipe (`mvm … | head`).
pub(crate) fn write_all(mut w: impl Write, text: &str) {
    let _ = w.write_all(text.as_bytes());
    let _ = w.flush();
}
