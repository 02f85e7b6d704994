//! A VM's logs and metrics as `<state>/tenants/<id>/logs/` keeps them:
//! which streams there are, their files per run (`vm.log` the current
//! run, `vm.log.1` the run before, …), what a file keeps when it would
//! outgrow its bound, and Firecracker's metrics summed over a run
//! (Firecracker writes each counter as what changed since its last
//! line). Pure: the log pump (`host/vm/pump.rs`) and `mvm tenant logs`,
//! `tenant metrics`, `node metrics` do the I/O.
//!
//! Why a pump: Firecracker opens its log and metrics files without
//! `O_APPEND` and never bounds them, and the jailer's one `fsize` limit
//! must let it write its whole data volume. So it never writes a host
//! file: its stdout/stderr is a pipe and its log and metrics are FIFOs,
//! all read by a small process of mvm's (running as nobody, holding only
//! those fds) that writes the files here, each bounded.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Firecracker's and the jailer's stdout and stderr (the serial console,
/// when a guest has one), each line stamped by the pump.
pub const VM_LOG: &str = "vm.log";
/// Firecracker's own log (its `logger`), lines as Firecracker stamps them.
pub const FIRECRACKER_LOG: &str = "firecracker.log";
/// Firecracker's metrics summed over the run ([`RunMetrics`]).
pub const METRICS: &str = "metrics.json";
/// The log of the tenant's last build.
pub const BUILD_LOG: &str = "build.log";
/// The FIFOs Firecracker's `logger` and `metrics` write to: bound into the
/// jail as `fc.log` and `fc.metrics`, made afresh for each launch.
pub const LOG_FIFO: &str = "fc.log.fifo";
pub const METRICS_FIFO: &str = "fc.metrics.fifo";
/// Held (flock) by a run's pump while it runs: the next launch waits for
/// it before it rotates the files.
pub const PUMP_LOCK: &str = "pump.lock";

/// The files a launch rotates: one set per run.
pub const RUN_FILES: &[&str] = &[VM_LOG, FIRECRACKER_LOG, METRICS];

/// The name of `file` of the run `previous` runs back (0: the current).
pub fn run_file(file: &str, previous: u32) -> String {
    match previous {
        0 => file.to_string(),
        n => format!("{file}.{n}"),
    }
}

/// The renames that rotate one file when a run starts, oldest first,
/// keeping `previous` earlier runs: `(from, to)`; `to` `None` removes
/// `from`.
pub fn rotation(file: &str, previous: u32) -> Vec<(String, Option<String>)> {
    let mut out = vec![(run_file(file, previous), None)];
    out.extend(
        (0..previous)
            .rev()
            .map(|n| (run_file(file, n), Some(run_file(file, n + 1)))),
    );
    out
}

/// What a log keeps when appending `more` bytes would take it past `max`:
/// the newest part of `tail` (the file's last bytes) that fits in half of
/// `max`, from a line's start, after a line saying how much went. The
/// caller writes this as the whole file, then appends on.
pub fn compacted(tail: &[u8], file_len: u64, max: u64, stamp: &str) -> Vec<u8> {
    let half = (max / 2) as usize;
    let mut keep = &tail[tail.len().saturating_sub(half)..];
    if keep.len() < tail.len() || (tail.len() as u64) < file_len {
        // Cut at a line's start, unless the kept part is one long line.
        if let Some(nl) = keep.iter().position(|b| *b == b'\n')
            && nl + 1 < keep.len()
        {
            keep = &keep[nl + 1..];
        }
    }
    let dropped = file_len.saturating_sub(keep.len() as u64);
    let mut out = format!(
        "{stamp} mvm: this log reached its bound of {max} bytes; its oldest {dropped} bytes were dropped\n"
    )
    .into_bytes();
    out.extend_from_slice(keep);
    out
}

/// The longest line the pump writes as one: a longer one is cut, the rest
/// following as further lines.
pub const MAX_LINE: usize = 16 << 10;

/// Splits `buf` into the complete lines it holds (each with its newline),
/// leaving an incomplete rest in `buf` — unless the rest is already
/// [`MAX_LINE`] long, or `flush` (the stream ended): then it goes too.
pub fn take_lines(buf: &mut Vec<u8>, flush: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
        let end = start + nl + 1;
        for chunk in buf[start..end].chunks(MAX_LINE) {
            out.push(chunk.to_vec());
        }
        start = end;
    }
    let rest = &buf[start..];
    if !rest.is_empty() && (flush || rest.len() >= MAX_LINE) {
        for chunk in rest.chunks(MAX_LINE) {
            let mut l = chunk.to_vec();
            l.push(b'\n');
            out.push(l);
        }
        start = buf.len();
    }
    buf.drain(..start);
    out
}

/// Firecracker's metrics over one run, as `metrics.json` holds them: each
/// counter summed over every line the run wrote, each gauge as last
/// written, and the last line itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Lines read (one a minute, and one per `FlushMetrics`).
    pub lines: u64,
    /// Lines that were not a JSON object (counted, not summed).
    pub unreadable: u64,
    /// `utc_timestamp_ms` of the first and the last line.
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
    /// Counters by dotted path (`net.rx_bytes_count`), summed.
    pub counters: BTreeMap<String, u64>,
    /// Gauges by dotted path (`latencies_us.pause_vm`,
    /// `seccomp.num_faults`), the last value.
    pub gauges: BTreeMap<String, u64>,
}

/// Whether Firecracker writes the metric at `path` as a value
/// (`SharedStoreMetric`, a latency's min or max) rather than as what
/// changed since its last line.
fn is_gauge(path: &str) -> bool {
    path.starts_with("api_server.")
        || path.starts_with("latencies_us.")
        || path.starts_with("seccomp.")
        || path.ends_with(".min_us")
        || path.ends_with(".max_us")
        || path.ends_with("_time_us")
}

impl RunMetrics {
    /// Adds one line Firecracker wrote.
    pub fn add_line(&mut self, line: &[u8]) {
        self.lines += 1;
        let Ok(serde_json::Value::Object(top)) = serde_json::from_slice(line) else {
            self.unreadable += 1;
            return;
        };
        for (k, v) in &top {
            if k == "utc_timestamp_ms" {
                if let Some(ms) = v.as_u64() {
                    self.first_ms.get_or_insert(ms);
                    self.last_ms = Some(ms);
                }
                continue;
            }
            self.add(k, v);
        }
    }

    fn add(&mut self, path: &str, v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    self.add(&format!("{path}.{k}"), v);
                }
            }
            serde_json::Value::Number(n) => {
                let Some(n) = n.as_u64() else { return };
                if is_gauge(path) {
                    self.gauges.insert(path.to_string(), n);
                } else {
                    let c = self.counters.entry(path.to_string()).or_default();
                    *c = c.saturating_add(n);
                }
            }
            _ => {}
        }
    }

    /// A counter's total (0 when Firecracker never wrote it).
    pub fn counter(&self, path: &str) -> u64 {
        self.counters.get(path).copied().unwrap_or(0)
    }

    /// The sum of the counters below `prefix` whose name ends in `suffix`
    /// (`put_api_requests.` and `_count`: every PUT).
    pub fn sum(&self, prefix: &str, suffix: &str) -> u64 {
        self.counters
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, v)| *v)
            .fold(0, u64::saturating_add)
    }

    /// The block devices Firecracker counted (`block_rootfs` → `rootfs`).
    pub fn drives(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .counters
            .range("block_".to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with("block_"))
            .filter_map(|k| k.strip_prefix("block_")?.split_once('.'))
            .map(|(drive, _)| drive.to_string())
            .collect();
        d.dedup();
        d
    }
}

/// The time a log line starts with, if it does: Firecracker's
/// `2026-12-02T14:21:20.469091058` (UTC: the jail has no time zone), or
/// mvm's and the metadata service's RFC 3339 `…Z`.
pub fn line_time(line: &[u8]) -> Option<jiff::Timestamp> {
    let end = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
    let word = std::str::from_utf8(&line[..end]).ok()?;
    if word.len() < 19 || !word.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    if let Ok(t) = word.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let civil = word.parse::<jiff::civil::DateTime>().ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

/// The lines of `text` to show: those at or after `since` (a line without
/// a time of its own goes with the line before it; lines before the first
/// timed one go only when no `since` is asked), then the last `lines` of
/// those. `tenant`: only the metadata service's lines about that tenant.
pub fn select<'a>(
    text: &'a [u8],
    since: Option<jiff::Timestamp>,
    lines: Option<usize>,
    tenant: Option<&str>,
) -> Vec<&'a [u8]> {
    let word = tenant.map(|t| format!(" tenant={t} "));
    let mut shown = since.is_none();
    let mut out: Vec<&[u8]> = text
        .split_inclusive(|b| *b == b'\n')
        .filter(|l| {
            if let (Some(s), Some(t)) = (since, line_time(l)) {
                shown = t >= s;
            }
            shown
        })
        .filter(|l| {
            word.as_ref().is_none_or(|w| {
                l.windows(w.len()).any(|x| x == w.as_bytes())
                    || l.ends_with(w.trim_end().as_bytes())
            })
        })
        .collect();
    if let Some(n) = lines {
        out.drain(..out.len().saturating_sub(n));
    }
    out
}

/// A line as a terminal shows it: control characters (C0 but tab and the
/// newline, DEL, C1) and bytes that are not UTF-8 escaped as `\xNN` /
/// `\u{NN}`, so a guest cannot move the cursor, retitle the window or
/// fake a prompt on the operator's terminal.
pub fn escape_for_terminal(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\t' => out.push(c),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_rotates_oldest_first_and_drops_what_is_past_the_count() {
        assert_eq!(
            rotation("vm.log", 2),
            vec![
                ("vm.log.2".into(), None),
                ("vm.log.1".into(), Some("vm.log.2".into())),
                ("vm.log".into(), Some("vm.log.1".into())),
            ]
        );
        assert_eq!(rotation("vm.log", 0), vec![("vm.log".into(), None)]);
    }

    #[test]
    fn a_compacted_log_keeps_the_newest_half_from_a_line_start() {
        let text = b"one\ntwo\nthree\nfour\n";
        let kept = compacted(text, text.len() as u64, 20, "T");
        let s = String::from_utf8(kept).unwrap();
        assert!(
            s.starts_with("T mvm: this log reached its bound of 20 bytes"),
            "{s}"
        );
        assert!(s.ends_with("\nfour\n"), "{s}");
        assert!(s.contains("oldest 14 bytes"), "{s}");
        // Never longer than the bound's half plus the note.
        let big = vec![b'x'; 1000];
        let kept = compacted(&big, 5000, 100, "T");
        assert!(kept.len() <= 50 + 120, "{}", kept.len());
    }

    #[test]
    fn lines_are_split_whole_and_a_long_one_is_cut() {
        let mut buf = b"a\nb\npart".to_vec();
        assert_eq!(
            take_lines(&mut buf, false),
            vec![b"a\n".to_vec(), b"b\n".to_vec()]
        );
        assert_eq!(buf, b"part");
        assert_eq!(take_lines(&mut buf, true), vec![b"part\n".to_vec()]);
        assert!(buf.is_empty());
        let mut long = vec![b'y'; MAX_LINE + 5];
        let out = take_lines(&mut long, false);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE + 1);
    }

    #[test]
    fn counters_are_summed_over_lines_and_gauges_keep_the_last_value() {
        let mut m = RunMetrics::default();
        m.add_line(br#"{"utc_timestamp_ms":10,"net":{"rx_bytes_count":5},"latencies_us":{"pause_vm":7},"put_api_requests":{"actions_count":1,"actions_fails":0,"drive_count":2},"block_rootfs":{"read_bytes":4096}}"#);
        m.add_line(br#"{"utc_timestamp_ms":20,"net":{"rx_bytes_count":3},"latencies_us":{"pause_vm":2},"put_api_requests":{"actions_count":1},"seccomp":{"num_faults":0}}"#);
        m.add_line(b"not json");
        assert_eq!(m.lines, 3);
        assert_eq!(m.unreadable, 1);
        assert_eq!((m.first_ms, m.last_ms), (Some(10), Some(20)));
        assert_eq!(m.counter("net.rx_bytes_count"), 8);
        assert_eq!(m.gauges["latencies_us.pause_vm"], 2);
        assert_eq!(m.sum("put_api_requests.", "_count"), 4);
        assert_eq!(m.sum("put_api_requests.", "_fails"), 0);
        assert_eq!(m.drives(), vec!["rootfs".to_string()]);
        assert!(!m.counters.contains_key("seccomp.num_faults"));
    }

    /// A line the real Firecracker build wrote: every series mvm exports
    /// is there, and its store metrics are gauges.
    #[test]
    fn a_real_firecracker_line_has_what_mvm_exports() {
        let line = include_bytes!("../../fixtures/firecracker/metrics-line.json");
        let mut m = RunMetrics::default();
        m.add_line(line);
        assert_eq!(m.unreadable, 0);
        for k in [
            "vcpu.exit_io_in",
            "vcpu.exit_io_out",
            "vcpu.exit_mmio_read",
            "vcpu.exit_mmio_write",
            "vcpu.failures",
            "net.rx_bytes_count",
            "net.tx_bytes_count",
            "net.rx_packets_count",
            "net.tx_packets_count",
            "block_rootfs.read_bytes",
            "block_rootfs.write_bytes",
            "block_rootfs.read_count",
            "block_rootfs.write_count",
            "put_api_requests.actions_count",
            "get_api_requests.instance_info_count",
            "vmm.panic_count",
            "logger.missed_log_count",
        ] {
            assert!(m.counters.contains_key(k), "{k}");
        }
        assert!(m.gauges.contains_key("seccomp.num_faults"));
        assert!(m.gauges.contains_key("latencies_us.pause_vm"));
        assert!(m.gauges.contains_key("api_server.process_startup_time_us"));
        assert!(!m.counters.keys().any(|k| k.ends_with(".max_us")));
        assert_eq!(m.drives(), vec!["rootfs".to_string()]);
    }

    #[test]
    fn since_and_lines_select_by_each_lines_own_time() {
        let text = b"2026-12-02T10:00:00.000000001 [x] a\ncontinued\n2026-12-02T11:00:00Z b\n2026-12-02T12:00:00.5 [x] c\n";
        let since = "2026-12-02T10:30:00Z".parse().unwrap();
        let got = select(text, Some(since), None, None);
        assert_eq!(
            got,
            vec![
                &b"2026-12-02T11:00:00Z b\n"[..],
                b"2026-12-02T12:00:00.5 [x] c\n"
            ]
        );
        let early = "2026-12-02T09:00:00Z".parse().unwrap();
        assert_eq!(select(text, Some(early), None, None).len(), 4);
        assert_eq!(
            select(text, None, Some(1), None),
            vec![&b"2026-12-02T12:00:00.5 [x] c\n"[..]]
        );
    }

    #[test]
    fn metadata_lines_are_picked_by_the_exact_tenant() {
        let text =
            b"T 10.0.0.2 mark=0x1 tenant=a GET /x 200\nT 10.0.0.3 mark=0x2 tenant=a-3 GET /x 200\n";
        assert_eq!(select(text, None, None, Some("a")).len(), 1);
        assert_eq!(select(text, None, None, Some("a-3")).len(), 1);
    }

    #[test]
    fn a_guests_escape_sequences_never_reach_the_terminal() {
        let s = escape_for_terminal(b"ok\x1b]0;owned\x07 \x9b \xff\tend\n");
        assert_eq!(s, "ok\\u{1b}]0;owned\\u{7} \\x9b \\xff\tend\n");
        assert_eq!(
            escape_for_terminal("caf\u{e9} \u{9b}".as_bytes()),
            "caf\u{e9} \\u{9b}"
        );
    }
}
