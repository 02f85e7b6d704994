//! `mvm tenant secrets set|rotate`: what the operator sees of a tenant's
//! secrets — names, sizes, generations and fingerprints, never a value.

use super::{LifecycleArgs, SecretsSetArgs, output};
use crate::agent::reconcile::Goal;
use crate::agent::secrets::{self as staging, SetRequest, SetUi};
use crate::agent::{self, AgentError, Node};
use crate::security::secrets::Manifest;
use crate::settings::Settings;
use crate::spec::types::TenantId;
use std::process::ExitCode;

struct Operator<'a> {
    settings: &'a Settings,
    /// No question: --auto-approve, or stdin carries the secret.
    no_question: bool,
    lock_timeout: &'a str,
    json: bool,
}

impl SetUi for Operator<'_> {
    fn waiting_for_lock(&self, holder: &str) {
        eprintln!(
            "Waiting for the node lock, held by {} (up to {})...",
            crate::text::one_line(holder),
            self.lock_timeout
        );
    }

    fn confirm(&self, id: &TenantId, m: &Manifest, live: Option<u64>) -> Result<bool, AgentError> {
        let text = describe(id, m, live);
        if self.json {
            crate::cli::output::write_all(std::io::stderr().lock(), &text);
        } else {
            output::write_stdout(&text);
        }
        if self.no_question || !self.settings.terminal.stdin {
            return Ok(true);
        }
        super::reconcile::ask("Stage it?", false)
    }
}

/// What a generation is, as the operator sees it before it is staged.
fn describe(id: &TenantId, m: &Manifest, live: Option<u64>) -> String {
    let files: Vec<String> = m
        .files
        .iter()
        .map(|f| format!("    {} ({} bytes)\n", f.name, f.bytes))
        .collect();
    let vm = match live {
        Some(g) => {
            format!("Its running VM keeps generation {g} until `mvm tenant secrets rotate {id}`.")
        }
        None => format!(
            "No VM of it runs with secrets now: `mvm tenant secrets rotate {id}` (or its next start) uses this one."
        ),
    };
    format!(
        "Tenant {id}: secrets generation {} to stage on its tmpfs, {} file(s), {} bytes\n{}  fingerprint {}\n{vm}\n",
        m.generation,
        m.files.len(),
        m.total_bytes(),
        files.concat(),
        m.fingerprint,
    )
}

pub fn set(s: &Settings, node: &Node, args: &SecretsSetArgs) -> Result<ExitCode, AgentError> {
    let a = &args.lifecycle;
    let lock_timeout = agent::parse_duration(&a.lock_timeout)?;
    let id = agent::parse_tenant_id(&a.tenant)?;
    let files = crate::host::fs::input::read_secrets(&args.from_file, args.name.as_deref())
        .map_err(AgentError::SecretsInput)?;
    let ui = Operator {
        settings: s,
        no_question: a.auto_approve || args.from_file == std::path::Path::new("-"),
        lock_timeout: &a.lock_timeout,
        json: a.json,
    };
    let req = SetRequest {
        id: id.clone(),
        files,
        lock_timeout,
        command_line: &s.command_line,
        operator: &s.operator,
    };
    let done = staging::set(node, req, &ui)?;
    if a.json {
        let doc = match &done {
            Some(st) => serde_json::json!({"outcome": "staged", "success": true, "staged": st}),
            None => serde_json::json!({"outcome": "cancelled", "success": false}),
        };
        output::write_stdout(&format!("{doc}\n"));
        return Ok(if done.is_some() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let Some(st) = done else {
        output::write_stdout("Nothing staged.\n");
        return Ok(ExitCode::from(1));
    };
    let mut out = format!(
        "Staged generation {} of tenant {id}'s secrets.",
        st.generation
    );
    if !st.superseded.is_empty() {
        let list: Vec<String> = st.superseded.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            " It supersedes staged generation(s) {}, removed.",
            list.join(", ")
        ));
    }
    out.push_str(&format!(
        " Make it live with `mvm tenant secrets rotate {id}` (its VM restarts).\n"
    ));
    output::write_stdout(&out);
    Ok(ExitCode::SUCCESS)
}

pub fn rotate(s: &Settings, node: &Node, args: &LifecycleArgs) -> Result<ExitCode, AgentError> {
    let id = agent::parse_tenant_id(&args.tenant)?;
    // What there is to rotate, for the messages (the reconcile itself
    // decides under the node lock).
    let observed = node.observed(None)?;
    let t = observed.tenants.get(&id);
    let newest = t.and_then(|t| t.newest_secrets()).map(|m| m.generation);
    let running = t.is_some_and(|t| t.vm.is_some());
    let live = t.and_then(staging::live_generation);
    let nothing = match (running, live, newest) {
        (true, Some(l), Some(n)) if n <= l => format!(
            "Nothing staged for tenant {id}: its VM runs generation {l}, the newest. `mvm tenant secrets set {id}` stages a new one."
        ),
        (true, Some(l), None) => format!(
            "Nothing staged for tenant {id}: its VM runs generation {l}. `mvm tenant secrets set {id}` stages a new one."
        ),
        (true, None, None) => format!(
            "Nothing staged for tenant {id}: its VM runs without secrets. `mvm tenant secrets set {id}` stages some."
        ),
        (false, _, Some(n)) => format!(
            "Tenant {id} has no running VM: it starts with generation {n}, the newest staged."
        ),
        (false, _, None) => format!(
            "Tenant {id} has no running VM and nothing staged: `mvm tenant secrets set {id}` stages some."
        ),
        _ => format!("Tenant {id}'s VM already runs its newest secrets generation."),
    };
    if let (true, Some(n)) = (running, newest)
        && live.is_none_or(|l| n > l)
    {
        let from = live.map_or("none".to_string(), |l| l.to_string());
        let line = format!(
            "Rotating tenant {id}'s secrets: generation {from} -> {n}. Its VM is replaced to boot with the new drive.\n\n"
        );
        if args.json {
            crate::cli::output::write_all(std::io::stderr().lock(), &line);
        } else {
            output::write_stdout(&line);
        }
    }
    let kept = format!(
        "The VM did not start on the new generation. Both it and the previous one are kept on the tenant's tmpfs; fix the cause above and run `mvm tenant secrets rotate {id}` again."
    );
    super::reconcile::run_goal(s, node, args, Goal::RotateSecrets { id }, &nothing, &kept)
}
