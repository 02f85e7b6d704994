//! `mvm agent run` against a real etcd (started by the test: loopback
//! ports, data on a tmpfs) with real agents, each in its own mount
//! namespace with its own state dir and cgroup parent; the simulated
//! nodes plan only their tenants' tree kinds (`--target tenant.*.dirs`,
//! `cgroup`, `secrets`), so no build, network or VM is involved.
//! Watch semantics, bursts, absent/empty/invalid/hostile values, etcd
//! restarts and compaction, restart offline from the kept document, one
//! agent per node id, and a killed agent's lease running out.

mod common;

use common::etcd::Etcd;
use common::host::{CgroupCleanup, Need, cgroup2, require};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MVM: &str = env!("CARGO_BIN_EXE_mvm");

struct Node {
    id: String,
    config: PathBuf,
    state: PathBuf,
    log: PathBuf,
    _cgroup: CgroupCleanup,
}

fn node(work: &Path, id: &str) -> Node {
    let dir = work.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let parent = format!("mvm-test-fleet-{}-{id}", std::process::id());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[cgroup]\nparent = \"{parent}\"\nallow_missing_controllers = true\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    Node {
        id: id.into(),
        config,
        state: dir.join("state"),
        log: dir.join("agent.log"),
        _cgroup: CgroupCleanup(cgroup2().join(parent)),
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Agent {
    fn term(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.0.wait().unwrap()
    }
    fn signal(&self, s: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), s).unwrap();
    }
}

/// `mvm agent run` of `n` in its own mount namespace (unshare's own pid:
/// it execs mvm), logging to its file.
fn agent(n: &Node, etcd: &Etcd, extra: &[&str]) -> Agent {
    agent_from(n, &["--etcd", &etcd.url()], extra)
}

/// `mvm agent run` of `n` following `source` (`--etcd URL` or
/// `--desired FILE`).
fn agent_from(n: &Node, source: &[&str], extra: &[&str]) -> Agent {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&n.log)
        .unwrap();
    let child = Command::new("unshare")
        .args(["--mount", "--"])
        .arg(MVM)
        .arg("--config")
        .arg(&n.config)
        .args(["agent", "run"])
        .args(source)
        .args(["--node-id", &n.id])
        .args(["--target", "tenant.*.dirs", "--target", "tenant.*.cgroup"])
        .args(["--target", "tenant.*.secrets", "--resync", "1h"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Agent(child)
}

fn doc(tenants: &[&str], vcpus: u8) -> String {
    let t: Vec<String> = tenants
        .iter()
        .map(|id| {
            format!(
                r#"{{"tenant_id": "{id}", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": {vcpus}, "mem_mib": 256, "state": "running"}}"#
            )
        })
        .collect();
    format!("{{\"tenants\": [{}]}}\n", t.join(", "))
}

fn mvm(n: &Node, args: &[&str]) -> std::process::Output {
    Command::new(MVM)
        .arg("--config")
        .arg(&n.config)
        .args(args)
        .output()
        .unwrap()
}

/// `mvm fleet put` of `document` for `n`; its new revision.
fn put(n: &Node, etcd: &Etcd, document: &str) -> i64 {
    let f = n.config.with_file_name("put.json");
    std::fs::write(&f, document).unwrap();
    let out = mvm(
        n,
        &[
            "fleet",
            "put",
            &n.id,
            "--desired",
            f.to_str().unwrap(),
            "--etcd",
            &etcd.url(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split("at revision ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

/// The node's row of `mvm fleet status --json`.
fn row(n: &Node, etcd: &Etcd) -> Option<serde_json::Value> {
    let out = mvm(n, &["fleet", "status", "--json", "--etcd", &etcd.url()]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    rows.into_iter().find(|r| r["node"] == n.id.as_str())
}

/// Waits until the node's status satisfies `ok`; panics with its log.
fn wait_for(
    n: &Node,
    etcd: &Etcd,
    what: &str,
    limit: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(r) = row(n, etcd)
            && ok(&r)
        {
            return r;
        }
        if start.elapsed() > limit {
            panic!(
                "{what}: not within {limit:?}; status {:?}\nlog:\n{}",
                row(n, etcd),
                std::fs::read_to_string(&n.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn applied(rev: i64) -> impl Fn(&serde_json::Value) -> bool {
    move |r| r["applied_revision"] == rev && r["status"]["result"] == "converged"
}

fn log_lines(n: &Node, event: &str) -> usize {
    std::fs::read_to_string(&n.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(event))
        .count()
}

fn tenant_dir(n: &Node, id: &str) -> PathBuf {
    n.state.join("tenants").join(id)
}

const NEEDS: &[Need] = &[Need::Root, Need::Etcd];

#[test]
fn the_agent_follows_its_key_debounces_bursts_and_never_acts_on_no_information() {
    if !require(
        "the_agent_follows_its_key_debounces_bursts_and_never_acts_on_no_information",
        NEEDS,
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let n = node(work.path(), "n1");
    let r1 = put(&n, &etcd, &doc(&["t0"], 1));
    let _a = agent(&n, &etcd, &[]);
    wait_for(
        &n,
        &etcd,
        "the first document applied",
        Duration::from_secs(15),
        applied(r1),
    );
    assert!(tenant_dir(&n, "t0").join("tenant.json").exists());
    assert_eq!(log_lines(&n, "reconcile started"), 1, "applied once");

    // A burst of 10 writes: one or two reconciles, ending at the last.
    let before = log_lines(&n, "reconcile started");
    let mut last = 0;
    for i in 0..10 {
        last = put(&n, &etcd, &doc(&["t0", "t1"], 1 + (i % 4)));
    }
    wait_for(
        &n,
        &etcd,
        "the burst's last write applied",
        Duration::from_secs(20),
        applied(last),
    );
    let runs = log_lines(&n, "reconcile started") - before;
    assert!(
        (1..=2).contains(&runs),
        "{runs} reconciles for a burst of 10"
    );
    assert!(tenant_dir(&n, "t1").exists());

    // No information: the last good document stays, the status says why.
    let key = format!("/mvm/nodes/{}/desired", n.id);
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("deleted", Vec::new(), "absent"),
        ("empty", b"   ".to_vec(), "absent"),
        ("invalid", br#"{"tenants": 5}"#.to_vec(), "invalid"),
        (
            "duplicate keys",
            br#"{"tenants": [], "tenants": []}"#.to_vec(),
            "invalid",
        ),
        (
            "deep",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            "invalid",
        ),
        (
            "huge",
            format!("{{\"tenants\": [], \"x\": \"{}\"}}", "a".repeat(1 << 20)).into_bytes(),
            "invalid",
        ),
        ("not UTF-8", vec![b'{', 0xff, b'}'], "invalid"),
    ];
    for (what, value, result) in hostile {
        if what == "deleted" {
            etcd.delete(&key);
        } else {
            let r = etcd.put_raw(&key, &value);
            assert!(
                r.contains("revision"),
                "{what}: etcd refused the write: {r}"
            );
        }
        let st = wait_for(&n, &etcd, what, Duration::from_secs(15), |r| {
            r["status"]["result"] == result
        });
        assert_eq!(
            st["applied_revision"], last,
            "{what}: the applied document changed"
        );
        assert!(
            st["status"]["reason"]
                .as_str()
                .unwrap()
                .contains("keeping the last good"),
            "{st}"
        );
        assert!(
            tenant_dir(&n, "t0").exists() && tenant_dir(&n, "t1").exists(),
            "{what} removed a tenant"
        );
    }
    // A drain is explicit.
    let drained = put(&n, &etcd, "{\"tenants\": []}\n");
    let _ = drained;
    // Without --prune the tenants are kept, with it they would go: the
    // document is applied either way.
    wait_for(
        &n,
        &etcd,
        "the drain applied",
        Duration::from_secs(15),
        applied(drained),
    );
}

#[test]
fn the_agent_rewatches_after_etcd_restarts_and_relists_after_compaction() {
    if !require(
        "the_agent_rewatches_after_etcd_restarts_and_relists_after_compaction",
        NEEDS,
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start();
    let n = node(work.path(), "n2");
    let r1 = put(&n, &etcd, &doc(&["t0"], 1));
    let a = agent(&n, &etcd, &[]);
    wait_for(
        &n,
        &etcd,
        "the first document",
        Duration::from_secs(15),
        applied(r1),
    );

    etcd.restart();
    let r2 = put(&n, &etcd, &doc(&["t0", "t1"], 1));
    wait_for(
        &n,
        &etcd,
        "a write after etcd restarted",
        Duration::from_secs(40),
        applied(r2),
    );
    assert!(
        log_lines(&n, "etcd lost") >= 1,
        "the agent did not notice etcd going"
    );
    assert_eq!(
        log_lines(&n, "claim taken"),
        0,
        "the agent lost its own claim to itself"
    );

    // The agent stopped while the key moves on and the history is
    // compacted past what it saw; etcd restarts under it.
    // (Stopped first, then etcd restarted: its stream is dead before the
    // writes, so they can only reach it by re-watching.)
    a.signal(nix::sys::signal::Signal::SIGSTOP);
    etcd.restart();
    let mut r3 = 0;
    for v in 1..=3 {
        r3 = put(&n, &etcd, &doc(&["t0", "t1", "t2"], v));
    }
    let compacted = etcd.compact(etcd.revision());
    assert!(compacted.contains("header"), "{compacted}");
    a.signal(nix::sys::signal::Signal::SIGCONT);
    wait_for(
        &n,
        &etcd,
        "the newest value after compaction",
        Duration::from_secs(40),
        applied(r3),
    );
    assert_eq!(
        log_lines(&n, "history compacted"),
        1,
        "the agent did not re-list:\n{}",
        std::fs::read_to_string(&n.log).unwrap()
    );
    assert!(tenant_dir(&n, "t2").exists());
}

#[test]
fn a_restarted_agent_reconciles_from_its_kept_document_offline_and_never_prunes_without_one() {
    if !require(
        "a_restarted_agent_reconciles_from_its_kept_document_offline_and_never_prunes_without_one",
        NEEDS,
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start();
    let n = node(work.path(), "n3");
    let r1 = put(&n, &etcd, &doc(&["t0", "t1"], 1));
    let mut a = agent(&n, &etcd, &["--prune"]);
    wait_for(
        &n,
        &etcd,
        "the document",
        Duration::from_secs(15),
        applied(r1),
    );
    assert!(a.term().success(), "SIGTERM exits 0");
    let kept = n.state.join("agent-desired.json");
    let lg: serde_json::Value = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
    assert_eq!(lg["revision"], r1);

    etcd.kill();
    std::fs::remove_dir_all(tenant_dir(&n, "t1").join("jail")).unwrap();
    let before = log_lines(&n, "reconcile finished");
    let mut a = agent(&n, &etcd, &["--prune"]);
    let start = Instant::now();
    while log_lines(&n, "reconcile finished") == before {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no offline reconcile:\n{}",
            std::fs::read_to_string(&n.log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        tenant_dir(&n, "t1").join("jail").is_dir(),
        "the drift was not repaired offline"
    );
    assert!(tenant_dir(&n, "t0").exists() && tenant_dir(&n, "t1").exists());
    assert!(a.term().success());

    // No document at all (none kept, etcd down): nothing is reconciled,
    // so --prune removes nothing.
    std::fs::remove_file(&kept).unwrap();
    let before = log_lines(&n, "reconcile started");
    let mut a = agent(&n, &etcd, &["--prune"]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        log_lines(&n, "reconcile started"),
        before,
        "reconciled without a document"
    );
    assert!(tenant_dir(&n, "t0").exists() && tenant_dir(&n, "t1").exists());
    assert!(a.term().success());
}

#[test]
fn one_agent_per_node_id_and_a_killed_agents_lease_runs_out() {
    if !require(
        "one_agent_per_node_id_and_a_killed_agents_lease_runs_out",
        NEEDS,
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let n = node(work.path(), "n4");
    let r1 = put(&n, &etcd, &doc(&["t0"], 1));
    let mut a = agent(&n, &etcd, &[]);
    wait_for(
        &n,
        &etcd,
        "the document",
        Duration::from_secs(15),
        applied(r1),
    );
    assert_eq!(row(&n, &etcd).unwrap()["alive"], true);

    let second = node(work.path(), "n4b");
    let out = Command::new(MVM)
        .arg("--config")
        .arg(&second.config)
        .args([
            "agent",
            "run",
            "--etcd",
            &etcd.url(),
            "--node-id",
            "n4",
            "--target",
            "tenant.*.dirs",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another agent runs for node n4: mvm agent pid"),
        "{err}"
    );

    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let died = Instant::now();
    wait_for(
        &n,
        &etcd,
        "the killed agent shown dead",
        Duration::from_secs(45),
        |r| r["alive"] == false,
    );
    assert!(
        died.elapsed() < Duration::from_secs(40),
        "{:?}",
        died.elapsed()
    );
}

/// The unit shipped for systemd says what the agent's service needs: VMs
/// and the metadata service survive a restart, SIGTERM lets running steps
/// finish, SIGHUP reloads, failures restart it.
#[test]
fn the_systemd_unit_keeps_vms_across_agent_restarts() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/mvm-agent.service"
    ))
    .unwrap();
    let has = |k: &str, v: &str| unit.lines().any(|l| l.trim() == format!("{k}={v}"));
    for (k, v) in [
        ("KillMode", "process"),
        ("KillSignal", "SIGTERM"),
        ("SendSIGKILL", "no"),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert!(has(k, v), "contrib/mvm-agent.service lacks {k}={v}");
    }
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.contains(" agent run "), "{exec}");
    // The command line it runs parses.
    let out = Command::new(MVM)
        .args(["agent", "run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn a_file_source_is_followed_and_sighup_reloads_node_toml() {
    if !require(
        "a_file_source_is_followed_and_sighup_reloads_node_toml",
        &[Need::Root],
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let n = node(work.path(), "f1");
    let file = work.path().join("desired.json");
    std::fs::write(&file, doc(&["t0"], 1)).unwrap();
    let mut a = agent_from(&n, &["--desired", file.to_str().unwrap()], &[]);
    let until = |what: &str, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}:\n{}",
                std::fs::read_to_string(&n.log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    until("t0 created", &|| {
        tenant_dir(&n, "t0").join("tenant.json").exists()
    });
    std::fs::write(&file, doc(&["t0", "t1"], 1)).unwrap();
    until("t1 created on the file's change", &|| {
        tenant_dir(&n, "t1").join("tenant.json").exists()
    });
    std::fs::write(&file, "").unwrap();
    until("an empty file refused", &|| {
        log_lines(&n, "document absent") >= 1
    });
    assert!(
        tenant_dir(&n, "t1").exists(),
        "an empty file removed a tenant"
    );

    // SIGHUP: node.toml read again; a new cgroup parent is used at once.
    let parent = format!("mvm-test-fleet-{}-f1-reloaded", std::process::id());
    let _cleanup = CgroupCleanup(cgroup2().join(&parent));
    let text = std::fs::read_to_string(&n.config).unwrap();
    let old = text
        .lines()
        .find(|l| l.starts_with("parent"))
        .unwrap()
        .to_string();
    std::fs::write(
        &n.config,
        text.replace(&old, &format!("parent = \"{parent}\"")),
    )
    .unwrap();
    a.signal(nix::sys::signal::Signal::SIGHUP);
    until("the reload used", &|| {
        cgroup2().join(&parent).join("t1").is_dir()
    });
    assert_eq!(log_lines(&n, "config reloaded"), 1);
    assert!(a.term().success());
}
