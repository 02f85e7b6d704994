//! `mvm tenant …`: the tenants by hand. `audit`: print a tenant's audit
//! log or check its hash chain; `list` and `status`: what the node has of
//! them against the applied desired state.

use super::{AuditArgs, RevisionsArgs, TenantListArgs, TenantStatusArgs, output};
use crate::agent::status::{TenantRow, TenantStatus};
use crate::agent::{self, AgentError, Node};
use crate::security::audit;
use crate::settings::Settings;
use console::Style;
use std::fmt::Write;
use std::process::ExitCode;

pub fn audit(_s: &Settings, node: &Node, args: &AuditArgs) -> Result<ExitCode, AgentError> {
    let id = agent::parse_tenant_id(&args.tenant)?;
    no_state_dir(&node.config, &id)?;
    let log = agent::history::read_log(node, id.clone())?;
    if log.archived {
        let note = format!(
            "note: {id} was pruned; reading its archived log {}\n",
            log.path.display()
        );
        // With --json on stderr, so stdout stays the log exactly as stored.
        if args.json {
            crate::cli::output::write_all(std::io::stderr().lock(), &note);
        } else {
            output::write_stdout(&note);
        }
    }
    show_log(node, &log, args.verify, args.json)
}

/// Prints an audit log (a table, or `--json` lines exactly as stored), or
/// checks its chain (`--verify`: exit 1 naming every problem).
pub(super) fn show_log(
    node: &Node,
    log: &agent::history::AuditLog,
    verify: bool,
    json: bool,
) -> Result<ExitCode, AgentError> {
    if verify {
        let node_id = node.node_id()?;
        let v = audit::verify(
            &log.log,
            log.head.as_deref(),
            log.owner(),
            node_id.as_deref(),
        );
        for n in &v.notes {
            output::write_stdout(&format!("note: {n}\n"));
        }
        if v.problems.is_empty() {
            output::write_stdout(&format!(
                "{}: {} records, chain intact.\n",
                log.path.display(),
                v.records
            ));
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = format!(
            "{}: {} problem(s) — the log was altered:\n",
            log.path.display(),
            v.problems.len()
        );
        for p in &v.problems {
            out.push_str(&format!("  {p}\n"));
        }
        crate::cli::output::write_all(std::io::stderr().lock(), &out);
        return Ok(ExitCode::from(1));
    }
    if json {
        crate::cli::output::write_all(std::io::stdout().lock(), &String::from_utf8_lossy(&log.log));
        return Ok(ExitCode::SUCCESS);
    }
    output::write_stdout(&output::audit_table(&log.log));
    Ok(ExitCode::SUCCESS)
}

/// The desired state (`--desired`, else the applied one, else none),
/// the observed state, and the plan of one against the other.
fn inputs(
    node: &Node,
    args: &TenantListArgs,
) -> Result<
    (
        crate::spec::DesiredState,
        crate::observed::Observed,
        crate::plan::Plan,
    ),
    AgentError,
> {
    let (desired, notes) = match node.desired(args.desired.as_deref()) {
        Ok((d, _, notes)) => (d, notes),
        // Never reconciled: nothing is desired yet.
        Err(AgentError::NoAppliedDesired { .. }) => (
            crate::spec::DesiredState {
                tenants: Vec::new(),
            },
            Vec::new(),
        ),
        Err(e) => return Err(e),
    };
    let observed = node.observed(args.observed.as_deref())?;
    let mut plan = crate::plan::plan(&desired, &node.config, &observed, Default::default())?;
    plan.overrides = notes;
    Ok((desired, observed, plan))
}

pub fn list(s: &Settings, node: &Node, args: &TenantListArgs) -> Result<ExitCode, AgentError> {
    let (desired, observed, plan) = inputs(node, args)?;
    let rows = agent::status::list(&desired, &observed, &plan);
    let text = if args.json {
        serde_json::to_string_pretty(&rows).expect("rows serialize") + "\n"
    } else {
        table(&rows, s.colors)
    };
    output::write_stdout(&text);
    Ok(ExitCode::SUCCESS)
}

pub fn status(s: &Settings, node: &Node, args: &TenantStatusArgs) -> Result<ExitCode, AgentError> {
    let id = agent::parse_tenant_id(&args.tenant)?;
    let (desired, observed, plan) = inputs(node, &args.from)?;
    let st = agent::status::status(&node.config, &id, &desired, &observed, &plan)
        .ok_or(AgentError::UnknownTenant { id })?;
    let text = if args.from.json {
        serde_json::to_string_pretty(&st).expect("status serializes") + "\n"
    } else {
        detail(&st, s.colors)
    };
    output::write_stdout(&text);
    Ok(ExitCode::SUCCESS)
}

fn short_lock(lock: &str) -> String {
    match lock.char_indices().nth(19) {
        Some((i, _)) => format!("{}…", &lock[..i]),
        None => lock.to_string(),
    }
}

fn revision(r: &TenantRow) -> String {
    match (&r.flake_ref, &r.lock) {
        (Some(f), Some(l)) => format!("{f} {}", short_lock(l)),
        _ => "-".into(),
    }
}

fn table(rows: &[TenantRow], colors: bool) -> String {
    if rows.is_empty() {
        return "No tenants are desired or on this node.\n".into();
    }
    let green = Style::new().green().force_styling(colors);
    let yellow = Style::new().yellow().force_styling(colors);
    let bold = Style::new().bold().force_styling(colors);
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.tenant_id.to_string(),
                match r.pid {
                    Some(p) => format!("{} {p}", r.vm),
                    None => r.vm.to_string(),
                },
                r.ip.clone().unwrap_or_else(|| "-".into()),
                r.uid.map_or("-".into(), |u| u.to_string()),
                revision(r),
                match r.desired_state {
                    Some(d) => d.to_string(),
                    None => "kept (not desired)".into(),
                },
                match r.metadata {
                    Some(true) => "on".into(),
                    Some(false) => "off".into(),
                    None => "-".into(),
                },
                r.pending.to_string(),
            ]
        })
        .collect();
    let head = [
        "TENANT", "VM", "IP", "UID", "REVISION", "DESIRED", "METADATA", "PENDING",
    ];
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, v) in width.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut l = String::new();
        for (i, (v, w)) in c.iter().zip(width).enumerate() {
            let pad = w - v.chars().count();
            let v = match (i, colors) {
                (1, true) if v.starts_with("running") => green.apply_to(v).to_string(),
                (5, true) if v.starts_with("kept") => yellow.apply_to(v).to_string(),
                (7, true) if v != "0" => yellow.apply_to(v).to_string(),
                _ => v.clone(),
            };
            if i + 1 == c.len() {
                l.push_str(&v);
            } else {
                let _ = write!(l, "{v}{}  ", " ".repeat(pad));
            }
        }
        l.push('\n');
        l
    };
    let mut out = bold
        .apply_to(line(&head.map(String::from)).trim_end())
        .to_string();
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
    }
    let by_hand: Vec<String> = rows
        .iter()
        .filter(|r| !r.overrides.is_empty())
        .map(|r| format!("{} ({})", r.tenant_id, r.overrides.join(", ")))
        .collect();
    if !by_hand.is_empty() {
        let _ = writeln!(
            out,
            "\nSet by hand on this node: {} (`mvm tenant status ID` says what; `mvm tenant release ID` hands one back).",
            by_hand.join(", ")
        );
    }
    let pending: usize = rows.iter().map(|r| r.pending).sum();
    if pending > 0 {
        let _ = writeln!(
            out,
            "\n{pending} change(s) pending: `mvm agent plan` shows them, `mvm agent reconcile` makes them."
        );
    }
    out
}

fn detail(st: &TenantStatus, colors: bool) -> String {
    let bold = Style::new().bold().force_styling(colors);
    let yellow = Style::new().yellow().force_styling(colors);
    let r = &st.row;
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push((
        "vm",
        match r.pid {
            Some(p) => format!("{} (pid {p})", r.vm),
            None => r.vm.to_string(),
        },
    ));
    rows.push((
        "desired",
        match (&st.spec, r.desired_state) {
            (Some(s), Some(state)) => format!(
                "{state}, {} vCPU, {} MiB, profile {}, seccomp {}, metadata {}, SSH from the gateway {}",
                s.vcpus,
                s.mem_mib,
                s.profile,
                s.seccomp,
                if r.metadata == Some(true) { "on" } else { "off" },
                if s.ssh_from_gateway { "on" } else { "off" }
            ),
            _ => yellow
                .apply_to("not in the desired state: kept until `mvm agent reconcile --prune`")
                .to_string(),
        },
    ));
    if let Some(s) = &st.spec {
        rows.push(("flake", s.flake_ref.clone()));
    }
    rows.push((
        "identity",
        match (r.uid, st.gid, &r.ip, &st.mac) {
            (Some(u), Some(g), Some(ip), Some(mac)) => format!("uid {u} gid {g}, {ip}, {mac}"),
            _ => "none yet (the first reconcile allocates it)".into(),
        },
    ));
    if let Some(e) = &st.record_error {
        rows.push(("record", yellow.apply_to(e).to_string()));
    }
    rows.push((
        "revision",
        match (&r.flake_ref, &r.lock) {
            (Some(f), Some(l)) => format!("{f} lock {l}"),
            _ => "none built".into(),
        },
    ));
    if let Some(p) = &st.store_path {
        rows.push(("store path", p.clone()));
    }
    rows.push(("secrets", secrets_line(&st.secrets, &r.tenant_id)));
    let (have, missing): (Vec<_>, Vec<_>) = st.resources.iter().partition(|(_, on)| **on);
    let names = |v: &[(&&str, &bool)]| v.iter().map(|(k, _)| **k).collect::<Vec<_>>().join(" ");
    rows.push((
        "on the node",
        if have.is_empty() {
            "nothing".into()
        } else {
            names(&have)
        },
    ));
    if !missing.is_empty() {
        rows.push(("not on it", names(&missing)));
    }
    if !st.override_notes.is_empty() {
        let notes: Vec<String> = st
            .override_notes
            .iter()
            .map(|n| crate::text::one_line(n).into_owned())
            .collect();
        rows.push(("set by hand", notes.join("; ")));
    }
    rows.push((
        "pending",
        if st.changes.is_empty() {
            "nothing: in sync with the desired state".into()
        } else {
            yellow
                .apply_to(format!("{} change(s)", st.changes.len()))
                .to_string()
        },
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{} {}\n", bold.apply_to("Tenant"), r.tenant_id);
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<width$}  {v}");
    }
    for c in &st.changes {
        let _ = writeln!(out, "  {:<width$}    {c}", "");
    }
    out
}

/// `live generation 4 (2 files: a 12 B, b 30 B), staged 5 (1 file)`.
fn secrets_line(
    s: &crate::agent::status::SecretsStatus,
    id: &crate::spec::types::TenantId,
) -> String {
    let one = |g: &crate::agent::status::SecretsGeneration| {
        let files: Vec<String> = g
            .files
            .iter()
            .map(|f| format!("{} {} B", f.name, f.bytes))
            .collect();
        let short = g.fingerprint.get(..24).unwrap_or(&g.fingerprint);
        if files.is_empty() {
            format!("{} ({short}…)", g.generation)
        } else {
            format!("{} ({}; {short}…)", g.generation, files.join(", "))
        }
    };
    let mut out = match &s.live {
        Some(l) => format!("live generation {}", one(l)),
        None if s.staged.is_empty() => "none".to_string(),
        None => "none live".to_string(),
    };
    if !s.staged.is_empty() {
        let staged: Vec<String> = s.staged.iter().map(one).collect();
        out.push_str(&format!(
            ", staged {} — `mvm tenant secrets rotate {id}` makes the newest live",
            staged.join(", ")
        ));
    }
    out
}

pub fn revisions(s: &Settings, node: &Node, args: &RevisionsArgs) -> Result<ExitCode, AgentError> {
    let id = agent::parse_tenant_id(&args.tenant)?;
    no_state_dir(&node.config, &id)?;
    let list = agent::history::read_revisions(node, &id)?;
    if args.json {
        let text = serde_json::to_string_pretty(&list).expect("revisions serialize") + "\n";
        output::write_stdout(&text);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        output::write_stdout(&format!("{id} has no VM start recorded.\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let bold = Style::new().bold().force_styling(s.colors);
    let rows: Vec<[String; 6]> = list
        .iter()
        .rev()
        .map(|r| {
            [
                r.started_at.clone(),
                r.flake_ref.clone(),
                short_lock(&r.lock),
                r.fc_config_sha256.chars().take(12).collect(),
                r.seccomp.clone(),
                if r.jailer { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    let head = ["STARTED", "FLAKE", "LOCK", "CONFIG", "SECCOMP", "JAILER"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, v) in width.iter_mut().zip(r) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |c: &[String]| {
        let cells: Vec<String> = c
            .iter()
            .zip(width)
            .map(|(v, w)| format!("{v}{}", " ".repeat(w - v.chars().count())))
            .collect();
        cells.join("  ").trim_end().to_string()
    };
    let mut out = format!("{}\n", bold.apply_to(line(&head.map(String::from))));
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    output::write_stdout(&out);
    Ok(ExitCode::SUCCESS)
}

/// A node never reconciled has no state dir: say that, not "cannot list".
fn no_state_dir(
    node: &crate::spec::NodeConfig,
    id: &crate::spec::types::TenantId,
) -> Result<(), AgentError> {
    if crate::host::fs::input::exists(&node.state_dir) {
        return Ok(());
    }
    Err(AgentError::NoStateDir {
        id: id.clone(),
        path: node.state_dir.clone(),
    })
}
