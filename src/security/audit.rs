//! The audit logs' format and rules: each tenant's
//! (`<state>/tenants/<id>/audit.log`) and the node's (`<state>/audit.log`:
//! the bridge, the firewall, the metadata service), one JSON line per
//! event, append-only. Pure: the writer is `resources/audit_log.rs`.
//!
//! Each record carries the sha256 of the previous line, and
//! `audit.head` (rewritten atomically after each append) holds the last
//! record's number and hash, so `verify` detects an edited, reordered,
//! deleted or truncated log. The chain holds no secret: it shows tampering
//! by anyone who did not also rewrite every later record and the head —
//! the append-only inode flag (set where the filesystem supports it) is
//! what stops root-less edits. Records never contain secret values.

use crate::spec::types::TenantId;
use crate::state::AUDIT_HEAD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The largest record mvm writes (one JSON line). What goes into one is
/// bounded so it always fits: the command line is summarized past
/// `COMMAND_MAX`, an error message cut at `ERROR_MAX`.
pub const RECORD_MAX: usize = 16 * 1024;
pub const COMMAND_MAX: usize = 512;
pub const ERROR_MAX: usize = 2048;
/// The tail read to find the last record: larger than any record.
pub const TAIL_CAP: u64 = 4 * RECORD_MAX as u64;
/// The largest `audit.head` (and `audit.repeats`) read.
pub const HEAD_CAP: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub seq: u64,
    pub timestamp: String,
    /// The tenant whose log it is in; none in the node's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
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

/// Whose log a record goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log<'a> {
    /// The node's own: changes to the bridge, the firewall and the
    /// metadata service.
    Node,
    Tenant(&'a TenantId),
}

impl Log<'_> {
    /// The `tenant_id` its records carry.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Log::Node => None,
            Log::Tenant(id) => Some(id),
        }
    }

    /// Its files under `layout`: the log, its head, its repeat counter.
    pub fn paths(
        &self,
        layout: &crate::state::StateLayout,
    ) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        match self {
            Log::Node => (
                layout.node_audit_log(),
                layout.node_audit_head(),
                layout.node_audit_repeats(),
            ),
            Log::Tenant(id) => (
                layout.audit_log(id),
                layout.audit_head(id),
                layout.audit_repeats(id),
            ),
        }
    }
}

impl std::fmt::Display for Log<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Log::Node => f.write_str("the node"),
            Log::Tenant(id) => write!(f, "tenant {id}"),
        }
    }
}

/// An event to record; `seq`, `prev_sha256` and the timestamp are filled in
/// by the writer.
pub struct AuditEvent<'a> {
    pub log: Log<'a>,
    pub action: &'a str,
    pub resource: String,
    pub error: Option<String>,
    pub details: AuditDetails,
}

pub fn line_sha(line: &[u8]) -> String {
    crate::digest::sha256(line)
}

/// How `audit.head` stands to the log's last record: the one rule the
/// writer (before it extends a log) and `verify` (checking one) share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadState {
    /// The head names the last record.
    Current,
    /// The head names the record before it (or is missing while the log
    /// has only its first record): a run died between writing the record
    /// and the head. Benign; the writer catches the head up.
    BehindByOne,
    /// Anything else: the log's tail was cut or edited, or the head lost.
    Disagrees,
}

/// `head` against the last record (`seq`, the sha256 of its line, and the
/// `prev_sha256` it carries).
pub fn head_state(head: Option<&AuditHead>, seq: u64, sha: &str, prev_sha: &str) -> HeadState {
    match head {
        Some(h) if h.seq == seq && h.sha256 == sha => HeadState::Current,
        Some(h) if h.seq + 1 == seq && h.sha256 == prev_sha => HeadState::BehindByOne,
        None if seq == 1 && prev_sha == GENESIS => HeadState::BehindByOne,
        _ => HeadState::Disagrees,
    }
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
pub fn cut(s: &str, max: usize) -> String {
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

/// The outcome of checking a log.
#[derive(Debug, Default, PartialEq)]
pub struct ChainCheck {
    pub records: u64,
    /// Everything wrong, each with its line number.
    pub problems: Vec<String>,
    /// Benign findings (a run interrupted between log and head).
    pub notes: Vec<String>,
}

/// Checks the chain of `log` and its agreement with `head`, and that every
/// record belongs to the log's owner and (when known) was written on
/// `node_id`.
pub fn verify(log: &[u8], head: Option<&[u8]>, owner: Log, node_id: Option<&str>) -> ChainCheck {
    let mut v = ChainCheck::default();
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
                if rec.tenant_id.as_ref() != owner.tenant() {
                    let whose = rec
                        .tenant_id
                        .as_ref()
                        .map_or("the node".to_string(), |t| format!("tenant {t}"));
                    v.problems.push(format!(
                        "line {n}: belongs to {whose}, not {owner} (copied from another log)"
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
    let last = expected - 1;
    let interrupted =
        || format!("record {last} was written by a run interrupted before it updated {AUDIT_HEAD}");
    match head.map(crate::spec::json::from_slice::<AuditHead>) {
        None if v.records == 0 => {}
        None => match head_state(None, last, &prev, &prev_prev) {
            HeadState::BehindByOne => v.notes.push(interrupted()),
            _ => v.problems.push(format!("{AUDIT_HEAD} is missing")),
        },
        Some(Err(e)) => v.problems.push(format!("{AUDIT_HEAD} is not valid: {e}")),
        Some(Ok(h)) => match head_state(Some(&h), last, &prev, &prev_prev) {
            HeadState::Current => {}
            HeadState::BehindByOne => v.notes.push(interrupted()),
            HeadState::Disagrees if h.seq > last => v.problems.push(format!(
                "truncated: {AUDIT_HEAD} records {} entries, the log has {last}",
                h.seq
            )),
            HeadState::Disagrees => v.problems.push(format!(
                "{AUDIT_HEAD} (record {}) does not match the log's last record {last}: the log's tail was edited",
                h.seq
            )),
        },
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_current_behind_by_one_or_disagrees() {
        let h = |seq, sha: &str| AuditHead {
            seq,
            sha256: sha.into(),
        };
        assert_eq!(
            head_state(Some(&h(3, "c")), 3, "c", "b"),
            HeadState::Current
        );
        assert_eq!(
            head_state(Some(&h(2, "b")), 3, "c", "b"),
            HeadState::BehindByOne
        );
        assert_eq!(head_state(None, 1, "a", GENESIS), HeadState::BehindByOne);
        assert_eq!(head_state(None, 2, "b", "a"), HeadState::Disagrees);
        assert_eq!(
            head_state(Some(&h(1, "a")), 3, "c", "b"),
            HeadState::Disagrees
        );
        assert_eq!(
            head_state(Some(&h(2, "x")), 3, "c", "b"),
            HeadState::Disagrees
        );
        assert_eq!(
            head_state(Some(&h(4, "d")), 3, "c", "b"),
            HeadState::Disagrees
        );
    }
}
