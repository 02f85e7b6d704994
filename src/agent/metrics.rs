//! `mvm tenant metrics` and `mvm node metrics`: each VM's Firecracker
//! counters (summed over its run by its log pump, `state/logs.rs`), its
//! state from the record and the probe, the last reconcile and the
//! metadata service's counters — and the node's metrics in the Prometheus
//! text exposition format (version 0.0.4), the format fleets scrape.
//! Reading only; rendering is pure.

use super::{AgentError, Node};
use crate::host::ProcessRef;
use crate::spec::types::TenantId;
use crate::state::logs::{self, RunMetrics};
use crate::state::{LastReconcile, TenantRecord};
use serde::Serialize;
use std::fmt::Write;

/// One tenant's VM as the metrics show it.
#[derive(Debug, Clone, Serialize)]
pub struct VmMetrics {
    pub tenant: TenantId,
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_mib: Option<u32>,
    /// Launches of its VM; restarts are the launches after the first.
    pub starts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    /// Whether Firecracker was asked to flush, and its pump wrote them.
    pub flushed: bool,
    /// The current (or, stopped, the last) run's metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firecracker: Option<RunMetrics>,
}

/// The node's metrics.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    pub version: String,
    pub vms: Vec<VmMetrics>,
    pub last_reconcile: Option<LastReconcile>,
    pub metadata_up: bool,
    pub metadata: Option<crate::security::metadata::Stats>,
}

/// Reads a JSON file a process rewrites in place: a read that caught it
/// half written is tried again.
fn read_json<T: serde::de::DeserializeOwned>(
    node: &Node,
    path: &std::path::Path,
) -> Result<Option<T>, AgentError> {
    for _ in 0..5 {
        match node.host.files.read(path, 4 << 20)? {
            None => return Ok(None),
            Some(b) => {
                if let Ok(v) = serde_json::from_slice(&b) {
                    return Ok(Some(v));
                }
            }
        }
    }
    Ok(None)
}

fn uptime(now: jiff::Timestamp, started: Option<&str>) -> Option<u64> {
    let t: jiff::Timestamp = started?.parse().ok()?;
    Some(now.duration_since(t).as_secs().max(0) as u64)
}

fn vm_metrics(
    node: &Node,
    id: &TenantId,
    rec: &TenantRecord,
    running: Option<ProcessRef>,
    flush: bool,
) -> Result<VmMetrics, AgentError> {
    let vm = rec.vm.as_ref();
    let metrics_path = node.layout.log_file(id, logs::METRICS, 0);
    let mut flushed = false;
    if let (Some(r), Some(v), true) = (running, vm, flush) {
        let layout = crate::spec::jail::JailLayout::new(
            &node.config.state_dir,
            &node.config.firecracker.binary,
            id,
        );
        let uid = if v.jailer { rec.uid } else { 0 };
        flushed = node
            .host
            .vms
            .flush_metrics(r, uid, &layout.api_socket, &metrics_path)?;
    }
    let now = node.host.clock.now();
    Ok(VmMetrics {
        tenant: id.clone(),
        running: running.is_some(),
        pid: running.map(|r| r.pid),
        vcpus: vm.map(|v| v.vcpus),
        mem_mib: vm.map(|v| v.mem_mib),
        starts: rec.vm_starts,
        started_at: vm.and_then(|v| v.started_at.clone()),
        uptime_secs: running.and_then(|_| uptime(now, vm.and_then(|v| v.started_at.as_deref()))),
        flushed,
        firecracker: read_json(node, &metrics_path)?,
    })
}

/// The tenant's VM: a running one is asked to flush its metrics first.
pub fn tenant(node: &Node, id: &TenantId) -> Result<VmMetrics, AgentError> {
    super::logs::check_tenant(node, id)?;
    let Some(bytes) = node.host.files.read(&node.layout.record(id), 1 << 20)? else {
        return Err(AgentError::UnknownTenant { id: id.clone() });
    };
    let rec: TenantRecord = serde_json::from_slice(&bytes)
        .map_err(|e| AgentError::Logs(format!("{}: {e}", node.layout.record(id).display())))?;
    let cgroup = format!("{}/{id}", node.config.cgroup.parent);
    let running = rec.vm.as_ref().and_then(|v| {
        let uid = if v.jailer { rec.uid } else { 0 };
        node.host
            .vms
            .identify(v.pid, uid, &cgroup, id.as_str())
            .filter(|r| r.start_time == v.start_time)
    });
    vm_metrics(node, id, &rec, running, true)
}

/// The whole node, from one probe; no VM is asked to flush (Firecracker
/// writes its metrics every minute on its own).
pub fn node(node: &Node) -> Result<NodeMetrics, AgentError> {
    let observed = node.host.probe.observe(&node.config);
    // A node that never reconciled has no state dir yet: nothing to read.
    let state = node.host.files.is_dir(node.layout.root());
    let mut vms = Vec::new();
    for (id, t) in &observed.tenants {
        let Some(rec) = &t.record else { continue };
        let running = match (&t.vm, &rec.vm) {
            (Some(p), Some(v)) if p.pid == v.pid && p.start_time == v.start_time => {
                Some(ProcessRef {
                    pid: p.pid,
                    start_time: p.start_time,
                })
            }
            _ => None,
        };
        vms.push(vm_metrics(node, id, rec, running, false)?);
    }
    Ok(NodeMetrics {
        version: env!("CARGO_PKG_VERSION").to_string(),
        vms,
        last_reconcile: if state {
            read_json(node, &node.layout.last_reconcile())?
        } else {
            None
        },
        metadata_up: observed.metadata_service.is_some(),
        metadata: if state {
            read_json(node, &node.layout.metadata_stats())?
        } else {
            None
        },
    })
}

/// Every series `prometheus` writes: name, type, help. The README's table
/// and the test that parses the output both come from this list.
pub const SERIES: &[(&str, &str, &str)] = &[
    (
        "mvm_build_info",
        "gauge",
        "mvm's version, as the label version; always 1.",
    ),
    (
        "mvm_node_tenants",
        "gauge",
        "Tenants with a record on this node.",
    ),
    ("mvm_node_vms_running", "gauge", "Tenant VMs running."),
    (
        "mvm_node_last_reconcile_timestamp_seconds",
        "gauge",
        "When the last reconcile finished (Unix time).",
    ),
    (
        "mvm_node_last_reconcile_duration_seconds",
        "gauge",
        "How long the last reconcile took.",
    ),
    (
        "mvm_node_last_reconcile_success",
        "gauge",
        "1 if the last reconcile converged (nothing to do, or every step done), else 0.",
    ),
    (
        "mvm_node_last_reconcile_changes",
        "gauge",
        "Steps the last reconcile did, by action (add, change, destroy; a replace is one add and one destroy).",
    ),
    (
        "mvm_node_last_reconcile_failed_resources",
        "gauge",
        "Resources whose step failed in the last reconcile.",
    ),
    (
        "mvm_node_last_reconcile_blocked_resources",
        "gauge",
        "Resources the last reconcile could not carry out on this node (blocked).",
    ),
    (
        "mvm_metadata_up",
        "gauge",
        "1 if the metadata service mvm started is running.",
    ),
    (
        "mvm_metadata_requests_total",
        "counter",
        "Metadata requests answered since the service started, by HTTP status (closed: connections over a cap, closed unread).",
    ),
    (
        "mvm_tenant_vm_up",
        "gauge",
        "1 if the tenant's VM is running.",
    ),
    ("mvm_tenant_vcpus", "gauge", "vCPUs of the tenant's VM."),
    (
        "mvm_tenant_memory_bytes",
        "gauge",
        "Memory of the tenant's VM.",
    ),
    (
        "mvm_tenant_vm_starts_total",
        "counter",
        "Times the tenant's VM was launched.",
    ),
    (
        "mvm_tenant_vm_restarts_total",
        "counter",
        "Launches of the tenant's VM after its first.",
    ),
    (
        "mvm_tenant_vm_uptime_seconds",
        "gauge",
        "Seconds since the running VM was launched.",
    ),
    (
        "mvm_tenant_metrics_timestamp_seconds",
        "gauge",
        "When Firecracker last wrote the VM's metrics (Unix time).",
    ),
    (
        "mvm_tenant_vcpu_exits_total",
        "counter",
        "vCPU exits to the VMM in this run, by kind (io_in, io_out, mmio_read, mmio_write).",
    ),
    (
        "mvm_tenant_vcpu_failures_total",
        "counter",
        "vCPU run failures in this run.",
    ),
    (
        "mvm_tenant_net_receive_bytes_total",
        "counter",
        "Bytes the guest received in this run.",
    ),
    (
        "mvm_tenant_net_transmit_bytes_total",
        "counter",
        "Bytes the guest sent in this run.",
    ),
    (
        "mvm_tenant_net_receive_packets_total",
        "counter",
        "Packets the guest received in this run.",
    ),
    (
        "mvm_tenant_net_transmit_packets_total",
        "counter",
        "Packets the guest sent in this run.",
    ),
    (
        "mvm_tenant_block_read_bytes_total",
        "counter",
        "Bytes read from each drive in this run.",
    ),
    (
        "mvm_tenant_block_write_bytes_total",
        "counter",
        "Bytes written to each drive in this run.",
    ),
    (
        "mvm_tenant_block_reads_total",
        "counter",
        "Read operations on each drive in this run.",
    ),
    (
        "mvm_tenant_block_writes_total",
        "counter",
        "Write operations on each drive in this run.",
    ),
    (
        "mvm_tenant_firecracker_api_requests_total",
        "counter",
        "Requests to the VM's Firecracker API in this run, by method.",
    ),
    (
        "mvm_tenant_firecracker_api_request_failures_total",
        "counter",
        "Failed requests to the VM's Firecracker API in this run, by method.",
    ),
    (
        "mvm_tenant_seccomp_faults_total",
        "counter",
        "Syscalls the VM's seccomp filter refused (Firecracker exits on the first).",
    ),
    (
        "mvm_tenant_firecracker_panics_total",
        "counter",
        "Firecracker panics in this run.",
    ),
    (
        "mvm_tenant_firecracker_log_lines_dropped_total",
        "counter",
        "Log lines Firecracker could not write in this run (its log pump lagging).",
    ),
];

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The node in the Prometheus text format: each series of [`SERIES`],
/// its `# HELP` and `# TYPE`, then its samples.
pub fn prometheus(m: &NodeMetrics) -> String {
    let mut samples: std::collections::BTreeMap<&str, Vec<(String, String)>> = Default::default();
    let mut put = |name: &'static str, labels: &[(&str, &str)], value: String| {
        let l = if labels.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        };
        samples.entry(name).or_default().push((l, value));
    };
    put("mvm_build_info", &[("version", &m.version)], "1".into());
    put("mvm_node_tenants", &[], m.vms.len().to_string());
    put(
        "mvm_node_vms_running",
        &[],
        m.vms.iter().filter(|v| v.running).count().to_string(),
    );
    if let Some(r) = &m.last_reconcile {
        if let Ok(t) = r.at.parse::<jiff::Timestamp>() {
            put(
                "mvm_node_last_reconcile_timestamp_seconds",
                &[],
                format!("{:.3}", t.as_millisecond() as f64 / 1000.0),
            );
        }
        put(
            "mvm_node_last_reconcile_duration_seconds",
            &[],
            format!("{:.3}", r.duration_ms as f64 / 1000.0),
        );
        put(
            "mvm_node_last_reconcile_success",
            &[],
            u8::from(r.result == "converged").to_string(),
        );
        for (action, n) in [
            ("add", r.added),
            ("change", r.changed),
            ("destroy", r.destroyed),
        ] {
            put(
                "mvm_node_last_reconcile_changes",
                &[("action", action)],
                n.to_string(),
            );
        }
        put(
            "mvm_node_last_reconcile_failed_resources",
            &[],
            r.failed.to_string(),
        );
        put(
            "mvm_node_last_reconcile_blocked_resources",
            &[],
            r.blocked.to_string(),
        );
    }
    put("mvm_metadata_up", &[], u8::from(m.metadata_up).to_string());
    if let Some(s) = &m.metadata {
        for (code, n) in &s.requests {
            put(
                "mvm_metadata_requests_total",
                &[("status", &code.to_string())],
                n.to_string(),
            );
        }
        put(
            "mvm_metadata_requests_total",
            &[("status", "closed")],
            s.closed.to_string(),
        );
    }
    for v in &m.vms {
        let t = v.tenant.as_str();
        let l = [("tenant", t)];
        put("mvm_tenant_vm_up", &l, u8::from(v.running).to_string());
        if let (Some(c), Some(mem)) = (v.vcpus, v.mem_mib) {
            put("mvm_tenant_vcpus", &l, c.to_string());
            put(
                "mvm_tenant_memory_bytes",
                &l,
                (u64::from(mem) << 20).to_string(),
            );
        }
        put("mvm_tenant_vm_starts_total", &l, v.starts.to_string());
        put(
            "mvm_tenant_vm_restarts_total",
            &l,
            v.starts.saturating_sub(1).to_string(),
        );
        if !v.running {
            continue;
        }
        if let Some(u) = v.uptime_secs {
            put("mvm_tenant_vm_uptime_seconds", &l, u.to_string());
        }
        let Some(f) = &v.firecracker else { continue };
        if let Some(ms) = f.last_ms {
            put(
                "mvm_tenant_metrics_timestamp_seconds",
                &l,
                format!("{:.3}", ms as f64 / 1000.0),
            );
        }
        for exit in ["io_in", "io_out", "mmio_read", "mmio_write"] {
            put(
                "mvm_tenant_vcpu_exits_total",
                &[("tenant", t), ("exit", exit)],
                f.counter(&format!("vcpu.exit_{exit}")).to_string(),
            );
        }
        let c = |p: &str| f.counter(p).to_string();
        put("mvm_tenant_vcpu_failures_total", &l, c("vcpu.failures"));
        put(
            "mvm_tenant_net_receive_bytes_total",
            &l,
            c("net.rx_bytes_count"),
        );
        put(
            "mvm_tenant_net_transmit_bytes_total",
            &l,
            c("net.tx_bytes_count"),
        );
        put(
            "mvm_tenant_net_receive_packets_total",
            &l,
            c("net.rx_packets_count"),
        );
        put(
            "mvm_tenant_net_transmit_packets_total",
            &l,
            c("net.tx_packets_count"),
        );
        for d in f.drives() {
            let dl = [("tenant", t), ("drive", d.as_str())];
            let b = |k: &str| f.counter(&format!("block_{d}.{k}")).to_string();
            put("mvm_tenant_block_read_bytes_total", &dl, b("read_bytes"));
            put("mvm_tenant_block_write_bytes_total", &dl, b("write_bytes"));
            put("mvm_tenant_block_reads_total", &dl, b("read_count"));
            put("mvm_tenant_block_writes_total", &dl, b("write_count"));
        }
        for (method, prefix) in [
            ("GET", "get_api_requests."),
            ("PUT", "put_api_requests."),
            ("PATCH", "patch_api_requests."),
        ] {
            let ml = [("tenant", t), ("method", method)];
            put(
                "mvm_tenant_firecracker_api_requests_total",
                &ml,
                f.sum(prefix, "_count").to_string(),
            );
            put(
                "mvm_tenant_firecracker_api_request_failures_total",
                &ml,
                f.sum(prefix, "_fails").to_string(),
            );
        }
        put(
            "mvm_tenant_seccomp_faults_total",
            &l,
            f.gauges
                .get("seccomp.num_faults")
                .copied()
                .unwrap_or(0)
                .to_string(),
        );
        put(
            "mvm_tenant_firecracker_panics_total",
            &l,
            c("vmm.panic_count"),
        );
        put(
            "mvm_tenant_firecracker_log_lines_dropped_total",
            &l,
            c("logger.missed_log_count"),
        );
    }
    let mut out = String::new();
    for (name, kind, help) in SERIES {
        let Some(rows) = samples.get(name) else {
            continue;
        };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(id: &str, running: bool) -> VmMetrics {
        let mut f = RunMetrics::default();
        f.add_line(br#"{"utc_timestamp_ms":1796221280499,"vcpu":{"exit_io_in":3},"net":{"rx_bytes_count":100},"block_rootfs":{"read_bytes":4096,"read_count":1},"put_api_requests":{"actions_count":2,"actions_fails":1},"seccomp":{"num_faults":0},"logger":{"missed_log_count":0}}"#);
        VmMetrics {
            tenant: TenantId::parse(id).unwrap(),
            running,
            pid: running.then_some(42),
            vcpus: Some(2),
            mem_mib: Some(256),
            starts: 3,
            started_at: None,
            uptime_secs: running.then_some(7),
            flushed: false,
            firecracker: Some(f),
        }
    }

    #[test]
    fn every_sample_belongs_to_a_described_series_and_counters_end_in_total() {
        let m = NodeMetrics {
            version: "0.1.0".into(),
            vms: vec![vm("acme", true), vm("beta", false)],
            last_reconcile: Some(LastReconcile {
                at: "2026-12-02T10:00:00Z".into(),
                result: "converged".into(),
                duration_ms: 1500,
                added: 2,
                changed: 0,
                destroyed: 1,
                failed: 0,
                blocked: 0,
            }),
            metadata_up: true,
            metadata: Some(crate::security::metadata::Stats {
                started_at: "x".into(),
                requests: [(200, 5), (404, 1)].into(),
                closed: 0,
            }),
        };
        let text = prometheus(&m);
        for (name, kind, _) in SERIES {
            assert!(!kind.eq(&"counter") || name.ends_with("_total"), "{name}");
            assert!(name.starts_with("mvm_"), "{name}");
        }
        assert!(
            text.contains("mvm_tenant_vm_up{tenant=\"acme\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mvm_tenant_vm_up{tenant=\"beta\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("mvm_tenant_vm_restarts_total{tenant=\"acme\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("mvm_tenant_memory_bytes{tenant=\"acme\"} 268435456\n"),
            "{text}"
        );
        assert!(
            text.contains("mvm_tenant_vcpu_exits_total{tenant=\"acme\",exit=\"io_in\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "mvm_tenant_block_read_bytes_total{tenant=\"acme\",drive=\"rootfs\"} 4096\n"
            ),
            "{text}"
        );
        assert!(text.contains("mvm_tenant_firecracker_api_request_failures_total{tenant=\"acme\",method=\"PUT\"} 1\n"), "{text}");
        assert!(
            text.contains("mvm_node_last_reconcile_timestamp_seconds 1796205600.000\n"),
            "{text}"
        );
        assert!(
            text.contains("mvm_metadata_requests_total{status=\"404\"} 1\n"),
            "{text}"
        );
        // A stopped VM's run counters are not exported as live ones.
        assert!(
            !text.contains("mvm_tenant_net_receive_bytes_total{tenant=\"beta\"}"),
            "{text}"
        );
        // Each family once, HELP and TYPE before its samples.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#'))
        {
            let name = line.split(['{', ' ']).next().unwrap();
            let typed = lines
                .iter()
                .position(|l| l.starts_with(&format!("# TYPE {name} ")))
                .unwrap();
            assert!(typed < i, "{line}");
            assert_eq!(
                lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("# TYPE {name} ")))
                    .count(),
                1
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
