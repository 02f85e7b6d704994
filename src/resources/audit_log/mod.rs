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
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Appends records to the tenants' logs and the node's; one append at a
/// time to each log so concurrent steps cannot race on a chain, while
/// steps of different tenants write (and wait for their syncs) at once —
/// the filesystem's journal commits their concurrent syncs together.
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
    /// Each log's turn (`None`: the node's).
    turns: Mutex<HashMap<Option<TenantId>, Arc<Mutex<()>>>>,
}

impl AuditWriter {
    /// A writer whose records name `command` (summarized when long).
    pub fn new(layout: StateLayout, node_id: String, command: String) -> Self {
        Self {
            layout,
            node_id,
            command: summarize(&command),
            turns: Mutex::new(HashMap::new()),
        }
    }

    /// Checks that the log can be extended (see the type's doc): run
    /// before a step changes anything.
    pub fn check(&self, host: &Host, log: Log) -> Result<(), HostError> {
        let turn = self.turn(log);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        self.last(host, log).map(|_| ())
    }

    /// The lock one log's appends take turns on.
    fn turn(&self, log: Log) -> Arc<Mutex<()>> {
        self.turns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(log.tenant().cloned())
            .or_default()
            .clone()
    }

    /// The log's paths: the log, its head, its repeat counter.
    fn paths(&self, log: Log) -> (PathBuf, PathBuf, PathBuf) {
        log.paths(&self.layout)
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
        let turn = self.turn(ev.log);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
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
mod tests;
