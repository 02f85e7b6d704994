//! Formatting for the terminal: error reports with hints, and the human
//! summary of an observation.

use crate::agent::AgentError;
use crate::observed::Observed;
use crate::settings::ConfigSource;
use crate::spec::NodeConfig;
use console::Style;
use std::fmt::Write;

pub fn write_stdout(text: &str) {
    write_all(std::io::stdout().lock(), text);
}

/// Prints `error: …`, each located problem, and `hint: …` to stderr.
pub fn report(e: &AgentError, colors: bool) {
    let red = Style::new().red().bold().force_styling(colors);
    let cyan = Style::new().cyan().bold().force_styling(colors);
    // Errors quote what mvm did not write (a build's log, a name found on
    // the host): shown with control characters escaped.
    let clean = |t: String| crate::text::escape_controls(&t).into_owned();
    let mut out = format!("{} {}\n", red.apply_to("error:"), clean(e.to_string()));
    if let AgentError::Spec(s) = e {
        for p in s.problems() {
            let _ = writeln!(out, "  {}", clean(p.to_string()));
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
    write_all(std::io::stderr().lock(), &out);
}

pub fn observed_summary(
    obs: &Observed,
    node: &NodeConfig,
    config: &ConfigSource,
    node_id: Option<&str>,
    colors: bool,
) -> String {
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
        "node id".into(),
        match node_id {
            Some(id) => id.to_string(),
            None => yellow
                .apply_to("not created yet (the first reconcile creates it)")
                .to_string(),
        },
    ));
    rows.push(("config".into(), config.to_string()));
    rows.push(("state dir".into(), node.state_dir.display().to_string()));
    if let Some(cpus) = &obs.cpus_online {
        rows.push(("cpus online".into(), cpus.clone()));
    }
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
    let service = obs
        .metadata_service
        .as_ref()
        .filter(|s| obs.metadata_listener.as_deref() == Some(s.listen.as_str()));
    rows.push((
        "metadata listener".into(),
        match (&obs.metadata_listener, service) {
            (Some(l), Some(s)) => format!("{l} (mvm {}, pid {})", s.version, s.pid),
            (Some(l), None) => yellow.apply_to(format!("{l} (not mvm's)")).to_string(),
            (None, _) => "none".into(),
        },
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
    let idw = obs
        .tenants
        .keys()
        .map(|i| i.as_str().len())
        .max()
        .unwrap_or(0);
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
        let _ = writeln!(out, "  {:<idw$}  {}", id.as_str(), parts.join(", "));
    }
    for i in &obs.ignored {
        let _ = writeln!(out, "  {} {i}", yellow.apply_to("ignored:"));
    }
    out
}

/// The audit log as an aligned table: seq, time, action, resource,
/// result (and error).
pub fn audit_table(log: &[u8]) -> String {
    use crate::security::audit::AuditRecord;
    let rows: Vec<Option<AuditRecord>> = log
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).ok())
        .collect();
    let ok = || rows.iter().flatten();
    let w_seq = ok().map(|r| r.seq.to_string().len()).max().unwrap_or(1);
    let w_action = ok().map(|r| r.action.len()).max().unwrap_or(0);
    let w_res = ok().map(|r| r.resource.len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in &rows {
        match r {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "{:>w_seq$}  {}  {:<w_action$}  {:<w_res$}  {}{}",
                    r.seq,
                    r.timestamp,
                    r.action,
                    r.resource,
                    r.result,
                    // A multi-line error (Nix's) would break the table.
                    r.error
                        .as_ref()
                        .map(|e| format!(": {}", crate::text::one_line(e)))
                        .unwrap_or_default()
                );
            }
            None => out.push_str("(unreadable record: run with --verify)\n"),
        }
    }
    out
}

/// Writes to stdout, tolerating a closed pipe (`mvm … | head`).
/// Every control sequence but a color (which mvm's own styling writes) is
/// escaped on the way out, whatever text it came in: defense in depth
/// behind the escaping where foreign text enters a message.
/// Text written to stdout as it is made, through one buffer, each line
/// made terminal-safe as `write_all` does (whole lines: an escape
/// sequence is never judged in pieces).
pub struct SafeStdout {
    line: String,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl Default for SafeStdout {
    fn default() -> Self {
        Self::new()
    }
}

impl SafeStdout {
    pub fn new() -> Self {
        Self {
            line: String::new(),
            out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
        }
    }

    fn emit(&mut self, upto: usize) {
        use std::io::Write as _;
        let safe = crate::text::terminal_safe(&self.line[..upto]);
        let _ = self.out.write_all(safe.as_bytes());
        drop(safe);
        self.line.drain(..upto);
    }

    /// Writes what is left and flushes.
    pub fn finish(mut self) {
        use std::io::Write as _;
        let n = self.line.len();
        self.emit(n);
        let _ = self.out.flush();
    }
}

impl std::fmt::Write for SafeStdout {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.line.push_str(s);
        // Whole lines, some KiB at a time.
        if self.line.len() >= 8 << 10
            && let Some(nl) = self.line.rfind('\n')
        {
            self.emit(nl + 1);
        }
        Ok(())
    }
}

pub(crate) fn write_all(mut w: impl std::io::Write, text: &str) {
    let text = crate::text::terminal_safe(text);
    let _ = w.write_all(text.as_bytes());
    let _ = w.flush();
}
