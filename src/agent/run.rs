//! `mvm agent run`: the node agent as a long-running service. It follows
//! a desired-state source (a key in etcd, or a file), keeps the last good
//! document on disk and reconciles toward it — at once on start, on every
//! new valid document (debounced), and on a jittered resync that repairs
//! drift — and reports each outcome as the node's status, under a lease,
//! with a claim that makes it the only agent of its node id.
//!
//! An absent, empty, oversize or invalid value is no information: the
//! last good document stays and the status says why (a deleted key never
//! means "delete every tenant"). With no good document yet — none read in
//! this run and none on disk — nothing is reconciled at all.

use super::reconcile::{Goal, Outcome, Request, Ui};
use super::{AgentError, Node};
use crate::fleet::{self, Applied, Debounce, Failure, Keys, NodeStatus, Received, RunResult};
use crate::host::etcd::{Claim, Etcd};
use crate::host::service::{self, Moment};
use crate::plan::PlanOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where the desired state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `<prefix>/nodes/<node-id>/desired` in etcd.
    Etcd { endpoints: Vec<String>, keys: Keys },
    /// A file, re-read when it changes.
    File(PathBuf),
}

pub struct RunOptions {
    pub source: Source,
    /// Overrides `<state>/node-id` (simulations of many nodes).
    pub node_id: Option<String>,
    pub prune: bool,
    pub targets: Vec<String>,
    pub resync: Duration,
    /// One reconcile of the current document, then exit.
    pub once: bool,
    pub lock_timeout: Duration,
    pub debounce: (Duration, Duration),
    pub command_line: String,
    pub operator: String,
    /// Where to serve the node's metrics (`/metrics`), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Reads node.toml again (SIGHUP).
    pub reload: Box<dyn Fn() -> Result<crate::spec::NodeConfig, AgentError> + Send + Sync>,
}

/// How the agent talks: the reconcile's UI, and one log line per event.
pub trait RunUi: Ui + Send + Sync {
    fn log(&self, event: &str, fields: &[(&str, String)]);
}

/// The last good document, as kept on disk (`<state>/agent-desired.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastGood {
    pub format_version: u32,
    /// The etcd revision of the value (0 for a file).
    pub revision: i64,
    pub sha256: String,
    /// Where it came from (a key or a path).
    pub source: String,
    /// The value exactly as received.
    pub document: String,
}

/// What a source says.
#[derive(Debug)]
enum Event {
    Value {
        bytes: Option<Vec<u8>>,
        revision: i64,
    },
    Connected(bool),
    /// The history was compacted past the revision watched from: the key
    /// is read afresh.
    Compacted(i64),
}

/// Runs the agent until SIGTERM/SIGINT (exit code 0), or once.
pub fn run(
    node: Node,
    opts: RunOptions,
    ui: Arc<dyn RunUi>,
) -> Result<std::process::ExitCode, AgentError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    rt.block_on(run_async(Arc::new(node), opts, ui))
}

fn unit() -> f64 {
    service::random_unit()
}

fn now_text() -> String {
    service::now_text()
}

struct State {
    node: Arc<Node>,
    opts: RunOptions,
    ui: Arc<dyn RunUi>,
    source_name: String,
    last_good: Option<(crate::spec::DesiredState, LastGood)>,
    status: NodeStatus,
    stop: Arc<AtomicBool>,
    /// What `/metrics` reads: the node as last (re)loaded, and this
    /// agent's last reconcile (no-op runs too, which leave no file).
    metrics: Arc<std::sync::Mutex<(Arc<Node>, Option<crate::state::LastReconcile>)>>,
}

async fn run_async(
    node: Arc<Node>,
    opts: RunOptions,
    ui: Arc<dyn RunUi>,
) -> Result<std::process::ExitCode, AgentError> {
    let node_id = match &opts.node_id {
        Some(id) => id.clone(),
        None => node.ensure_node_id()?,
    };
    fleet::check_node_id(&node_id).map_err(|problem| AgentError::BadNodeId {
        given: node_id.clone(),
        problem,
    })?;
    let source_name = match &opts.source {
        Source::Etcd { keys, .. } => keys.desired(&node_id),
        Source::File(p) => p.display().to_string(),
    };
    let status = NodeStatus {
        format_version: fleet::STATUS_VERSION,
        node_id: node_id.clone(),
        mvm_version: env!("CARGO_PKG_VERSION").to_string(),
        applied: None,
        result: RunResult::Absent,
        reason: Some("no desired document read yet".into()),
        summary: Default::default(),
        failures: Vec::new(),
        overrides: Vec::new(),
        etcd_connected: false,
        etcd_since: now_text(),
        last_reconcile: None,
        last_reconcile_ms: None,
    };
    let mut st = State {
        node: node.clone(),
        opts,
        ui: ui.clone(),
        source_name,
        last_good: None,
        status,
        stop: Arc::new(AtomicBool::new(false)),
        metrics: Arc::new(std::sync::Mutex::new((node.clone(), None))),
    };
    if let Some(addr) = st.opts.metrics_listen {
        let listener = crate::host::metrics_server::bind(addr)
            .await
            .map_err(|e| AgentError::MetricsListen(addr.to_string(), e.to_string()))?;
        let shared = st.metrics.clone();
        let render = Arc::new(move || {
            let (node, last) = {
                let m = shared.lock().unwrap_or_else(|p| p.into_inner());
                (m.0.clone(), m.1.clone())
            };
            match super::metrics::node(&node) {
                Ok(mut m) => {
                    if last.is_some() {
                        m.last_reconcile = last;
                    }
                    super::metrics::prometheus(&m)
                }
                Err(e) => format!(
                    "# mvm could not read the node: {}\n",
                    crate::text::one_line(&e.to_string())
                ),
            }
        });
        ui.log(
            "metrics served",
            &[("url", format!("http://{addr}/metrics"))],
        );
        tokio::spawn(crate::host::metrics_server::serve(listener, render));
    }
    // SIGTERM/SIGINT (listened for from the start): a running reconcile finishes its running steps and
    // starts no new ones; then the agent exits 0.
    let term = Arc::new(tokio::sync::Notify::new());
    {
        let (term, stop) = (term.clone(), st.stop.clone());
        tokio::spawn(async move {
            crate::host::signals::listen_for_termination().await;
            stop.store(true, Ordering::SeqCst);
            term.notify_one();
        });
    }
    // The status channel: the publisher writes what it last got.
    let (status_tx, status_rx) = tokio::sync::watch::channel(st.status.clone());
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let publisher = match &st.opts.source {
        Source::Etcd { endpoints, keys } => {
            let (claimed_tx, claimed) = tokio::sync::oneshot::channel();
            let session = tokio::spawn(etcd_session(
                endpoints.clone(),
                keys.clone(),
                node_id.clone(),
                st.source_name.clone(),
                events_tx.clone(),
                status_rx,
                ui.clone(),
                claimed_tx,
            ));
            // A second agent of this node id is refused at start; with
            // etcd unreachable the agent starts offline (from the last
            // good document) and claims once it connects.
            let claim = tokio::select! {
                c = service::timeout(Duration::from_secs(5), claimed) => c,
                _ = term.notified() => return Ok(std::process::ExitCode::SUCCESS),
            };
            match claim {
                Some(Ok(Err(holder))) => {
                    return Err(AgentError::AgentRunning { node_id, holder });
                }
                Some(Ok(Ok(()))) => {}
                _ if st.opts.once => {
                    session.abort();
                    return Err(AgentError::Unreachable(endpoints.join(",")));
                }
                _ => ui.log(
                    "etcd unreachable: running offline from the last good document",
                    &[],
                ),
            }
            Some(session)
        }
        Source::File(path) => {
            drop(status_rx);
            tokio::spawn(watch_file(path.clone(), events_tx.clone()));
            None
        }
    };
    // The document kept from an earlier run: reconciled at once, offline.
    match read_last_good(&node) {
        Ok(Some((desired, lg))) => {
            ui.log(
                "resumed",
                &[
                    ("revision", lg.revision.to_string()),
                    ("sha256", lg.sha256.clone()),
                ],
            );
            st.last_good = Some((desired, lg));
            if !st.opts.once {
                reconcile(&mut st).await;
                let _ = status_tx.send(st.status.clone());
            }
        }
        Ok(None) => {}
        Err(e) => ui.log("last good document unusable", &[("error", e.to_string())]),
    }
    let mut debounce = Debounce::new(st.opts.debounce.0, st.opts.debounce.1);
    let mut pending: Option<(Option<Vec<u8>>, i64)> = None;
    let mut next_resync = Moment::now() + fleet::resync(st.opts.resync, unit());
    let mut hangups = crate::host::signals::Hangups::listen();
    loop {
        let due = debounce.due().unwrap_or(next_resync).min(next_resync);
        tokio::select! {
            _ = hangups.recv() => {
                if reload(&mut st) {
                    reconcile(&mut st).await;
                }
                let _ = status_tx.send(st.status.clone());
            }
            _ = term.notified() => {
                ui.log("stopping", &[("signal", "TERM or INT".into())]);
                break;
            }
            ev = events.recv() => match ev {
                Some(Event::Value { bytes, revision }) => {
                    ui.log("document received", &[("revision", revision.to_string()), ("bytes", bytes.as_ref().map_or(0, Vec::len).to_string())]);
                    pending = Some((bytes, revision));
                    debounce.changed(Moment::now());
                    if st.opts.once {
                        debounce.clear();
                        let (b, r) = pending.take().expect("just set");
                        evaluate(&mut st, b, r).await;
                        let _ = status_tx.send(st.status.clone());
                        break;
                    }
                }
                Some(Event::Connected(up)) => {
                    if st.status.etcd_connected != up {
                        st.status.etcd_connected = up;
                        st.status.etcd_since = now_text();
                        ui.log(if up { "etcd connected" } else { "etcd lost" }, &[]);
                        let _ = status_tx.send(st.status.clone());
                    }
                }
                Some(Event::Compacted(rev)) => {
                    ui.log("history compacted: reading the key afresh", &[("compact_revision", rev.to_string())]);
                }
                None => break,
            },
            _ = service::sleep_until(due) => {
                if let (Some(_), Some((b, r))) = (debounce.due().filter(|d| *d <= Moment::now()), pending.take()) {
                    debounce.clear();
                    evaluate(&mut st, b, r).await;
                } else if Moment::now() >= next_resync {
                    next_resync = Moment::now() + fleet::resync(st.opts.resync, unit());
                    if st.last_good.is_some() {
                        ui.log("resync", &[]);
                        reconcile(&mut st).await;
                    }
                }
                let _ = status_tx.send(st.status.clone());
            }
        }
    }
    // Let the publisher write the last status, then release the claim.
    drop(status_tx);
    if let Some(p) = publisher {
        let _ = service::timeout(Duration::from_secs(5), p).await;
    }
    let ok = !st.opts.once || matches!(st.status.result, RunResult::Converged);
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

const LEASE_TTL: i64 = 30;

/// Who claims a node id: this process, on this host, since now.
fn holder(node_id: &str) -> String {
    format!(
        "mvm agent {} for node {node_id} since {}",
        service::process_name(),
        now_text()
    )
}

/// SIGHUP: node.toml read again and, when it is valid and keeps the
/// state dir, used from now on — the last good document re-checked under
/// it and reconciled.
fn reload(st: &mut State) -> bool {
    let config = match (st.opts.reload)() {
        Ok(c) => c,
        Err(e) => {
            st.ui.log(
                "config not reloaded",
                &[("error", crate::text::one_line(&e.to_string()).into_owned())],
            );
            return false;
        }
    };
    if config.state_dir != st.node.config.state_dir {
        st.ui.log(
            "config not reloaded",
            &[(
                "error",
                format!(
                    "state_dir changed to {}; restart the agent to move it",
                    config.state_dir.display()
                ),
            )],
        );
        return false;
    }
    let node = Node::new(config, st.node.host.clone());
    if let Some((_, lg)) = &st.last_good {
        match fleet::receive(Some(lg.document.as_bytes()), &lg.source, &node.config) {
            Received::Valid { desired, .. } => st.last_good = Some((desired, lg.clone())),
            _ => {
                st.ui.log(
                    "config not reloaded",
                    &[(
                        "error",
                        "the last good document is not valid under it".into(),
                    )],
                );
                return false;
            }
        }
    }
    st.node = Arc::new(node);
    st.metrics.lock().unwrap_or_else(|p| p.into_inner()).0 = st.node.clone();
    st.ui.log("config reloaded", &[]);
    true
}

/// Judges a new value and, when it is a new good document, keeps it and
/// reconciles toward it.
async fn evaluate(st: &mut State, bytes: Option<Vec<u8>>, revision: i64) {
    match fleet::receive(bytes.as_deref(), &st.source_name, &st.node.config) {
        Received::Valid { desired, sha256 } => {
            let same = st
                .last_good
                .as_ref()
                .is_some_and(|(_, lg)| lg.sha256 == sha256);
            let lg = LastGood {
                format_version: 1,
                revision,
                sha256: sha256.clone(),
                source: st.source_name.clone(),
                document: String::from_utf8_lossy(bytes.as_deref().unwrap_or_default())
                    .into_owned(),
            };
            if let Err(e) = write_last_good(&st.node, &lg) {
                st.ui
                    .log("cannot keep the document", &[("error", e.to_string())]);
                st.status.result = RunResult::Failed;
                st.status.reason = Some(format!("cannot keep the document: {e}"));
                return;
            }
            st.last_good = Some((desired, lg));
            if same && st.status.result == RunResult::Converged {
                st.status.applied = Some(Applied { revision, sha256 });
                return;
            }
            reconcile(st).await;
        }
        Received::Invalid(why) => {
            st.ui.log(
                "document refused",
                &[("revision", revision.to_string()), ("reason", why.clone())],
            );
            st.status.result = RunResult::Invalid;
            st.status.reason = Some(format!(
                "revision {revision} refused, keeping the last good document: {why}"
            ));
        }
        Received::Absent(why) => {
            st.ui
                .log("document absent", &[("revision", revision.to_string())]);
            st.status.result = RunResult::Absent;
            st.status.reason = Some(format!("{why}; keeping the last good document"));
        }
    }
}

/// Reconciles toward the last good document (on its own thread: the
/// engine has its own runtime), under the node lock like every command.
async fn reconcile(st: &mut State) {
    let Some((desired, lg)) = st.last_good.clone() else {
        return;
    };
    let targets = match super::targets(&st.opts.targets) {
        Ok(t) => t,
        Err(e) => {
            st.status.result = RunResult::Failed;
            st.status.reason = Some(e.to_string());
            return;
        }
    };
    st.ui.log(
        "reconcile started",
        &[("revision", lg.revision.to_string())],
    );
    let started = Moment::now();
    let at = now_text();
    let (node, ui, stop) = (st.node.clone(), st.ui.clone(), st.stop.clone());
    let (prune, lock_timeout) = (st.opts.prune, st.opts.lock_timeout);
    let (command_line, operator) = (st.opts.command_line.clone(), st.opts.operator.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let req = Request {
            goal: Goal::Desired {
                desired,
                options: PlanOptions {
                    prune,
                    targets,
                    threads: crate::host::service::cpus(),
                    ..Default::default()
                },
            },
            parallelism: None,
            lock_timeout,
            command_line: &command_line,
            operator: &operator,
        };
        let out = super::reconcile::reconcile(&node, req, ui.as_ref(), stop, false);
        let overrides = node
            .desired(None)
            .map(|(_, _, notes)| notes.iter().map(|n| n.text.clone()).collect())
            .unwrap_or_default();
        let _ = tx.send((out, overrides));
    });
    let Ok((out, overrides)) = rx.await else {
        return;
    };
    let ms = started.elapsed().as_millis() as u64;
    let s = &mut st.status;
    s.last_reconcile = Some(at);
    s.last_reconcile_ms = Some(ms);
    s.applied = Some(Applied {
        revision: lg.revision,
        sha256: lg.sha256.clone(),
    });
    s.overrides = overrides;
    match out {
        Ok(Outcome::NoChanges) => {
            (s.result, s.reason, s.failures) = (RunResult::Converged, None, Vec::new());
            s.summary = Default::default();
        }
        Ok(Outcome::Cancelled) => {
            (s.result, s.reason) = (RunResult::Failed, Some("cancelled".into()));
        }
        Ok(Outcome::Applied(report)) => {
            let c = report.counts();
            s.summary = crate::plan::Summary {
                add: c.added,
                change: c.changed,
                destroy: c.destroyed,
                blocked: report.blocked().count(),
            };
            s.failures = report
                .steps
                .iter()
                .filter_map(|step| {
                    use crate::apply::StepOutcome as O;
                    let (outcome, error) = match &step.outcome {
                        O::Done => return None,
                        O::Failed(e) => ("failed", Some(crate::text::one_line(e).into_owned())),
                        O::Blocked(e) => ("blocked", Some(crate::text::one_line(e).into_owned())),
                        O::Skipped { because } => {
                            ("skipped", Some(format!("{because} did not succeed")))
                        }
                        O::Interrupted => ("interrupted", None),
                    };
                    Some(Failure {
                        address: step.address.to_string(),
                        outcome: outcome.into(),
                        error,
                    })
                })
                .collect();
            (s.result, s.reason) = if report.success() {
                (RunResult::Converged, None)
            } else if report.failed().count() == 0 && report.blocked().count() > 0 {
                (
                    RunResult::Blocked,
                    Some(format!(
                        "{} change(s) blocked on this node",
                        report.blocked().count()
                    )),
                )
            } else {
                (
                    RunResult::Failed,
                    Some(format!("{} resource(s) failed", report.failed().count())),
                )
            };
        }
        Err(e) => {
            s.result = RunResult::Failed;
            s.reason = Some(crate::text::one_line(&e.to_string()).into_owned());
            s.failures = Vec::new();
        }
    }
    let (summary, result) = (s.summary, s.result);
    let last = crate::state::LastReconcile {
        at: s.last_reconcile.clone().unwrap_or_default(),
        result: format!("{result:?}").to_lowercase(),
        duration_ms: ms,
        added: summary.add,
        changed: summary.change,
        destroyed: summary.destroy,
        failed: s.failures.iter().filter(|f| f.outcome == "failed").count(),
        blocked: summary.blocked,
    };
    st.metrics.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(last);
    st.ui.log(
        "reconcile finished",
        &[
            ("result", format!("{result:?}").to_lowercase()),
            ("added", summary.add.to_string()),
            ("changed", summary.change.to_string()),
            ("destroyed", summary.destroy.to_string()),
            ("blocked", summary.blocked.to_string()),
            ("duration_ms", ms.to_string()),
        ],
    );
}

fn read_last_good(
    node: &Node,
) -> Result<Option<(crate::spec::DesiredState, LastGood)>, AgentError> {
    let path = node.layout.agent_desired();
    let Some(bytes) = node.read_state_file(&path, crate::spec::Input::Desired.cap() * 2)? else {
        return Ok(None);
    };
    let lg: LastGood = serde_json::from_slice(&bytes).map_err(|e| AgentError::Corrupt {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    if crate::digest::sha256(lg.document.as_bytes()) != lg.sha256 {
        return Err(AgentError::Corrupt {
            path,
            problem: "its sha256 does not match its document".into(),
        });
    }
    match fleet::receive(Some(lg.document.as_bytes()), &lg.source, &node.config) {
        Received::Valid { desired, .. } => Ok(Some((desired, lg))),
        Received::Invalid(why) => Err(AgentError::Corrupt { path, problem: why }),
        Received::Absent(why) => Err(AgentError::Corrupt {
            path,
            problem: why.into(),
        }),
    }
}

/// Keeps the document before it is acted on (atomically, fsynced).
fn write_last_good(node: &Node, lg: &LastGood) -> Result<(), AgentError> {
    node.host.ensure_state_dir(node.layout.root())?;
    let text = crate::spec::json::file_text(lg);
    node.host
        .files
        .write_file(&node.layout.agent_desired(), &text, 0o600)?;
    Ok(())
}

/// The agent's life on etcd: connect (retrying with backoff), claim the
/// node id under a fresh lease (told back through `claimed`; a claim held
/// by another agent ends the session), then follow the document and
/// publish the status until the agent stops.
#[allow(clippy::too_many_arguments)]
async fn etcd_session(
    endpoints: Vec<String>,
    keys: Keys,
    node_id: String,
    key: String,
    events: mpsc::UnboundedSender<Event>,
    status: tokio::sync::watch::Receiver<NodeStatus>,
    ui: Arc<dyn RunUi>,
    claimed: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut attempt = 0u32;
    let me = holder(&node_id);
    let (mut etcd, lease) = loop {
        let tried = async {
            let mut etcd = Etcd::connect(&endpoints).await?;
            let lease = etcd.grant(LEASE_TTL).await?;
            let claim = etcd
                .claim(&keys.agent(&node_id), me.as_bytes(), lease)
                .await?;
            Ok::<_, crate::host::etcd::EtcdError>((etcd, lease, claim))
        }
        .await;
        match tried {
            Ok((etcd, lease, Claim::Ours)) => break (etcd, lease),
            Ok((mut etcd, lease, Claim::Held(by))) => {
                let _ = etcd.revoke(lease).await;
                let _ = claimed.send(Err(String::from_utf8_lossy(&by).into_owned()));
                return;
            }
            Err(e) => {
                if attempt == 0 {
                    ui.log("etcd unreachable", &[("error", e.to_string())]);
                }
                let _ = events.send(Event::Connected(false));
                sleep_backoff(&mut attempt).await;
            }
        }
    };
    let _ = claimed.send(Ok(()));
    ui.log(
        "claimed",
        &[("node_id", node_id.clone()), ("key", keys.agent(&node_id))],
    );
    let watcher = tokio::spawn(watch_etcd(etcd.clone(), key, events));
    publish(
        etcd.clone(),
        keys.clone(),
        node_id.clone(),
        me.clone(),
        lease,
        status,
        ui,
    )
    .await;
    watcher.abort();
    let _ = etcd.release(&keys.agent(&node_id), me.as_bytes()).await;
}

/// The document in etcd: an initial get, then a watch from the next
/// revision; a broken stream re-watches from the last revision seen + 1
/// with capped exponential backoff and full jitter, forever; a compacted
/// revision re-lists.
async fn watch_etcd(mut etcd: Etcd, key: String, tx: mpsc::UnboundedSender<Event>) {
    let mut attempt = 0u32;
    let mut from: Option<i64> = None;
    loop {
        let start = match from {
            Some(r) => r,
            None => match etcd.get(&key).await {
                Ok((v, rev)) => {
                    let _ = tx.send(Event::Connected(true));
                    let (bytes, revision) = match v {
                        Some(v) => (Some(v.bytes), v.mod_revision),
                        None => (None, rev),
                    };
                    let _ = tx.send(Event::Value { bytes, revision });
                    rev + 1
                }
                Err(_) => {
                    let _ = tx.send(Event::Connected(false));
                    sleep_backoff(&mut attempt).await;
                    continue;
                }
            },
        };
        let mut stream = match etcd.watch(&key, start).await {
            Ok(s) => s,
            Err(_) => {
                let _ = tx.send(Event::Connected(false));
                sleep_backoff(&mut attempt).await;
                from = Some(start);
                continue;
            }
        };
        let _ = tx.send(Event::Connected(true));
        let mut last = start - 1;
        from = loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    attempt = 0;
                    if resp.compact_revision() > 0 || resp.canceled() {
                        // Compacted past what we saw: read it afresh.
                        let _ = tx.send(Event::Compacted(resp.compact_revision()));
                        break None;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        last = last.max(kv.mod_revision());
                        let bytes = match ev.event_type() {
                            etcd_client::EventType::Put => Some(kv.value().to_vec()),
                            etcd_client::EventType::Delete => None,
                        };
                        let _ = tx.send(Event::Value {
                            bytes,
                            revision: kv.mod_revision(),
                        });
                    }
                }
                Ok(None) | Err(_) => {
                    let _ = tx.send(Event::Connected(false));
                    sleep_backoff(&mut attempt).await;
                    break Some(last + 1);
                }
            }
        };
    }
}

async fn sleep_backoff(attempt: &mut u32) {
    let d = fleet::backoff(
        *attempt,
        Duration::from_millis(200),
        Duration::from_secs(30),
        unit(),
    );
    *attempt = attempt.saturating_add(1);
    service::sleep(d).await;
}

/// The document in a file: re-read when it appears, goes, or its inode,
/// mtime or size changes (checked every 500 ms).
async fn watch_file(path: PathBuf, tx: mpsc::UnboundedSender<Event>) {
    let mut seen: Option<Option<(u64, i64, i64, u64)>> = None;
    loop {
        let now = service::file_stamp(&path);
        if seen != Some(now) {
            seen = Some(now);
            let bytes = now.and_then(|_| {
                crate::host::fs::input::read_text(&path, crate::spec::Input::Desired)
                    .ok()
                    .map(String::into_bytes)
            });
            if tx.send(Event::Value { bytes, revision: 0 }).is_err() {
                return;
            }
        }
        service::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes the status under the lease: on change, and at least every 3
/// minutes; keeps the lease alive at TTL/3; a lost lease is granted anew,
/// the claim made again and the status re-put. Ends when the agent stops
/// (the channel closes): the last status is written, then the lease
/// revoked (the status and claim go with it: the agent is not running).
async fn publish(
    mut etcd: Etcd,
    keys: Keys,
    node_id: String,
    me: String,
    mut lease: i64,
    mut rx: tokio::sync::watch::Receiver<NodeStatus>,
    ui: Arc<dyn RunUi>,
) {
    let key = keys.status(&node_id);
    let mut written: Option<(NodeStatus, Moment)> = None;
    let mut keepalive = service::Ticker::every(Duration::from_secs((LEASE_TTL / 3) as u64));
    let mut lost = false;
    loop {
        let closed = tokio::select! {
            r = rx.changed() => r.is_err(),
            _ = keepalive.tick() => {
                // Only an expired lease is lost; an unreachable etcd is
                // tried again at the next tick (the lease outlives a
                // restart of etcd).
                if let Ok(false) = etcd.keep_alive_once(lease).await {
                    lost = true;
                }
                false
            }
        };
        if lost {
            match etcd.grant(LEASE_TTL).await {
                Ok(l) => {
                    lease = l;
                    lost = false;
                    written = None;
                    let agent_key = keys.agent(&node_id);
                    match etcd.claim(&agent_key, me.as_bytes(), lease).await {
                        Ok(Claim::Ours) => ui.log("lease renewed", &[]),
                        Ok(Claim::Held(by)) if by == me.as_bytes() => {
                            // Still ours, under the old lease: move it.
                            let _ = etcd.put(&agent_key, me.as_bytes(), Some(lease)).await;
                            ui.log("lease renewed", &[]);
                        }
                        Ok(Claim::Held(by)) => ui.log(
                            "claim taken by another agent",
                            &[("holder", String::from_utf8_lossy(&by).into_owned())],
                        ),
                        Err(e) => ui.log("cannot claim", &[("error", e.to_string())]),
                    }
                }
                Err(_) => continue,
            }
        }
        let now = rx.borrow().clone();
        let stale = written
            .as_ref()
            .is_none_or(|(w, at)| w.differs(&now) || at.elapsed() >= Duration::from_secs(180));
        if stale {
            let text = serde_json::to_vec(&now).expect("status serializes");
            // Unwritten (etcd away): tried again at the next tick or change.
            if etcd.put(&key, &text, Some(lease)).await.is_ok() {
                written = Some((now, Moment::now()));
            }
        }
        if closed {
            let _ = etcd.revoke(lease).await;
            return;
        }
    }
}
