//! `mvm tenant logs`, `mvm tenant metrics`, `mvm node metrics`: printing
//! what `agent::logs` and `agent::metrics` read.

use super::{TenantLogsArgs, TenantMetricsArgs, output};
use crate::agent::logs::{LogsRequest, Source};
use crate::agent::{self, AgentError, Node};
use crate::settings::Settings;
use console::Style;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

fn request(node: &Node, args: &TenantLogsArgs) -> Result<LogsRequest, AgentError> {
    let id = agent::parse_tenant_id(&args.tenant)?;
    let mut sources = Vec::new();
    for (on, s) in [
        (args.vm, Source::Vm),
        (args.firecracker, Source::Firecracker),
        (args.build, Source::Build),
        (args.metadata, Source::Metadata),
    ] {
        if on {
            sources.push(s);
        }
    }
    let since = args
        .since
        .as_deref()
        .map(|s| agent::logs::parse_since(s, node.host.clock.now()))
        .transpose()?;
    Ok(LogsRequest {
        id,
        sources,
        since,
        lines: args.lines,
        previous: args.previous.unwrap_or(0),
    })
}

/// One line as printed: with its source's name when several are shown,
/// escaped on a terminal.
fn show(out: &mut impl std::io::Write, prefix: Option<&str>, line: &[u8], tty: bool) {
    if let Some(p) = prefix {
        let _ = write!(out, "{p} ");
    }
    if tty {
        let _ = out.write_all(crate::state::logs::escape_for_terminal(line).as_bytes());
    } else {
        let _ = out.write_all(line);
    }
    if !line.ends_with(b"\n") {
        let _ = out.write_all(b"\n");
    }
}

pub fn logs(s: &Settings, node: &Node, args: &TenantLogsArgs) -> Result<ExitCode, AgentError> {
    let req = request(node, args)?;
    let tty = s.terminal.stdout;
    let dim = Style::new().dim().force_styling(s.colors);
    let logs = agent::logs::read(node, &req)?;
    let many = logs.len() > 1;
    let width = logs
        .iter()
        .map(|l| l.source.name().len())
        .max()
        .unwrap_or(0);
    let prefix = |src: Source| -> Option<String> {
        many.then(|| {
            dim.apply_to(format!("{:<width$} |", src.name()))
                .to_string()
        })
    };
    {
        let mut out = std::io::stdout().lock();
        for log in &logs {
            match &log.lines {
                None if !many || !args.follow => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "note: no {} log yet ({})",
                        log.source.name(),
                        log.path.display()
                    );
                }
                None => {}
                Some(lines) => {
                    for l in lines {
                        show(&mut out, prefix(log.source).as_deref(), l, tty);
                    }
                }
            }
        }
        let _ = out.flush();
    }
    if args.follow {
        agent::logs::follow(node, &req, &mut |src, line| {
            let mut out = std::io::stdout().lock();
            show(&mut out, prefix(src).as_deref(), line, tty);
            let _ = out.flush();
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tenant_metrics(
    s: &Settings,
    node: &Node,
    args: &TenantMetricsArgs,
) -> Result<ExitCode, AgentError> {
    let id = agent::parse_tenant_id(&args.tenant)?;
    let m = agent::metrics::tenant(node, &id)?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&m).expect("metrics serialize");
        text.push('\n');
        output::write_stdout(&text);
        return Ok(ExitCode::SUCCESS);
    }
    let bold = Style::new().bold().force_styling(s.colors);
    let dim = Style::new().dim().force_styling(s.colors);
    let mut out = String::new();
    let state = match (m.running, m.pid) {
        (true, Some(pid)) => format!("running (pid {pid})"),
        _ => "not running".to_string(),
    };
    let _ = writeln!(out, "{} {}", bold.apply_to(format!("tenant {id}")), state);
    let mut rows: Vec<(String, String)> = Vec::new();
    if let (Some(c), Some(mem)) = (m.vcpus, m.mem_mib) {
        rows.push(("vcpus, memory".into(), format!("{c}, {mem} MiB")));
    }
    if let Some(u) = m.uptime_secs {
        rows.push(("uptime".into(), format!("{u} s")));
    }
    rows.push((
        "starts".into(),
        format!("{} ({} restarts)", m.starts, m.starts.saturating_sub(1)),
    ));
    match &m.firecracker {
        None => {
            let _ = writeln!(out, "{}", dim.apply_to("no metrics from Firecracker yet"));
        }
        Some(f) => {
            let c = |k: &str| f.counter(k).to_string();
            let when = f
                .last_ms
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms as i64).ok())
                .map(|t| format!("{t:.0}"))
                .unwrap_or_else(|| "-".into());
            rows.push((
                "metrics".into(),
                format!(
                    "{} lines, last at {when}{}",
                    f.lines,
                    if m.flushed { " (flushed now)" } else { "" }
                ),
            ));
            rows.push((
                "vcpu exits".into(),
                format!(
                    "io_in {}  io_out {}  mmio_read {}  mmio_write {}  failures {}",
                    c("vcpu.exit_io_in"),
                    c("vcpu.exit_io_out"),
                    c("vcpu.exit_mmio_read"),
                    c("vcpu.exit_mmio_write"),
                    c("vcpu.failures")
                ),
            ));
            rows.push((
                "net rx".into(),
                format!(
                    "{} bytes, {} packets",
                    c("net.rx_bytes_count"),
                    c("net.rx_packets_count")
                ),
            ));
            rows.push((
                "net tx".into(),
                format!(
                    "{} bytes, {} packets",
                    c("net.tx_bytes_count"),
                    c("net.tx_packets_count")
                ),
            ));
            for d in f.drives() {
                let b = |k: &str| f.counter(&format!("block_{d}.{k}")).to_string();
                rows.push((
                    format!("block {d}"),
                    format!(
                        "read {} bytes ({} ops), written {} bytes ({} ops)",
                        b("read_bytes"),
                        b("read_count"),
                        b("write_bytes"),
                        b("write_count")
                    ),
                ));
            }
            rows.push((
                "api requests".into(),
                format!(
                    "GET {}  PUT {}  PATCH {}  (failed {})",
                    f.sum("get_api_requests.", "_count"),
                    f.sum("put_api_requests.", "_count"),
                    f.sum("patch_api_requests.", "_count"),
                    f.sum("get_api_requests.", "_fails")
                        + f.sum("put_api_requests.", "_fails")
                        + f.sum("patch_api_requests.", "_fails")
                ),
            ));
            rows.push((
                "seccomp faults".into(),
                f.gauges
                    .get("seccomp.num_faults")
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ));
        }
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        let _ = writeln!(out, "  {}  {v}", dim.apply_to(format!("{k:<width$}")));
    }
    output::write_stdout(&out);
    Ok(ExitCode::SUCCESS)
}

pub fn node_metrics(node: &Node) -> Result<ExitCode, AgentError> {
    let m = agent::metrics::node(node)?;
    output::write_stdout(&agent::metrics::prometheus(&m));
    Ok(ExitCode::SUCCESS)
}
