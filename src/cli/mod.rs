//! Command-line surface: the clap definitions (`args.rs`), the handlers
//! that print what the agent returns (one file per command group), the
//! terminal output (`output.rs`, `progress.rs`). No business logic lives
//! here: flags are parsed, `Settings` captured once, the one `Node` built,
//! the agent called, its result printed.

mod args;
mod config;
mod dev;
mod fleet;
mod logs;
mod net;
mod node;
pub mod output;
mod progress;
mod reconcile;
mod secrets;
mod tenant;

use crate::agent::{self, AgentError, Node, PlanRequest};
use crate::settings::Settings;
pub use args::*;
use clap::Parser;
use std::process::ExitCode;

/// Parses argv; a usage error exits 1 like every other error (2 is
/// `plan --detailed-exitcode`'s "changes pending"), `--help` and
/// `--version` exit 0.
pub fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(cli) => run(cli),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let settings = Settings::capture(cli.config.clone(), cli.no_color);
    let result = match &cli.command {
        // These need no node: `serve` is started with every setting given.
        Command::Agent(AgentCommand::Apply { .. }) => Err(AgentError::NoApply),
        Command::Metadata(MetadataCommand::Serve(args)) => serve_metadata(&settings, args),
        Command::Completions(args) => completions(args),
        Command::Config(ConfigCommand::Show(args)) => config::show(&settings, args),
        Command::Man(args) => man(args),
        Command::LogPump(args) => log_pump(args),
        Command::Dev(DevCommand::Init(args)) => dev::init(args),
        Command::Agent(AgentCommand::Run(args)) => {
            node(&settings).and_then(|node| fleet::agent_run(&settings, node, args))
        }
        command => node(&settings).and_then(|node| dispatch(&settings, &node, command)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::report(&e, settings.terminal.stderr && settings.colors);
            ExitCode::from(1)
        }
    }
}

/// The node this command works on: node.toml, and the one real host.
fn node(s: &Settings) -> Result<Node, AgentError> {
    let config = s.config.load()?;
    let host = crate::host::Host::linux(&config.state_dir);
    Ok(Node::new(config, host))
}

fn dispatch(s: &Settings, node: &Node, command: &Command) -> Result<ExitCode, AgentError> {
    use crate::agent::reconcile::OverrideChange;
    use crate::spec::RunState;
    match command {
        Command::Agent(AgentCommand::Plan(args)) => plan(s, node, args),
        Command::Agent(AgentCommand::Observe(args)) => observe(s, node, args),
        Command::Agent(AgentCommand::Reconcile(args)) => reconcile::run(s, node, args),
        Command::Tenant(TenantCommand::Audit(args)) => tenant::audit(s, node, args),
        Command::Tenant(TenantCommand::Logs(args)) => logs::logs(s, node, args),
        Command::Tenant(TenantCommand::Metrics(args)) => logs::tenant_metrics(s, node, args),
        Command::Node(NodeCommand::Metrics) => logs::node_metrics(node),
        Command::Tenant(TenantCommand::List(args)) => tenant::list(s, node, args),
        Command::Tenant(TenantCommand::Status(args)) => tenant::status(s, node, args),
        Command::Tenant(TenantCommand::Revisions(args)) => tenant::revisions(s, node, args),
        Command::Tenant(TenantCommand::Stop(args)) => {
            reconcile::tenant_override(s, node, args, OverrideChange::State(RunState::Stopped))
        }
        Command::Tenant(TenantCommand::Start(args)) => {
            reconcile::tenant_override(s, node, args, OverrideChange::State(RunState::Running))
        }
        Command::Tenant(TenantCommand::Pin(args)) => {
            let change = OverrideChange::Pin {
                flake_ref: agent::check_flag(
                    "--flake",
                    &args.flake,
                    crate::spec::types::check_flake_ref,
                )?,
                lock: args
                    .lock
                    .as_deref()
                    .map(|l| agent::check_flag("--lock", l, crate::spec::types::check_lock_hash))
                    .transpose()?,
            };
            reconcile::tenant_override(s, node, &args.lifecycle, change)
        }
        Command::Tenant(TenantCommand::Unpin(args)) => {
            reconcile::tenant_override(s, node, args, OverrideChange::Unpin)
        }
        Command::Tenant(TenantCommand::Release(args)) => {
            reconcile::tenant_override(s, node, args, OverrideChange::Release)
        }
        Command::Tenant(TenantCommand::Create(args)) => {
            let change = OverrideChange::Create(args.spec(&args.lifecycle.tenant));
            reconcile::tenant_override(s, node, &args.lifecycle, change)
        }
        Command::Tenant(TenantCommand::Rollback(args)) => {
            let change = OverrideChange::Rollback { steps: args.steps };
            reconcile::tenant_override(s, node, &args.lifecycle, change)
        }
        Command::Tenant(TenantCommand::Secrets(SecretsCommand::Set(args))) => {
            secrets::set(s, node, args)
        }
        Command::Tenant(TenantCommand::Secrets(SecretsCommand::Rotate(args))) => {
            secrets::rotate(s, node, args)
        }
        Command::Tenant(TenantCommand::Destroy(args)) => {
            reconcile::tenant_override(s, node, args, OverrideChange::Destroy)
        }
        Command::Net(NetCommand::Verify(args)) => net::verify(s, node, args),
        Command::Node(NodeCommand::Info(args)) => node::info(s, node, args),
        Command::Node(NodeCommand::Audit(args)) => node::audit(node, args),
        Command::Fleet(FleetCommand::Put(args)) => fleet::put(node, args),
        Command::Fleet(FleetCommand::Get(args)) => fleet::get(args),
        Command::Fleet(FleetCommand::Status(args)) => fleet::status(args),
        Command::Dev(DevCommand::Up(args)) => dev::up(s, node, args),
        Command::Dev(DevCommand::Down) => dev::down(node),
        Command::Dev(DevCommand::Status(args)) => dev::status(node, args),
        Command::Dev(DevCommand::Console(args)) => dev::console(node, args),
        Command::Agent(AgentCommand::Apply { .. } | AgentCommand::Run(_))
        | Command::Metadata(_)
        | Command::Completions(_)
        | Command::Config(_)
        | Command::Dev(DevCommand::Init(_))
        | Command::LogPump(_)
        | Command::Man(_) => {
            unreachable!("run() handles the commands that need no node")
        }
    }
}

/// The log pump of one VM run (`host/vm/pump.rs`): nothing to print; it
/// has no stdout or stderr.
fn log_pump(args: &LogPumpArgs) -> Result<ExitCode, AgentError> {
    match crate::host::vm::pump::run(args.max_bytes) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(_) => Ok(ExitCode::from(1)),
    }
}

fn plan(s: &Settings, node: &Node, args: &PlanArgs) -> Result<ExitCode, AgentError> {
    let targets = agent::targets(&args.target)?;
    let (plan, observed) = agent::plan(
        node,
        &PlanRequest {
            desired: &args.desired,
            observed: args.observed.as_deref(),
            prune: args.prune,
            targets: &targets,
        },
    )?;
    if let Some(out) = &args.out {
        agent::save_plan(out, &plan)?;
    }
    if args.json {
        let text = serde_json::to_string_pretty(&plan).expect("plan serializes") + "\n";
        output::write_stdout(&text);
        std::mem::forget(text);
    } else {
        let mut out = output::SafeStdout::new();
        crate::plan::render::render_to(&plan, s.colors, &mut out);
        out.finish();
    }
    let code = if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    };
    // The process ends here: freeing a 10,000-tenant plan piece by piece
    // was a sixth of its run (perf), and the kernel takes it back whole.
    std::mem::forget((plan, observed));
    Ok(code)
}

fn observe(s: &Settings, node: &Node, args: &ObserveArgs) -> Result<ExitCode, AgentError> {
    let obs = node.observed(None)?;
    let text = if args.json {
        serde_json::to_string_pretty(&obs).expect("observed serializes") + "\n"
    } else {
        let node_id = node.node_id()?;
        output::observed_summary(&obs, &node.config, &s.config, node_id.as_deref(), s.colors)
    };
    output::write_stdout(&text);
    Ok(ExitCode::SUCCESS)
}

/// Serves metadata; node.toml is read only for what the flags leave out
/// (reconcile passes them all, so the service it starts does not depend
/// on which node.toml is at the default path).
fn completions(args: &CompletionsArgs) -> Result<ExitCode, AgentError> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mvm", &mut out);
    output::write_stdout(&String::from_utf8_lossy(&out));
    Ok(ExitCode::SUCCESS)
}

/// The manual: the top page on stdout, or every command's page (named
/// `mvm-<command>-<subcommand>.1`) into `--out`.
fn man(args: &ManArgs) -> Result<ExitCode, AgentError> {
    let cmd = <Cli as clap::CommandFactory>::command().name("mvm");
    let render = |c: &clap::Command| {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c.clone())
            .render(&mut buf)
            .expect("rendering into memory cannot fail");
        buf
    };
    let Some(dir) = &args.out else {
        output::write_stdout(&String::from_utf8_lossy(&render(&cmd)));
        return Ok(ExitCode::SUCCESS);
    };
    let mut pages = vec![("mvm".to_string(), cmd.clone())];
    let mut i = 0;
    while i < pages.len() {
        let (name, c) = pages[i].clone();
        for sub in c
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let full = format!("{name}-{}", sub.get_name());
            pages.push((full.clone(), sub.clone().name(full)));
        }
        i += 1;
    }
    for (name, c) in &pages {
        let path = dir.join(format!("{name}.1"));
        crate::host::fs::input::write_output(&path, &render(c)).map_err(|source| {
            AgentError::WriteOutput {
                path: path.clone(),
                source,
            }
        })?;
    }
    output::write_stdout(&format!(
        "Wrote {} manual pages into {}.\n",
        pages.len(),
        dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

fn serve_metadata(s: &Settings, args: &ServeArgs) -> Result<ExitCode, AgentError> {
    if let Some(dir) = &args.state_dir
        && !crate::host::fs::input::is_dir(dir)
    {
        return Err(AgentError::BadStateDir {
            path: dir.clone(),
            why: "not a directory (it does not exist, or is something else)".into(),
        });
    }
    let config = match (
        args.listen,
        &args.state_dir,
        args.rate,
        args.burst,
        args.tokens,
    ) {
        (Some(listen), Some(dir), Some(per_sec), Some(burst), Some(tokens)) => {
            crate::host::metadata_server::Config {
                listen,
                state_dir: dir.clone(),
                policy: crate::security::metadata::Policy {
                    per_sec,
                    burst,
                    tokens,
                },
                log_max_bytes: args.log_max_bytes,
            }
        }
        _ => {
            let node = s.config.load()?;
            crate::host::metadata_server::Config {
                listen: args.listen.unwrap_or(std::net::SocketAddr::from((
                    node.bridge.gateway,
                    node.metadata.port,
                ))),
                state_dir: args.state_dir.clone().unwrap_or(node.state_dir.clone()),
                policy: crate::security::metadata::Policy {
                    per_sec: args.rate.unwrap_or(node.metadata.rate_per_sec),
                    burst: args.burst.unwrap_or(node.metadata.burst),
                    tokens: args.tokens.unwrap_or(node.metadata.tokens),
                },
                log_max_bytes: args.log_max_bytes,
            }
        }
    };
    crate::host::metadata_server::run(config).map_err(AgentError::Metadata)?;
    Ok(ExitCode::SUCCESS)
}
