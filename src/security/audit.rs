//! The per-tenant audit log: `<state>/tenants/<id>/audit.log`, one JSON line
//! per lifecycle event, append-only.
//!
//! Each record carries the sha256 of the previous line, and
//! `audit.head` (rewritten atomically after each append) holds the last
//! record's number and hash, so `verify` detects an edited, reordered,
//! deleted or truncated log. The chain holds no secret: it shows tampering
//! by anyone who did not also rewrite every later record and the head —
//! the append-only inode flag (set where the filesystem supports it) is
//! what stops root-less edits. Records never contain secret values.

use crate::providers::host::{Host, HostError};
use crate::spec::types::TenantId;
use crate::state::{AUDIT_HEAD, StateLayout};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The tail read to find the last record: records are far smaller.
const TAIL_CAP: u64 = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub seq: u64,
    pub timestamp: String,
    pub tenant_id: TenantId,
    pub node_id: String,
    /// The command line that caused the event.
    pub command: String,
    /// `create`, `update`, `delete`, or `archive` (the tenant was pruned
    /// and this log moved under `<state>/archive/`).
    pub action: String,
    pub resource: String,
    /// `ok` or `failed`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub details: AuditDetails,
    pub prev_sha256: String,
}

/// What the event set up, as each resource kind describes it (identity,
/// limits, build and VM config): `ip`, `memory_max`, `fc_config_sha256`,
/// … Never secret values.
pub type AuditDetails = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    pub seq: u64,
    pub sha256: String,
}

/// An event to record; `seq`, `prev_sha256` and the timestamp are filled in
/// by the writer.
pub struct AuditEvent<'a> {
    pub tenant: &'a TenantId,
    pub action: &'a str,
    pub resource: String,
    pub error: Option<String>,
    pub details: AuditDetails,
}

/// Appends records for many tenants; one append at a time so concurrent
/// resource steps of a tenant cannot race on the chain.
pub struct AuditWriter {
    layout: StateLayout,
    node_id: String,
    command: String,
    lock: Mutex<()>,
}

pub fn line_sha(line: &[u8]) -> String {
    crate::digest::sha256(line)
}

impl AuditWriter {
    pub fn new(layout: StateLayout, node_id: String, command: String) -> Self {
        Self {
            layout,
            node_id,
            command,
            lock: Mutex::new(()),
        }
    }

    /// Appends one record to the tenant's log: a single write, fsync, then
    /// the head.
    pub fn append(&self, host: &Host, ev: AuditEvent) -> Result<(), HostError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.layout.audit_log(ev.tenant);
        let (seq, prev) = match last_line(host, &path)? {
            Some(line) => {
                let rec: AuditRecord = serde_json::from_slice(&line).map_err(|e| {
                    HostError::other("continue", &path, format!("its last record is unreadable ({e}); run `mvm tenant audit {} --verify`", ev.tenant))
                })?;
                (rec.seq + 1, line_sha(&line))
            }
            None => (1, GENESIS.to_string()),
        };
        let record = AuditRecord {
            seq,
            timestamp: host
                .clock
                .now()
                .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
            tenant_id: ev.tenant.clone(),
            node_id: self.node_id.clone(),
            command: self.command.clone(),
            action: ev.action.to_string(),
            resource: ev.resource,
            result: if ev.error.is_some() { "failed" } else { "ok" }.to_string(),
            error: ev.error,
            details: ev.details,
            prev_sha256: prev,
        };
        let mut line = serde_json::to_vec(&record).expect("record serializes");
        let sha = line_sha(&line);
        line.push(b'\n');
        let new = seq == 1;
        host.files.append_line(&path, &line)?;
        if new {
            host.files.set_append_only(&path, true)?;
        }
        let head = serde_json::to_vec(&AuditHead { seq, sha256: sha }).expect("head serializes");
        host.files
            .write_file(&self.layout.audit_head(ev.tenant), &head, 0o600)
    }
}

/// The last complete line of a log, read from its tail.
fn last_line(host: &Host, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
    let Some(mut buf) = host.files.read_tail(path, TAIL_CAP)? else {
        return Ok(None);
    };
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(HostError::other(
            "continue",
            path,
            "the last record is incomplete (no newline); run `mvm tenant audit <id> --verify`",
        ));
    }
    buf.pop();
    let start = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    Ok(Some(buf[start..].to_vec()))
}

/// The outcome of checking a log.
#[derive(Debug, Default, PartialEq)]
pub struct Verification {
    pub records: u64,
    /// Everything wrong, each with its line number.
    pub problems: Vec<String>,
    /// Benign findings (a run interrupted between log and head).
    pub notes: Vec<String>,
}

/// Checks the chain of `log` and its agreement with `head`.
pub fn verify(log: &[u8], head: Option<&[u8]>) -> Verification {
    let mut v = Verification::default();
    let mut prev = GENESIS.to_string();
    let mut prev_prev = GENESIS.to_string();
    let mut expected = 1u64;
    if !log.is_empty() && log.last() != Some(&b'\n') {
        v.problems.push("the last line is incomplete (no newline): the log was truncated or a write interrupted".into());
    }
    for (i, line) in log.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<AuditRecord>(line) {
            Err(e) => v
                .problems
                .push(format!("line {n}: not a valid record: {e}")),
            Ok(rec) => {
                if rec.seq != expected {
                    v.problems.push(format!(
                        "line {n}: record {} where record {expected} belongs (records removed or reordered)",
                        rec.seq
                    ));
                }
                if rec.prev_sha256 != prev {
                    v.problems.push(format!("line {n}: does not chain to the record before it (an earlier record was edited, removed or reordered)"));
                }
                expected = rec.seq + 1;
                v.records += 1;
            }
        }
        prev_prev = std::mem::replace(&mut prev, line_sha(line));
    }
    match head.map(serde_json::from_slice::<AuditHead>) {
        None if v.records > 0 => v.problems.push(format!("{AUDIT_HEAD} is missing")),
        None => {}
        Some(Err(e)) => v.problems.push(format!("{AUDIT_HEAD} is not valid: {e}")),
        Some(Ok(h)) => {
            let last = expected - 1;
            if h.seq == last && h.sha256 == prev {
            } else if h.seq + 1 == last && h.sha256 == prev_prev {
                v.notes.push(format!(
                    "record {last} was written by a run interrupted before it updated {AUDIT_HEAD}"
                ));
            } else if h.seq > last {
                v.problems.push(format!(
                    "truncated: {AUDIT_HEAD} records {} entries, the log has {last}",
                    h.seq
                ));
            } else {
                v.problems.push(format!("{AUDIT_HEAD} (record {}) does not match the log's last record {last}: the log's tail was edited", h.seq));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write_log(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
        let id = TenantId::parse("acme").unwrap();
        let layout = StateLayout::new(dir);
        std::fs::create_dir_all(layout.tenant_dir(&id)).unwrap();
        let w = AuditWriter::new(layout.clone(), "node1".into(), "mvm agent reconcile".into());
        let host = Host::linux(dir);
        for i in 0..n {
            let ev = AuditEvent {
                tenant: &id,
                action: "create",
                resource: format!("tenant.acme.r{i}"),
                error: None,
                details: [("ip".to_string(), "10.200.0.10".to_string())].into(),
            };
            w.append(&host, ev).unwrap();
        }
        let log = layout.audit_log(&id);
        // Tests may edit the log: lift the append-only flag if it took.
        let _ = host.files.set_append_only(&log, false);
        (log.clone(), log.with_file_name(AUDIT_HEAD))
    }

    fn check(log: &Path, head: &Path) -> Verification {
        verify(
            &std::fs::read(log).unwrap(),
            std::fs::read(head).ok().as_deref(),
        )
    }

    #[test]
    fn a_real_log_verifies() {
        let d = tempfile::tempdir().unwrap();
        let (log, head) = write_log(d.path(), 5);
        let v = check(&log, &head);
        assert_eq!(v.records, 5);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    #[test]
    fn every_kind_of_tampering_is_detected() {
        let join = |l: &Vec<&[u8]>| {
            l.iter()
                .flat_map(|x| x.iter().copied().chain([b'\n']))
                .collect::<Vec<u8>>()
        };
        type Tamper = Box<dyn Fn(Vec<&[u8]>) -> Vec<u8>>;
        let cases: Vec<(&str, Tamper)> = vec![
            (
                "edited",
                Box::new(move |l| {
                    let mut s = join(&l);
                    let text = String::from_utf8(s.clone()).unwrap().replacen(
                        "tenant.acme.r2",
                        "tenant.acme.rX",
                        1,
                    );
                    s = text.into_bytes();
                    s
                }),
            ),
            (
                "reordered",
                Box::new(move |mut l| {
                    l.swap(1, 2);
                    join(&l)
                }),
            ),
            (
                "middle removed",
                Box::new(move |mut l| {
                    l.remove(2);
                    join(&l)
                }),
            ),
            (
                "first removed",
                Box::new(move |mut l| {
                    l.remove(0);
                    join(&l)
                }),
            ),
            (
                "tail truncated",
                Box::new(move |mut l| {
                    l.pop();
                    join(&l)
                }),
            ),
            (
                "cut mid-line",
                Box::new(move |l| {
                    let s = join(&l);
                    s[..s.len() - 10].to_vec()
                }),
            ),
        ];
        for (name, tamper) in cases {
            let d = tempfile::tempdir().unwrap();
            let (log, head) = write_log(d.path(), 5);
            let text = std::fs::read(&log).unwrap();
            let lines: Vec<&[u8]> = text
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            std::fs::write(&log, tamper(lines)).unwrap();
            let v = check(&log, &head);
            assert!(!v.problems.is_empty(), "{name} went undetected");
        }
    }

    #[test]
    fn interrupted_head_update_is_a_note_not_tampering() {
        let d = tempfile::tempdir().unwrap();
        let (log, head) = write_log(d.path(), 3);
        let before = std::fs::read(&head).unwrap();
        let (log2, head2) = write_log(d.path(), 1); // appends record 4
        assert_eq!((log2, head2.clone()), (log.clone(), head.clone()));
        std::fs::write(&head, before).unwrap(); // as if the run died before the head write
        let v = check(&log, &head);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.notes.len(), 1);
    }
}
