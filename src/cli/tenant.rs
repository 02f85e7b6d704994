//! `mvm tenant …`: commands on one tenant. For now `audit`: print a
//! tenant's audit log or check its hash chain.

use super::{AuditArgs, output};
use crate::agent::{self, AgentError};
use crate::providers::host::Host;
use crate::security::audit;
use crate::settings::Settings;
use std::process::ExitCode;

pub fn audit(s: &Settings, args: &AuditArgs) -> Result<ExitCode, AgentError> {
    let node = s.config.load()?;
    let id = agent::tenant::parse_id(&args.tenant)?;
    let log = agent::tenant::read_log(&node, id, &Host::linux(&node.state_dir))?;
    if log.archived {
        let note = format!(
            "note: {} was pruned; reading its archived log {}\n",
            log.id,
            log.path.display()
        );
        // With --json on stderr, so stdout stays the log exactly as stored.
        if args.json {
            super::write_all(std::io::stderr().lock(), &note);
        } else {
            output::write_stdout(&note);
        }
    }
    if args.verify {
        let node_id = agent::node_id(&node)?;
        let v = audit::verify(&log.log, log.head.as_deref(), &log.id, node_id.as_deref());
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
        super::write_all(std::io::stderr().lock(), &out);
        return Ok(ExitCode::from(1));
    }
    if args.json {
        super::write_all(std::io::stdout().lock(), &String::from_utf8_lossy(&log.log));
        return Ok(ExitCode::SUCCESS);
    }
    output::write_stdout(&output::audit_table(&log.log));
    Ok(ExitCode::SUCCESS)
}
