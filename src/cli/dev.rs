//! `mvm dev up|down|status|console`: the developer VM, with a banner that
//! says what it is not.

use super::{DevConsoleArgs, DevInitArgs, DevStatusArgs, DevUpArgs, output};
use crate::agent::dev::{self, DevUp};
use crate::agent::{AgentError, Node};
use crate::settings::Settings;
use crate::spec::desired::Profile;
use console::Style;
use std::process::ExitCode;

/// What dev mode is not, said on every `dev up`.
pub const BANNER: &str = "\
DEV MODE — NOT HARDENED. This VM runs Firecracker as root with no jailer, no cgroup, no seccomp
filter of mvm's and no network; it is for iterating on a guest image, never for a tenant.
It takes no node lock and touches no tenant's state, tap, rule or audit log.";

fn banner(s: &Settings) {
    let loud = Style::new()
        .yellow()
        .bold()
        .force_styling(s.terminal.stderr && s.colors);
    eprintln!("{}", loud.apply_to(BANNER));
}

pub fn up(s: &Settings, node: &Node, args: &DevUpArgs) -> Result<ExitCode, AgentError> {
    let flake_ref =
        crate::agent::check_flag("--flake", &args.flake, crate::spec::types::check_flake_ref)?;
    // clap accepted only one of the names.
    let profile = Profile::named(&args.profile).expect("a profile name");
    banner(s);
    let req = DevUp {
        flake_ref,
        profile,
        vcpus: args.vcpus,
        mem_mib: args.mem_mib,
    };
    let r = dev::up(node, &req, &mut |line| eprintln!("dev: {line}"))?;
    let console = dev::files(node).console;
    if args.json {
        output::write_stdout(&format!(
            "{}\n",
            serde_json::json!({"outcome": "running", "dev": r, "console": console})
        ));
    } else {
        output::write_stdout(&format!(
            "Developer VM running: pid {}, {} ({}), {} vCPU, {} MiB.\nConsole: {} (`mvm dev console --follow`). Stop it: `mvm dev down`.\n",
            r.pid,
            r.flake_ref,
            r.store_path.display(),
            r.vcpus,
            r.mem_mib,
            console.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn down(node: &Node) -> Result<ExitCode, AgentError> {
    match dev::down(node)? {
        Some(r) => output::write_stdout(&format!(
            "Developer VM stopped (pid {}, {}); {} removed.\n",
            r.pid,
            r.flake_ref,
            node.layout.dev_dir().display()
        )),
        None => output::write_stdout("No developer VM is up.\n"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(node: &Node, args: &DevStatusArgs) -> Result<ExitCode, AgentError> {
    let st = dev::status(node)?;
    if args.json {
        output::write_stdout(&format!("{}\n", serde_json::json!({ "dev": st })));
        return Ok(ExitCode::SUCCESS);
    }
    let text = match st {
        None => "No developer VM is up.\n".to_string(),
        Some(st) => {
            let state = match (st.running, st.api_answers) {
                (true, true) => "running, API answering",
                (true, false) => "running, API NOT answering",
                (false, _) => "EXITED (`mvm dev console` shows why; `mvm dev down` cleans up)",
            };
            let r = &st.record;
            format!(
                "Developer VM: {state}\n  pid      {}\n  flake    {} (profile {})\n  build    {}\n  machine  {} vCPU, {} MiB\n  started  {}\n  console  {}\n",
                r.pid,
                r.flake_ref,
                r.profile.as_str(),
                r.store_path.display(),
                r.vcpus,
                r.mem_mib,
                r.started,
                st.console.display()
            )
        }
    };
    output::write_stdout(&text);
    Ok(ExitCode::SUCCESS)
}

/// The console's bytes as the guest wrote them (it is the developer's own
/// guest; the last 64 MiB at most), followed by polling while the VM runs.
pub fn console(node: &Node, args: &DevConsoleArgs) -> Result<ExitCode, AgentError> {
    const CAP: u64 = 64 << 20;
    let Some(st) = dev::status(node)? else {
        output::write_stdout("No developer VM is up.\n");
        return Ok(ExitCode::SUCCESS);
    };
    let mut seen = 0usize;
    loop {
        let bytes = node
            .host
            .files
            .read_tail(&st.console, CAP)?
            .unwrap_or_default();
        if bytes.len() > seen {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&bytes[seen..]);
            let _ = out.flush();
            seen = bytes.len();
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if bytes.len() as u64 >= CAP {
            eprintln!(
                "dev: the console is past {} MiB; following stops here (the file: {})",
                CAP >> 20,
                st.console.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if !node
            .host
            .vms
            .dev_status(&dev::files(node), st.record.process())
            .0
        {
            eprintln!("dev: the developer VM exited");
            return Ok(ExitCode::SUCCESS);
        }
        crate::host::service::pause(std::time::Duration::from_millis(200));
    }
}

/// The starter flake `mvm dev init` writes (the one the VM tests build).
pub const STARTER_FLAKE: &str = include_str!("../../fixtures/flake/flake.nix");

pub fn init(args: &DevInitArgs) -> Result<ExitCode, AgentError> {
    crate::host::fs::input::write_starter(
        &args.dir,
        STARTER_FLAKE.as_bytes(),
        &args.busybox,
        &args.kernel,
    )
    .map_err(|e| AgentError::DevInit {
        dir: args.dir.clone(),
        source: e,
    })?;
    let dir = args.dir.display();
    output::write_stdout(&format!(
        "Wrote a starter flake to {dir}: flake.nix, tools/busybox, vmlinux (it builds offline).\n\
         Boot it: mvm dev up --flake path:{dir}\n\
         As a tenant: \"flake_ref\": \"path:{dir}\", \"profile\": \"minimal\"\n"
    ));
    Ok(ExitCode::SUCCESS)
}
