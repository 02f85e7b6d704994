//! `mvm node …`: the node itself. `info`: identity and inventory; `audit`:
//! the node's own audit log.

use super::{NodeAuditArgs, NodeInfoArgs, output};
use crate::agent::{self, AgentError, Node};
use crate::settings::Settings;
use console::Style;
use std::fmt::Write;
use std::process::ExitCode;

pub fn info(s: &Settings, node: &Node, args: &NodeInfoArgs) -> Result<ExitCode, AgentError> {
    let obs = node.observed(None)?;
    let facts = node.host.probe.host_facts(&node.config);
    let mut i = agent::node::node_info(
        &node.config,
        &s.config.to_string(),
        node.node_id()?,
        &node.host.identity.hostname(),
        &obs,
        &facts,
    );
    // Counted here, not in `node_info`: it reads only what it is given.
    i.tenants.overridden = match node.overrides() {
        Ok(o) => o.tenants.len(),
        Err(e) => {
            i.problems.insert("overrides".into(), e.to_string());
            0
        }
    };
    let text = if args.json {
        serde_json::to_string_pretty(&i).expect("node info serializes") + "\n"
    } else {
        render(&i, s.colors)
    };
    output::write_stdout(&text);
    Ok(ExitCode::SUCCESS)
}

pub fn audit(node: &Node, args: &NodeAuditArgs) -> Result<ExitCode, AgentError> {
    let log = agent::history::read_node_log(node)?;
    if log.log.is_empty() && !args.json && !args.verify {
        output::write_stdout(&format!(
            "{}: no node change recorded yet.\n",
            log.path.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    super::tenant::show_log(node, &log, args.verify, args.json)
}

fn render(i: &agent::node::NodeInfo, colors: bool) -> String {
    let bold = Style::new().bold().force_styling(colors);
    let yellow = Style::new().yellow().force_styling(colors);
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push(("mvm", i.mvm_version.clone()));
    rows.push(("hostname", i.hostname.clone()));
    rows.push((
        "lima",
        match &i.lima_instance {
            Some(l) => format!("instance {l}"),
            None => "none".to_string(),
        },
    ));
    rows.push((
        "kvm",
        match &i.kvm.problem {
            None => "/dev/kvm available".to_string(),
            Some(why) => yellow.apply_to(why).to_string(),
        },
    ));
    rows.push(("kernel", i.kernel.clone()));
    if let Some(c) = &i.cpus_online {
        rows.push(("cpus online", c.clone()));
    }
    if let Some(m) = i.memory_mib {
        rows.push(("memory", format!("{m} MiB")));
    }
    rows.push(("config", i.config.clone()));
    rows.push(("state dir", i.state_dir.clone()));
    rows.push((
        "cgroup2",
        match &i.cgroup.mount {
            Some(m) => format!(
                "{m} (controllers: {})",
                if i.cgroup.controllers.is_empty() {
                    "none".to_string()
                } else {
                    i.cgroup.controllers.join(" ")
                }
            ),
            None => yellow.apply_to("not mounted").to_string(),
        },
    ));
    if !i.cgroup.missing.is_empty() {
        let what = if i.cgroup.allow_missing {
            "tenants run WITHOUT those limits (cgroup.allow_missing_controllers)"
        } else {
            "tenant cgroups are blocked until cgroup2 offers them"
        };
        rows.push((
            "",
            yellow
                .apply_to(format!(
                    "missing {} (bound to cgroup v1 on a hybrid host?): {what}",
                    i.cgroup.missing.join(", ")
                ))
                .to_string(),
        ));
    }
    for (name, b) in &i.binaries {
        let state = match (&b.version, b.installed) {
            (Some(v), _) => v.clone(),
            (None, true) => "installed".to_string(),
            (None, false) => yellow.apply_to("missing").to_string(),
        };
        rows.push((name.as_str(), format!("{}  {state}", b.path)));
    }
    let n = &i.network;
    rows.push((
        "bridge",
        format!(
            "{} {} gateway {}: {}",
            n.bridge,
            n.subnet,
            n.gateway,
            if n.bridge_present {
                "present".to_string()
            } else {
                yellow.apply_to("absent").to_string()
            }
        ),
    ));
    rows.push((
        "nft",
        match (&i.nftables.binary, i.nftables.kernel) {
            (Some(v), true) => format!("{v}, kernel nf_tables present"),
            (Some(v), false) => yellow
                .apply_to(format!("{v}; the kernel has no nf_tables"))
                .to_string(),
            (None, _) => yellow.apply_to("no nft binary").to_string(),
        },
    ));
    rows.push((
        "nftables",
        match &n.nft_tables {
            Some(t) if t.is_empty() => "no mvm tables".to_string(),
            Some(t) => t.join(", "),
            None => yellow.apply_to("unreadable").to_string(),
        },
    ));
    let m = &i.metadata;
    rows.push((
        "metadata",
        format!(
            "{} -> {}: {}",
            m.address,
            m.listen,
            match (&m.service, &m.foreign_listener) {
                (Some(s), _) => format!(
                    "running (pid {}, mvm {}, {}/s burst {}, tokens {})",
                    s.pid,
                    s.version,
                    s.rate_per_sec,
                    s.burst,
                    s.tokens.as_str()
                ),
                (None, Some(f)) => yellow
                    .apply_to(format!("held by something else at {f}"))
                    .to_string(),
                (None, None) => "not running".to_string(),
            }
        ),
    ));
    let t = &i.tenants;
    let mut tenants = format!("{} on the node, {} VMs running", t.on_node, t.vms_running);
    if t.ignored > 0 {
        let _ = write!(tenants, ", {} ignored names under tenants/", t.ignored);
    }
    if t.overridden > 0 {
        let _ = write!(tenants, ", {} with overrides set by hand", t.overridden);
    }
    rows.push(("tenants", tenants));
    for (n, a) in i.advice.iter().enumerate() {
        rows.push((
            if n == 0 { "to do" } else { "" },
            yellow.apply_to(a).to_string(),
        ));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!(
        "{} {}\n",
        bold.apply_to("Node"),
        i.node_id
            .clone()
            .unwrap_or_else(|| "(no id yet: the first reconcile creates it)".into())
    );
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<width$}  {v}");
    }
    if !i.problems.is_empty() {
        let _ = writeln!(out, "\n{}", bold.apply_to("Could not probe"));
        let w = i.problems.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &i.problems {
            let _ = writeln!(out, "  {k:<w$}  {v}");
        }
    }
    out
}
