//! The audit log writer: appends a record of each step to the tenant's
//! log, or the node's, through `Host` — chained, bounded, append-only,
//! refusing a log that was tampered with (the rules are
//! `security::audit`'s). Beside `ApplyCtx`, which carries it.

use crate::host::{Host, HostError};
use crate::security::audit::{
    AuditEvent, AuditHead, AuditRecord, ERROR_MAX, GENESIS, HEAD_CAP, HeadState, Log, RECORD_MAX,
    TAIL_CAP, cut, head_state, line_sha, summarize,
};
use crate::spec::types::TenantId;
use crate::state::{AUDIT_HEAD, StateLayout};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Appends records to the tenants' logs and the node's; one append at a
/// time so concurrent steps cannot race on a chain.
///
/// Before each append the writer checks that the log's last record agrees
/// with `audit.head` (and belongs to this log's owner and this node): a log whose
/// tail was cut, that was deleted or truncated, or copied from another
/// tenant is refused loudly, never extended — extending it would make the
/// tampering verify clean.
pub struct AuditWriter {
    layout: StateLayout,
    node_id: String,
    command: String,
    lock: Mutex<()>,
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

    /// Checks that the log can be extended (see the type's doc): run
    /// before a step changes anything.
    pub fn check(&self, host: &Host, log: Log) -> Result<(), HostError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.last(host, log).map(|_| ())
    }

    /// The log's paths: the log, its head, its repeat counter.
    fn paths(&self, log: Log) -> (PathBuf, PathBuf, PathBuf) {
        match log {
            Log::Node => (
                self.layout.node_audit_log(),
                self.layout.node_audit_head(),
                self.layout.node_audit_repeats(),
            ),
            Log::Tenant(id) => (
                self.layout.audit_log(id),
                self.layout.audit_head(id),
                self.layout.audit_repeats(id),
            ),
        }
    }

    /// The next record's number, the previous record's hash and the last
    /// record itself, after checking the log against its head.
    fn last(&self, host: &Host, log: Log) -> Result<(u64, String, Option<AuditRecord>), HostError> {
        let (path, head_path, _) = self.paths(log);
        let verify = match log {
            Log::Node => "mvm node audit --verify".to_string(),
            Log::Tenant(id) => format!("mvm tenant audit {id} --verify"),
        };
        let refuse = |why: String| {
            HostError::other(
                "extend",
                &path,
                format!(
                    "{why}; run `{verify}`. mvm changes nothing of {log} until its log is restored from a backup"
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
                Some(h) if matches!(log, Log::Tenant(id) if self.archived(host, id, &h)?) => {
                    Ok((h.seq + 1, h.sha256, None))
                }
                Some(h) => Err(refuse(format!(
                    "the log is missing or empty but {AUDIT_HEAD} records {} entries: it was deleted or truncated",
                    h.seq
                ))),
            };
        };
        let rec: AuditRecord = crate::spec::json::from_slice(&line)
            .map_err(|e| refuse(format!("its last record is unreadable ({e})")))?;
        if rec.tenant_id.as_ref() != log.tenant() {
            let whose = rec
                .tenant_id
                .as_ref()
                .map_or("the node".to_string(), |t| format!("tenant {t}"));
            return Err(refuse(format!(
                "its last record belongs to {whose}: the log was copied from another"
            )));
        }
        if rec.node_id != self.node_id {
            return Err(refuse(format!(
                "its last record was written on node {}, not this node ({}): the log was copied from another node",
                rec.node_id, self.node_id
            )));
        }
        let sha = line_sha(&line);
        match head_state(head.as_ref(), rec.seq, &sha, &rec.prev_sha256) {
            HeadState::Current => {}
            // The run that wrote the last record died before its head:
            // catch the head up now, so a run that dies the same way
            // leaves the log one record ahead again, never two.
            HeadState::BehindByOne => {
                let caught_up = serde_json::to_vec(&AuditHead {
                    seq: rec.seq,
                    sha256: sha.clone(),
                })
                .expect("head serializes");
                host.files.write_file(&head_path, &caught_up, 0o600)?;
            }
            HeadState::Disagrees => {
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
        Ok(
            rec.is_some_and(|r| r.seq == head.seq && r.tenant_id.as_ref() == Some(id))
                && line_sha(&line) == head.sha256,
        )
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
        let (path, head_path, repeats_path) = self.paths(ev.log);
        let (seq, prev, last) = self.last(host, ev.log)?;
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
            tenant_id: ev.log.tenant().cloned(),
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
        host.files.write_file(&head_path, &head, 0o600)?;
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
    use crate::security::audit::{AuditDetails, COMMAND_MAX, ChainCheck, verify};

    fn write_log(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
        let id = TenantId::parse("acme").unwrap();
        let layout = StateLayout::new(dir);
        std::fs::create_dir_all(layout.tenant_dir(&id)).unwrap();
        let w = AuditWriter::new(layout.clone(), "node1".into(), "mvm agent reconcile".into());
        let host = Host::linux(dir);
        for i in 0..n {
            let ev = AuditEvent {
                log: Log::Tenant(&id),
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

    fn check(log: &Path, head: &Path) -> ChainCheck {
        verify(
            &std::fs::read(log).unwrap(),
            std::fs::read(head).ok().as_deref(),
            Log::Tenant(&TenantId::parse("acme").unwrap()),
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
            log: Log::Tenant(&id),
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
            w.check(&Host::linux(d.path()), Log::Tenant(&id))
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
            log: Log::Tenant(&id),
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
                            log: Log::Tenant(&id),
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
        let v = verify(&l, Some(&h), Log::Tenant(&other), Some("node1"));
        assert_eq!(v.problems.len(), 3, "{:?}", v.problems);
        let v = verify(&l, Some(&h), Log::Node, Some("node1"));
        assert_eq!(
            v.problems.len(),
            3,
            "a tenant's log is not the node's: {:?}",
            v.problems
        );
        let v = verify(
            &l,
            Some(&h),
            Log::Tenant(&TenantId::parse("acme").unwrap()),
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
            Log::Tenant(&TenantId::parse("acme").unwrap()),
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
        w.check(&Host::linux(d.path()), Log::Tenant(&id)).unwrap();
        // With the head already in the archive too, a lone head would be.
        std::fs::copy(layout.audit_head(&id), archive.join("audit.head")).unwrap();
        assert!(w.check(&Host::linux(d.path()), Log::Tenant(&id)).is_err());
    }
}
