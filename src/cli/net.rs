//! `mvm net …`: the node's tenant network. `verify`: a checklist of what
//! the desired state renders against what the node has.

use super::{VerifyArgs, output};
use crate::agent::{self, AgentError, Node};
use crate::settings::Settings;
use console::Style;
use std::process::ExitCode;

pub fn verify(s: &Settings, node: &Node, args: &VerifyArgs) -> Result<ExitCode, AgentError> {
    let (desired, from, _) = node.desired(args.desired.as_deref())?;
    let observed = node.observed(args.observed.as_deref())?;
    let v = agent::verify::verify(&node.config, &desired, &observed)?;
    let text = if args.json {
        serde_json::to_string_pretty(&v).expect("verification serializes") + "\n"
    } else {
        let green = Style::new().green().force_styling(s.colors);
        let red = Style::new().red().bold().force_styling(s.colors);
        let mut out = format!("Network of this node against {}:\n", from.display());
        for c in &v.checks {
            let mark = if c.ok {
                green.apply_to("ok  ").to_string()
            } else {
                red.apply_to("FAIL").to_string()
            };
            // Checks name what the host has (link names, rules): escaped.
            let check = crate::text::one_line(&c.check);
            match &c.detail {
                Some(d) => out.push_str(&format!(
                    "  {mark} {check} ({})\n",
                    crate::text::one_line(d)
                )),
                None => out.push_str(&format!("  {mark} {check}\n")),
            }
        }
        let summary = format!("{} passed, {} failed.", v.passed, v.failed);
        if v.ok {
            out.push_str(&format!("\n{}\n", green.apply_to(summary)));
        } else {
            out.push_str(&format!(
                "\n{}\nRun `mvm agent reconcile` to repair what mvm manages; remove what it does not.\n",
                red.apply_to(summary)
            ));
        }
        out
    };
    output::write_stdout(&text);
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
