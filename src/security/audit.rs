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

use crate::host::{Host, HostError};
use crate::spec::types::TenantId;
use crate::state::{AUDIT_HEAD, StateLayout};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The largest record mvm writes (one JSON line). What goes into one is
/// bounded so it always fits: the command line is summarized past
/// `COMMAND_MAX`, an error message cut at `ERROR_MAX`.
pub const RECORD_MAX: usize = 16 * 1024;
pub const COMMAND_MAX: usize = 512;
pub const ERROR_MAX: usize = 2048;
/// The tail read to find the last record: larger than any record.
const TAIL_CAP: u64 = 4 * RECORD_MAX as u64;
const HEAD_CAP: u64 = 4096;

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
///
/// Before each append the writer checks that the log's last record agrees
/// with `audit.head` (and belongs to this tenant and this node): a log whose
/// tail was cut, that was deleted or truncated, or copied from another
/// tenant is refused loudly, never extended — extending it would make the
/// tampering verify clean.
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
    /// A writer whose records name `command` (summarized when long).
    pub fn new(layout: StateLayout, node_id: String, command: String) -> Self {
        Self {
            layout,
            node_id,
            command: summarize(&command),
            lock: Mutex::new(()),
        }
    }

    /// Checks that the tenant's log can be extended (see the type's doc):
    /// run before a tenant's step changes anything.
    pub fn check(&self, host: &Host, id: &TenantId) -> Result<(), HostError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.position(host, id).map(|_| ())
    }

    /// The next record's number and the previous record's hash, after
    /// checking the log against its head.
    fn position(&self, host: &Host, id: &TenantId) -> Result<(u64, String), HostError> {
        self.last(host, id).map(|(seq, sha, _)| (seq, sha))
    }

    /// `position`, with the last record itself.
    fn last(
        &self,
        host: &Host,
        id: &TenantId,
    ) -> Result<(u64, String, Option<AuditRecord>), HostError> {
        let path = self.layout.audit_log(id);
        let head_path = self.layout.audit_head(id);
        let refuse = |why: String| {
            HostError::other(
                "extend",
                &path,
                format!(
                    "{why}; run `mvm tenant audit {id} --verify`. mvm changes nothing of this tenant until its log is restored from a backup"
                ),
            )
        };
        let head = match host.files.read(&head_path, HEAD_CAP)? {
            None => None,
            Some(b) => Some(
                crate::spec::json::from_slice::<AuditHead>(&b)
                    .map_err(|e| refuse(format!("{AUDIT_HEAD} is not valid ({e})")))?,
            ),
        };
        let Some(line) = last_line(host, &path)? else {
            return match head {
                None => Ok((1, GENESIS.to_string(), None)),
                // A prune that died after archiving the log, before its
                // head: the log it names is in the archive.
                Some(h) if self.archived(host, id, &h)? => Ok((h.seq + 1, h.sha256, None)),
                Some(h) => Err(refuse(format!(
                    "the log is missing or empty but {AUDIT_HEAD} records {} entries: it was deleted or truncated",
                    h.seq
                ))),
            };
        };
        let rec: AuditRecord = crate::spec::json::from_slice(&line)
            .map_err(|e| refuse(format!("its last record is unreadable ({e})")))?;
        if rec.tenant_id != *id {
            return Err(refuse(format!(
                "its last record belongs to tenant {}: the log was copied from another tenant",
                rec.tenant_id
            )));
        }
        if rec.node_id != self.node_id {
            return Err(refuse(format!(
                "its last record was written on node {}, not this node ({}): the log was copied from another node",
                rec.node_id, self.node_id
            )));
        }
        let sha = line_sha(&line);
        let current = head
            .as_ref()
            .is_some_and(|h| h.seq == rec.seq && h.sha256 == sha);
        // The run that wrote the last record died before its head (for the
        // first record: before any head).
        let behind_by_one = match &head {
            Some(h) => h.seq + 1 == rec.seq && h.sha256 == rec.prev_sha256,
            None => rec.seq == 1 && rec.prev_sha256 == GENESIS,
        };
        if behind_by_one {
            // Catch the head up now, so a run that dies the same way
            // leaves the log one record ahead again, never two.
            let caught_up = serde_json::to_vec(&AuditHead {
                seq: rec.seq,
                sha256: sha.clone(),
            })
            .expect("head serializes");
            host.files.write_file(&head_path, &caught_up, 0o600)?;
        }
        let agrees = current || behind_by_one;
        if !agrees {
            return Err(refuse(match head {
                Some(h) => format!(
                    "its last record is number {} but {AUDIT_HEAD} records {} with another hash: the log's tail was cut or edited",
                    rec.seq, h.seq
                ),
                None => format!(
                    "{AUDIT_HEAD} is missing but the log has {} records",
                    rec.seq
                ),
            }));
        }
        Ok((rec.seq + 1, sha, Some(rec)))
    }

    /// Whether the newest archive of `id` holds the log `head` describes,
    /// without its head: a prune moved the log and died before the head.
    fn archived(&self, host: &Host, id: &TenantId, head: &AuditHead) -> Result<bool, HostError> {
        let names = host.files.list(&self.layout.archive_dir())?;
        let Some(dir) = self.layout.newest_archive(id, &names) else {
            return Ok(false);
        };
        if host.files.exists(&dir.join(AUDIT_HEAD)) {
            return Ok(false);
        }
        let Some(line) = last_line(host, &dir.join(crate::state::AUDIT_LOG))? else {
            return Ok(false);
        };
        let rec: Option<AuditRecord> = crate::spec::json::from_slice(&line).ok();
        Ok(rec.is_some_and(|r| r.seq == head.seq && r.tenant_id == *id)
            && line_sha(&line) == head.sha256)
    }

    /// Appends one record to the tenant's log: a single write, fsync, then
    /// the head. A record larger than `RECORD_MAX` is refused, not written.
    ///
    /// A failure identical to the log's last record (same resource, action
    /// and error: a build that fails on every timer run) is not written
    /// again — the log would grow without bound — but counted in
    /// `audit.repeats`; the next record written says how often it repeated
    /// (`details.previous_repeated`: the count and the last time).
    pub fn append(&self, host: &Host, mut ev: AuditEvent) -> Result<(), HostError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.layout.audit_log(ev.tenant);
        let (seq, prev, last) = self.last(host, ev.tenant)?;
        let repeats_path = self.layout.audit_repeats(ev.tenant);
        let now = host
            .clock
            .now()
            .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let repeats: Option<Repeats> = host
            .files
            .read(&repeats_path, HEAD_CAP)?
            .and_then(|b| crate::spec::json::from_slice::<Repeats>(&b).ok())
            .filter(|r| last.as_ref().is_some_and(|l| l.seq == r.seq));
        let error = ev.error.as_ref().map(|e| cut(e, ERROR_MAX));
        if let (Some(l), Some(e)) = (&last, &error)
            && l.result == "failed"
            && l.resource == ev.resource
            && l.action == ev.action
            && l.error.as_ref() == Some(e)
        {
            let count = repeats.map_or(0, |r| r.count) + 1;
            let r = serde_json::to_vec(&Repeats {
                seq: l.seq,
                count,
                last: now,
            })
            .expect("repeats serialize");
            return host.files.write_file(&repeats_path, &r, 0o600);
        }
        if let Some(r) = repeats {
            ev.details.insert(
                "previous_repeated".into(),
                format!("{} more times, last at {}", r.count, r.last),
            );
        }
        let record = AuditRecord {
            seq,
            timestamp: now,
            tenant_id: ev.tenant.clone(),
            node_id: self.node_id.clone(),
            command: self.command.clone(),
            action: ev.action.to_string(),
            resource: ev.resource,
            result: if ev.error.is_some() { "failed" } else { "ok" }.to_string(),
            error,
            details: ev.details,
            prev_sha256: prev,
        };
        let mut line = serde_json::to_vec(&record).expect("record serializes");
        if line.len() > RECORD_MAX {
            return Err(HostError::other(
                "append to",
                &path,
                format!(
                    "the record for {} is {} bytes, over the {RECORD_MAX}-byte bound; nothing written",
                    record.resource,
                    line.len()
                ),
            ));
        }
        let sha = line_sha(&line);
        line.push(b'\n');
        let new = seq == 1;
        host.files.append_line(&path, &line)?;
        if new {
            host.files.set_append_only(&path, true)?;
        }
        let head = serde_json::to_vec(&AuditHead { seq, sha256: sha }).expect("head serializes");
        host.files
            .write_file(&self.layout.audit_head(ev.tenant), &head, 0o600)?;
        if host.files.exists(&repeats_path) {
            host.files.remove_tree(&repeats_path)?;
        }
        Ok(())
    }
}

/// `audit.repeats`: record `seq` (a failure) happened `count` more times,
/// the last at `last`, without a record of its own.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repeats {
    seq: u64,
    count: u64,
    last: String,
}

/// A command line as a record carries it: whole up to `COMMAND_MAX` bytes,
/// else its start, its length and the sha256 of all of it.
pub fn summarize(command: &str) -> String {
    if command.len() <= COMMAND_MAX {
        return command.to_string();
    }
    format!(
        "{}… ({} bytes in all, sha256 {})",
        &command[..floor(command, COMMAND_MAX / 2)],
        command.len(),
        crate::digest::sha256(command.as_bytes())
    )
}

/// `s` cut to at most `max` bytes, on a character boundary, marked.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!("{}… (cut at {max} bytes)", &s[..floor(s, max)])
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
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

/// Checks the chain of `log` and its agreement with `head`, and that every
/// record belongs to `tenant` and (when known) was written on `node_id`.
pub fn verify(
    log: &[u8],
    head: Option<&[u8]>,
    tenant: &TenantId,
    node_id: Option<&str>,
) -> Verification {
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
        if line.len() > RECORD_MAX {
            v.problems.push(format!(
                "line {n}: {} bytes, larger than any record mvm writes ({RECORD_MAX})",
                line.len()
            ));
        }
        match crate::spec::json::from_slice::<AuditRecord>(line) {
            Err(e) => v
                .problems
                .push(format!("line {n}: not a valid record: {e}")),
            Ok(rec) => {
                if rec.tenant_id != *tenant {
                    v.problems.push(format!(
                        "line {n}: belongs to tenant {}, not {tenant} (copied from another tenant's log)",
                        rec.tenant_id
                    ));
                }
                if let Some(node) = node_id
                    && rec.node_id != node
                {
                    v.problems.push(format!(
                        "line {n}: written on node {}, not this node ({node})",
                        rec.node_id
                    ));
                }
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
    match head.map(crate::spec::json::from_slice::<AuditHead>) {
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
    /// A temporary directory removed even with append-only logs in it
    /// (the flag is cleared first; the removal alone cannot).
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn path(&self) -> &std::path::Path {
            self.0.path()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-R")
                .arg("-a")
                .arg(self.0.path())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    fn scratch() -> Scratch {
        Scratch(tempfile::tempdir().unwrap())
    }

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
            &TenantId::parse("acme").unwrap(),
            Some("node1"),
        )
    }

    #[test]
    fn a_real_log_verifies() {
        let d = scratch();
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
            let d = scratch();
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

    /// A bug fixed: a change failing the same way on every run (a build
    /// an agent retries on its timer) appended a record each time, without
    /// bound. The repeat is counted, not written; the next record says how
    /// often, and the chain still verifies.
    #[test]
    fn a_repeated_identical_failure_is_recorded_once() {
        let d = scratch();
        let dir = d.path();
        let id = TenantId::parse("acme").unwrap();
        let layout = StateLayout::new(dir);
        std::fs::create_dir_all(layout.tenant_dir(&id)).unwrap();
        let w = AuditWriter::new(layout.clone(), "node1".into(), "mvm agent run".into());
        let host = Host::linux(dir);
        let ev = |error: Option<&str>| AuditEvent {
            tenant: &id,
            action: "create",
            resource: "tenant.acme.artifact".into(),
            error: error.map(str::to_string),
            details: AuditDetails::new(),
        };
        for _ in 0..50 {
            w.append(&host, ev(Some("nix build failed: no network")))
                .unwrap();
        }
        let lines = || std::fs::read_to_string(layout.audit_log(&id)).unwrap();
        assert_eq!(lines().lines().count(), 1, "{}", lines());
        // Another failure is a record of its own.
        w.append(&host, ev(Some("nix build failed: disk full")))
            .unwrap();
        assert_eq!(lines().lines().count(), 2);
        let second: AuditRecord = serde_json::from_str(lines().lines().nth(1).unwrap()).unwrap();
        assert!(
            second.details["previous_repeated"].starts_with("49 more times, last at "),
            "{:?}",
            second.details
        );
        w.append(&host, ev(None)).unwrap();
        let third: AuditRecord = serde_json::from_str(lines().lines().nth(2).unwrap()).unwrap();
        assert!(!third.details.contains_key("previous_repeated"));
        assert!(!layout.audit_repeats(&id).exists());
        let v = check(&layout.audit_log(&id), &layout.audit_head(&id));
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    #[test]
    fn interrupted_head_update_is_a_note_not_tampering() {
        let d = scratch();
        let (log, head) = write_log(d.path(), 3);
        let before = std::fs::read(&head).unwrap();
        let (log2, head2) = write_log(d.path(), 1); // appends record 4
        assert_eq!((log2, head2.clone()), (log.clone(), head.clone()));
        std::fs::write(&head, before).unwrap(); // as if the run died before the head write
        let v = check(&log, &head);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.notes.len(), 1);
    }

    /// Two runs in a row each die between appending a record and writing
    /// the head (the second touching the tenant before any run repaired
    /// it): the log stays extendable and verifies clean. Found by
    /// tests/host/crash.sh: "its last record is number 4 but audit.head
    /// records 2".
    #[test]
    fn heads_lost_by_two_crashes_in_a_row_are_caught_up() {
        let d = scratch();
        let id = TenantId::parse("acme").unwrap();
        let layout = StateLayout::new(d.path());
        std::fs::create_dir_all(layout.tenant_dir(&id)).unwrap();
        for _ in 0..2 {
            append_one(d.path(), "acme", "node1", "mvm").unwrap();
        }
        let head = layout.audit_head(&id);
        let w = AuditWriter::new(StateLayout::new(d.path()), "node1".into(), "mvm".into());
        for _ in 0..2 {
            // A run checks the log (as its append does first), appends,
            // and dies before its head write: the head is what it was
            // right after the check.
            w.check(&Host::linux(d.path()), &id)
                .expect("the log can be extended");
            let before = std::fs::read(&head).unwrap();
            append_one(d.path(), "acme", "node1", "mvm").unwrap();
            std::fs::write(&head, before).unwrap();
        }
        append_one(d.path(), "acme", "node1", "mvm").expect("the log is extended");
        let v = check(&layout.audit_log(&id), &head);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.records, 5);
    }

    fn append_one(dir: &Path, tenant: &str, node: &str, command: &str) -> Result<(), HostError> {
        let id = TenantId::parse(tenant).unwrap();
        let w = AuditWriter::new(StateLayout::new(dir), node.into(), command.into());
        let ev = AuditEvent {
            tenant: &id,
            action: "update",
            resource: format!("tenant.{tenant}.cgroup"),
            error: None,
            details: AuditDetails::new(),
        };
        w.append(&Host::linux(dir), ev)
    }

    /// Cutting the log's tail, truncating it, deleting it, or copying in
    /// another tenant's (or node's) log and head: the writer refuses to
    /// extend it, so the tampering cannot be made to verify clean.
    #[test]
    fn the_writer_refuses_a_log_that_disagrees_with_its_head() {
        type Tamper = fn(&Path, &Path, &Path);
        let cases: Vec<(&str, Tamper, &str)> = vec![
            (
                "tail cut",
                |log, _, _| {
                    let text = std::fs::read_to_string(log).unwrap();
                    let keep: Vec<&str> = text.lines().take(3).collect();
                    std::fs::write(log, keep.join("\n") + "\n").unwrap();
                },
                "tail was cut",
            ),
            (
                "truncated",
                |log, _, _| std::fs::write(log, "").unwrap(),
                "deleted or truncated",
            ),
            (
                "deleted",
                |log, _, _| std::fs::remove_file(log).unwrap(),
                "deleted or truncated",
            ),
            (
                "head deleted",
                |_, head, _| std::fs::remove_file(head).unwrap(),
                "is missing",
            ),
            (
                "another tenant's",
                |log, head, other| {
                    // A log and head that chain perfectly, of tenant `other`.
                    let id = TenantId::parse("other").unwrap();
                    let layout = StateLayout::new(other);
                    std::fs::create_dir_all(layout.tenant_dir(&id)).unwrap();
                    let w = AuditWriter::new(layout.clone(), "node1".into(), "c".into());
                    for _ in 0..2 {
                        let ev = AuditEvent {
                            tenant: &id,
                            action: "create",
                            resource: "tenant.other.dirs".into(),
                            error: None,
                            details: AuditDetails::new(),
                        };
                        w.append(&Host::linux(other), ev).unwrap();
                    }
                    std::fs::copy(layout.audit_log(&id), log).unwrap();
                    std::fs::copy(layout.audit_head(&id), head).unwrap();
                },
                "belongs to tenant other",
            ),
        ];
        for (name, tamper, says) in cases {
            let d = scratch();
            let other = scratch();
            let (log, head) = write_log(d.path(), 5);
            tamper(&log, &head, other.path());
            let e = append_one(d.path(), "acme", "node1", "mvm agent reconcile")
                .expect_err(name)
                .to_string();
            assert!(e.contains(says) && e.contains("--verify"), "{name}: {e}");
        }
        // Another node's log.
        let d = scratch();
        write_log(d.path(), 2);
        let e = append_one(d.path(), "acme", "node2", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("written on node node1"), "{e}");
    }

    #[test]
    fn verify_checks_the_tenant_and_node_of_every_record() {
        let d = scratch();
        let (log, head) = write_log(d.path(), 3);
        let (l, h) = (std::fs::read(&log).unwrap(), std::fs::read(&head).unwrap());
        let other = TenantId::parse("other").unwrap();
        let v = verify(&l, Some(&h), &other, Some("node1"));
        assert_eq!(v.problems.len(), 3, "{:?}", v.problems);
        let v = verify(
            &l,
            Some(&h),
            &TenantId::parse("acme").unwrap(),
            Some("node2"),
        );
        assert_eq!(v.problems.len(), 3, "{:?}", v.problems);
    }

    /// A bug fixed: a 14,000-flag command line made a 322 KB record, after
    /// which no record could be written for the tenant.
    #[test]
    fn records_are_bounded_and_long_command_lines_summarized() {
        let d = scratch();
        write_log(d.path(), 1);
        let long = format!(
            "mvm agent reconcile {}",
            "--target tenant.acme ".repeat(14_000)
        );
        append_one(d.path(), "acme", "node1", &long).unwrap();
        append_one(d.path(), "acme", "node1", "short").unwrap();
        let log = std::fs::read_to_string(d.path().join("tenants/acme/audit.log")).unwrap();
        assert!(log.lines().all(|l| l.len() <= RECORD_MAX));
        let rec: AuditRecord = serde_json::from_str(log.lines().nth(1).unwrap()).unwrap();
        assert!(
            rec.command.len() <= COMMAND_MAX + 120,
            "{}",
            rec.command.len()
        );
        assert!(
            rec.command
                .contains(&crate::digest::sha256(long.as_bytes()))
        );
        let v = verify(
            log.as_bytes(),
            std::fs::read(d.path().join("tenants/acme/audit.head"))
                .ok()
                .as_deref(),
            &TenantId::parse("acme").unwrap(),
            Some("node1"),
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.records, 3);
    }

    /// A prune killed after moving the log to the archive and before its
    /// head: the head left behind is recognised, not taken for tampering.
    #[test]
    fn a_head_left_by_an_interrupted_archive_is_not_tampering() {
        let d = scratch();
        let (log, _) = write_log(d.path(), 3);
        let layout = StateLayout::new(d.path());
        let id = TenantId::parse("acme").unwrap();
        let archive = layout.archive_dir().join("acme-20261201T000000.000000Z");
        std::fs::create_dir_all(&archive).unwrap();
        std::fs::rename(&log, archive.join("audit.log")).unwrap();
        let w = AuditWriter::new(layout.clone(), "node1".into(), "c".into());
        w.check(&Host::linux(d.path()), &id).unwrap();
        // With the head already in the archive too, a lone head would be.
        std::fs::copy(layout.audit_head(&id), archive.join("audit.head")).unwrap();
        assert!(w.check(&Host::linux(d.path()), &id).is_err());
    }
}
