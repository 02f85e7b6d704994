//! `mvm agent run` (the agent's log and terminal output) and `mvm fleet
//! put|get|status` (the control plane's side, on etcd).

use super::progress::{Bars, Lines};
use super::{EtcdArgs, FleetGetArgs, FleetPutArgs, FleetStatusArgs, RunArgs, output};
use crate::agent::reconcile::Ui;
use crate::agent::run::{RunOptions, RunUi, Source};
use crate::agent::{self, AgentError, Node};
use crate::apply::progress::Progress;
use crate::fleet::{Keys, NodeStatus};
use crate::host::etcd::Etcd;
use crate::plan::Plan;
use crate::settings::Settings;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// The agent's voice: one line per event on stdout (`event key=value …`
/// or a JSON object), and on a terminal the plan and progress of each
/// reconcile as `agent reconcile` shows them.
struct AgentLog {
    json: bool,
    terminal: bool,
    colors: bool,
}

impl RunUi for AgentLog {
    fn log(&self, event: &str, fields: &[(&str, String)]) {
        let at = crate::host::service::now_text();
        let line = if self.json {
            let mut m = serde_json::Map::new();
            m.insert("time".into(), at.into());
            m.insert("event".into(), event.into());
            for (k, v) in fields {
                m.insert((*k).into(), v.clone().into());
            }
            serde_json::Value::Object(m).to_string()
        } else {
            let mut l = format!("{at} {event}");
            for (k, v) in fields {
                let v = crate::text::one_line(v);
                if v.contains(' ') {
                    l.push_str(&format!(" {k}={v:?}"));
                } else {
                    l.push_str(&format!(" {k}={v}"));
                }
            }
            l
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

impl Ui for AgentLog {
    fn waiting_for_lock(&self, holder: &str) {
        self.log(
            "waiting for the node lock",
            &[("holder", holder.to_string())],
        );
    }
    fn show_plan(&self, plan: &Plan) {
        if self.terminal && !self.json {
            output::write_stdout(&crate::plan::render::render(plan, self.colors));
        }
        let s = plan.summary;
        self.log(
            "planned",
            &[
                ("add", s.add.to_string()),
                ("change", s.change.to_string()),
                ("destroy", s.destroy.to_string()),
                ("blocked", s.blocked.to_string()),
            ],
        );
    }
    fn confirm(&self, _: &Plan) -> Result<bool, AgentError> {
        Ok(true)
    }
    fn progress(&self) -> Arc<dyn Progress> {
        if self.terminal && self.colors && !self.json {
            Arc::new(Bars::new())
        } else if self.terminal && !self.json {
            Arc::new(Lines(std::sync::Mutex::new(std::io::stdout())))
        } else {
            Arc::new(Quiet)
        }
    }
    fn interrupted(&self) {
        self.log("interrupted", &[]);
    }
}

struct Quiet;
impl Progress for Quiet {
    fn started(
        &self,
        _: &crate::resources::ResourceAddr,
        _: crate::apply::Phase,
        _: crate::plan::Action,
    ) {
    }
    fn finished(&self, _: &crate::apply::StepResult) {}
}

fn keys(e: &EtcdArgs) -> Result<Keys, AgentError> {
    if e.etcd.is_empty() {
        return Err(AgentError::NeedsEtcd);
    }
    Keys::new(&e.prefix).map_err(|problem| AgentError::BadFlag {
        flag: "--prefix",
        value: e.prefix.clone(),
        problem,
    })
}

pub fn agent_run(s: &Settings, node: Node, args: &RunArgs) -> Result<ExitCode, AgentError> {
    let source = match &args.desired {
        Some(p) => Source::File(p.clone()),
        None => Source::Etcd {
            endpoints: args.etcd.etcd.clone(),
            keys: keys(&args.etcd)?,
        },
    };
    let resync = crate::agent::parse_duration(&args.resync).map_err(|_| AgentError::BadFlag {
        flag: "--resync",
        value: args.resync.clone(),
        problem: "is not a duration like 30s, 5m or 1h".into(),
    })?;
    if resync.is_zero() {
        return Err(AgentError::BadFlag {
            flag: "--resync",
            value: args.resync.clone(),
            problem: "must be longer than 0".into(),
        });
    }
    let opts = RunOptions {
        source,
        node_id: args.node_id.clone(),
        prune: args.prune,
        targets: args.target.clone(),
        resync,
        once: args.once,
        lock_timeout: agent::parse_duration(&args.lock_timeout)?,
        debounce: (
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(10),
        ),
        command_line: s.command_line.clone(),
        operator: s.operator.clone(),
        metrics_listen: args
            .metrics_listen
            .as_deref()
            .map(|a| {
                crate::host::metrics_server::parse_listen(a).map_err(|problem| {
                    AgentError::BadFlag {
                        flag: "--metrics-listen",
                        value: a.to_string(),
                        problem,
                    }
                })
            })
            .transpose()?,
        reload: {
            let config = s.config.clone();
            Box::new(move || config.load().map_err(AgentError::from))
        },
    };
    let ui = Arc::new(AgentLog {
        json: args.log_format == "json",
        terminal: s.terminal.stdout,
        colors: s.colors,
    });
    crate::agent::run::run(node, opts, ui)
}

/// A node id as a key segment, or a refusal naming the argument.
fn node_id(id: &str) -> Result<(), AgentError> {
    crate::fleet::check_node_id(id).map_err(|problem| AgentError::BadNodeId {
        given: id.to_string(),
        problem,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, AgentError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)
}

pub fn put(node: &Node, args: &FleetPutArgs) -> Result<ExitCode, AgentError> {
    let keys = keys(&args.etcd)?;
    node_id(&args.node)?;
    // Validated exactly as `--desired` is, before anything is written.
    let (desired, _) = node.document(Some(&args.desired))?;
    let text = crate::host::fs::input::read_text(&args.desired, crate::spec::Input::Desired)
        .map_err(|e| AgentError::BadFlag {
            flag: "--desired",
            value: args.desired.display().to_string(),
            problem: e.to_string(),
        })?;
    let key = keys.desired(&args.node);
    runtime()?.block_on(async {
        let mut etcd = Etcd::connect(&args.etcd.etcd).await?;
        let rev = match args.if_revision {
            Some(r) => match etcd.put_if(&key, text.as_bytes(), r).await? {
                Ok(rev) => rev,
                Err(now) => {
                    return Err(AgentError::RevisionMismatch {
                        key: key.clone(),
                        expected: r,
                        now,
                    });
                }
            },
            None => etcd.put(&key, text.as_bytes(), None).await?,
        };
        output::write_stdout(&format!(
            "Wrote {key} at revision {rev} ({} tenant(s)).\n",
            desired.tenants.len()
        ));
        Ok(ExitCode::SUCCESS)
    })
}

pub fn get(args: &FleetGetArgs) -> Result<ExitCode, AgentError> {
    let keys = keys(&args.etcd)?;
    node_id(&args.node)?;
    runtime()?.block_on(async {
        let mut etcd = Etcd::connect(&args.etcd.etcd).await?;
        let (desired, _) = etcd.get(&keys.desired(&args.node)).await?;
        let (status, _) = etcd.get(&keys.status(&args.node)).await?;
        let doc = serde_json::json!({
            "node": args.node,
            "desired": desired.as_ref().map(|v| serde_json::json!({
                "revision": v.mod_revision,
                "document": serde_json::from_slice::<serde_json::Value>(&v.bytes)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&v.bytes).into_owned().into()),
            })),
            "status": status.as_ref().and_then(|v| serde_json::from_slice::<serde_json::Value>(&v.bytes).ok()),
        });
        output::write_stdout(&format!("{}\n", serde_json::to_string_pretty(&doc).expect("json")));
        Ok(ExitCode::SUCCESS)
    })
}

/// One node as `fleet status` shows it.
#[derive(serde::Serialize)]
struct NodeRow {
    node: String,
    /// Its agent's lease is alive (its status key exists: it is leased).
    alive: bool,
    desired_revision: Option<i64>,
    applied_revision: Option<i64>,
    status: Option<NodeStatus>,
}

pub fn status(args: &FleetStatusArgs) -> Result<ExitCode, AgentError> {
    let keys = keys(&args.etcd)?;
    runtime()?.block_on(async {
        let mut etcd = Etcd::connect(&args.etcd.etcd).await?;
        let mut rows: std::collections::BTreeMap<String, NodeRow> = Default::default();
        for (key, v) in etcd.get_prefix(&keys.nodes()).await? {
            let Some((node, what)) = keys.split(&key) else {
                continue;
            };
            let row = rows.entry(node.to_string()).or_insert_with(|| NodeRow {
                node: node.to_string(),
                alive: false,
                desired_revision: None,
                applied_revision: None,
                status: None,
            });
            match what {
                "desired" => row.desired_revision = Some(v.mod_revision),
                "status" => {
                    row.alive = v.lease != 0;
                    row.status = serde_json::from_slice(&v.bytes).ok();
                    row.applied_revision = row
                        .status
                        .as_ref()
                        .and_then(|s| s.applied.as_ref())
                        .map(|a| a.revision);
                }
                _ => {}
            }
        }
        let rows: Vec<NodeRow> = rows.into_values().collect();
        if args.json {
            output::write_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&rows).expect("json")
            ));
            return Ok(ExitCode::SUCCESS);
        }
        let mut table = vec![[
            "NODE".to_string(),
            "AGENT".into(),
            "DESIRED".into(),
            "APPLIED".into(),
            "RESULT".into(),
            "DETAIL".into(),
        ]];
        for r in &rows {
            let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
            let (result, detail) = match &r.status {
                Some(s) => (
                    format!("{:?}", s.result).to_lowercase(),
                    s.reason.clone().unwrap_or_else(|| {
                        s.failures
                            .iter()
                            .map(|f| f.address.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }),
                ),
                None => ("-".into(), String::new()),
            };
            table.push([
                r.node.clone(),
                if r.alive { "alive" } else { "dead" }.into(),
                show(r.desired_revision),
                show(r.applied_revision),
                result,
                crate::text::one_line(&detail).into_owned(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| {
                table
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in table {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        output::write_stdout(&out);
        Ok(ExitCode::SUCCESS)
    })
}
