//! Formatting for the terminal: error reports with hints, and the human
//! summary of an observation.

use crate::agent::AgentError;
use crate::observed::Observed;
use crate::spec::NodeConfig;
use console::Style;
use std::fmt::Write;

pub fn write_stdout(text: &str) {
    super::write_all(std::io::stdout().lock(), text);
}

/// Prints `error: …`, each located problem, and `hint: …` to stderr.
pub fn report(e: &AgentError, colors: bool) {
    let red = Style::new().red().bold().force_styling(colors);
    let cyan = Style::new().cyan().bold().force_styling(colors);
    let mut out = format!("{} {e}\n", red.apply_to("error:"));
    if let AgentError::Spec(s) = e {
        for p in s.problems() {
            let _ = writeln!(out, "  {p}");
        }
    }
    if let Some(h) = e.hint() {
        let mut lines = h.lines();
        if let Some(first) = lines.next() {
            let _ = writeln!(out, "{} {first}", cyan.apply_to("hint:"));
        }
        for l in lines {
            let _ = writeln!(out, "      {l}");
        }
    }
    super::write_all(std::io::stderr().lock(), &out);
}

pub fn observed_summary(obs: &Observed, node: &NodeConfig, colors: bool) -> String {
    let bold = Style::new().bold().force_styling(colors);
    let yellow = Style::new().yellow().force_styling(colors);
    let present = |b: bool| {
        if b {
            "present".to_string()
        } else {
            yellow.apply_to("missing").to_string()
        }
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    rows.push((
        "cgroup2".into(),
        match &obs.cgroup {
            Some(c) => format!(
                "{} (controllers: {})",
                c.mount.display(),
                if c.controllers.is_empty() {
                    "none".into()
                } else {
                    c.controllers.iter().cloned().collect::<Vec<_>>().join(" ")
                }
            ),
            None => yellow.apply_to("not mounted").to_string(),
        },
    ));
    rows.push((
        format!("bridge {}", node.bridge.name),
        match &obs.bridge {
            Some(b) => format!(
                "{} {}",
                if b.up { "up" } else { "down" },
                b.addresses.join(" ")
            ),
            None => yellow.apply_to("absent").to_string(),
        },
    ));
    rows.push((
        "nftables".into(),
        match &obs.nft {
            Some(t) if t.is_empty() => "no mvm tables".into(),
            Some(t) => t.keys().cloned().collect::<Vec<_>>().join(", "),
            None => yellow.apply_to("unreadable").to_string(),
        },
    ));
    rows.push((
        format!("firecracker {}", node.firecracker.binary.display()),
        present(obs.binaries.firecracker),
    ));
    rows.push((
        format!("jailer {}", node.firecracker.jailer.display()),
        present(obs.binaries.jailer),
    ));
    rows.push((
        "metadata listener".into(),
        obs.metadata_listener
            .clone()
            .unwrap_or_else(|| "none".into()),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{}\n", bold.apply_to("Node"));
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<width$}  {v}");
    }
    if !obs.facts.is_empty() {
        let _ = writeln!(out, "\n{}", bold.apply_to("Could not probe"));
        let w = obs.facts.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &obs.facts {
            let _ = writeln!(out, "  {k:<w$}  {v}");
        }
    }
    let _ = writeln!(
        out,
        "\n{} ({})",
        bold.apply_to("Tenants"),
        obs.tenants.len()
    );
    for (id, t) in &obs.tenants {
        let mut parts = Vec::new();
        if t.record_error.is_some() {
            parts.push(yellow.apply_to("record unreadable").to_string());
        }
        for (name, on) in [
            ("record", t.record.is_some()),
            ("dir", t.dir.is_some()),
            ("cgroup", t.cgroup.is_some()),
            ("tap", t.tap.is_some()),
            ("nft", t.nft.is_some()),
            ("secrets", t.secrets.is_some()),
        ] {
            if on {
                parts.push(name.to_string());
            }
        }
        if let Some(vm) = &t.vm {
            parts.push(format!("vm pid {}", vm.pid));
        }
        let _ = writeln!(out, "  {id:<11}  {}", parts.join(", "));
    }
    for i in &obs.ignored {
        let _ = writeln!(out, "  {} {i}", yellow.apply_to("ignored:"));
    }
    out
}
