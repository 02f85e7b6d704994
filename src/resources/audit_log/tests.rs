//! The writer and the chain check against real logs on disk: every kind
//! of tampering refused or reported, interrupted runs recognized.

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
