//! The node agent's use cases, callable as a library with no
//! process-global state, on a `Node` (its config, its `Host`, its state
//! layout): load and validate the inputs, observe (or read a captured
//! observation), plan (`mod.rs`); reconcile under the node lock
//! (`reconcile.rs`); the audit logs and VM revisions (`history.rs`);
//! `tenant list`/`status` rows (`status.rs`); `node info` (`node.rs`);
//! `net verify`'s checklist (`verify.rs`). The CLI only parses flags and
//! prints what these return.

pub mod dev;
pub mod history;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod reconcile;
pub mod run;
pub mod secrets;
pub mod status;
pub mod verify;

use crate::host::Host;
use crate::host::fs::input;
use crate::observed::{OBSERVED_VERSION, Observed};
use crate::plan::{self, Plan, PlanError, PlanOptions};
use crate::spec::overrides::{Merged, OVERRIDES_CAP, OverrideNote, Overrides};
use crate::spec::{self, NodeConfig, SpecError};
use crate::state::StateLayout;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot read observed state {}: {source}", path.display())]
    ObservedRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{at}: not a valid observed state: {message}", path.display())]
    ObservedParse {
        path: PathBuf,
        /// `:line:column`.
        at: String,
        message: String,
    },
    #[error("{}: observed state has format_version {found}; this mvm reads {OBSERVED_VERSION}", path.display())]
    ObservedVersion { path: PathBuf, found: u32 },
    #[error("{}: this observation was made under another node config ({observed}) than this plan's ({here})", path.display())]
    ObservedConfig {
        path: PathBuf,
        observed: String,
        here: String,
    },
    #[error(transparent)]
    SavedPlan(#[from] SavedPlanError),
    #[error(transparent)]
    Lock(#[from] crate::host::LockError),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error("{0}")]
    BadTarget(String),
    #[error("there is no `mvm agent apply`")]
    NoApply,
    #[error("no tenant {id} on this node: its state dir {} does not exist (nothing was reconciled here)", path.display())]
    NoStateDir {
        id: crate::spec::types::TenantId,
        path: PathBuf,
    },
    #[error("--state-dir {}: {why}", path.display())]
    BadStateDir { path: PathBuf, why: String },
    #[error("--lock-timeout {0}")]
    BadDuration(String),
    #[error("--metrics-listen {0}: {1}")]
    MetricsListen(String, String),
    /// A `tenant logs` / `metrics` request that cannot be answered as asked.
    #[error("{0}")]
    Logs(String),
    #[error("tenant id {given:?} {problem}")]
    BadTenantId { given: String, problem: String },
    #[error("no tenant {id} on this node, and no archived audit log of one under {}", archive.display())]
    NoSuchTenant {
        id: crate::spec::types::TenantId,
        archive: PathBuf,
    },
    #[error("{}: not what mvm wrote: {problem}", path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("tenant {id} is not in the desired state the last reconcile applied")]
    NotDesired { id: crate::spec::types::TenantId },
    #[error(
        "tenant {id} already exists (in the control plane's desired state, or created by hand)"
    )]
    TenantExists { id: crate::spec::types::TenantId },
    #[error(
        "tenant {id} is in the control plane's desired state: destroying it here would bring it back at the next reconcile"
    )]
    DestroyUpstream { id: crate::spec::types::TenantId },
    #[error("tenant {id} has {earlier} earlier revision(s) recorded; --steps {steps} reaches none")]
    NoRevision {
        id: crate::spec::types::TenantId,
        steps: usize,
        earlier: usize,
    },
    #[error("tenant {id} has no {what} set by hand")]
    NoOverride {
        id: crate::spec::types::TenantId,
        what: &'static str,
    },
    #[error("{flag} {value:?} {problem}")]
    BadFlag {
        flag: &'static str,
        value: String,
        problem: String,
    },
    #[error("cannot write a starter flake to {}: {source}", dir.display())]
    DevInit {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("a developer VM already runs (pid {pid}, from {flake_ref})")]
    DevRunning { pid: u32, flake_ref: String },
    #[error("{}: not a developer VM record this mvm wrote: {problem}", path.display())]
    CorruptDevRecord { path: PathBuf, problem: String },
    #[error("{}: not an overrides file this mvm wrote: {problem}", path.display())]
    CorruptOverrides { path: PathBuf, problem: String },
    #[error("no tenant {id} is desired or on this node")]
    UnknownTenant { id: crate::spec::types::TenantId },
    #[error("cannot write the plan to {}: {source}", path.display())]
    WriteOutput {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no reconcile has converged this node yet ({} does not exist)", path.display())]
    NoAppliedDesired { path: PathBuf },
    #[error("cannot read the answer: {0}")]
    Confirm(std::io::Error),
    #[error("the metadata service stopped: {0}")]
    Metadata(std::io::Error),
    #[error("cannot start the apply runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Etcd(#[from] crate::host::etcd::EtcdError),
    #[error("node id {given:?} {problem}")]
    BadNodeId { given: String, problem: String },
    #[error("no --etcd given")]
    NeedsEtcd,
    #[error("etcd at {0} cannot be reached")]
    Unreachable(String),
    #[error("{key} is at revision {now} (0: absent), not {expected}; nothing was written")]
    RevisionMismatch {
        key: String,
        expected: i64,
        now: i64,
    },
    #[error("another agent runs for node {node_id}: {holder}")]
    AgentRunning { node_id: String, holder: String },
    #[error("{0}")]
    SecretsInput(String),
    #[error("tenant {id} has no secrets tmpfs mounted at {}", path.display())]
    NoSecretsTmpfs {
        id: crate::spec::types::TenantId,
        path: PathBuf,
    },
}

impl AgentError {
    /// What the operator can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            AgentError::Spec(SpecError::Invalid { .. }) => Some("fix the values above and run the command again".into()),
            AgentError::Spec(SpecError::Syntax { .. }) => Some("fix the syntax at that line and column".into()),
            AgentError::Spec(SpecError::Read { .. }) => Some("check the path and its permissions".into()),
            AgentError::Plan(e) => Some(e.hint()),
            AgentError::ObservedRead { .. } => Some("check the path; capture one with `mvm agent observe --json > observed.json`".into()),
            AgentError::ObservedParse { .. } | AgentError::ObservedVersion { .. } => {
                Some("capture a fresh one on the node with `mvm agent observe --json` from this mvm version".into())
            }
            AgentError::ObservedConfig { .. } => Some(
                "plan with the node's own config: `mvm --config <the node's node.toml> agent plan --observed …` (`mvm node info` on the node names it)".into(),
            ),
            AgentError::SavedPlan(SavedPlanError::Stale { .. }) => {
                Some("make a new plan with `mvm agent plan --out`, review it, and apply that one".into())
            }
            AgentError::SavedPlan(SavedPlanError::Read { .. }) => Some("check the path of the saved plan".into()),
            AgentError::SavedPlan(_) => Some("make a new plan with this mvm: `mvm agent plan --out plan.json`".into()),
            AgentError::Lock(crate::host::LockError::Held { .. }) => {
                Some("wait for it to finish, or pass --lock-timeout 5m to wait for it".into())
            }
            AgentError::Lock(_) => Some("check that mvm runs as root and that the state dir is mvm's".into()),
            AgentError::Host(_) => Some("check that mvm runs as root and that the path is not held by another process".into()),
            AgentError::BadTarget(_) => Some(format!("targets take the forms {}", crate::plan::target::FORMS)),
            AgentError::NoStateDir { .. } => Some("check --config names this node's node.toml (its state_dir), or reconcile first: `mvm agent reconcile --desired desired.json`".into()),
            AgentError::NoApply => Some("Terraform's apply is `mvm agent reconcile --desired desired.json` (plan, confirm, apply), or `mvm agent reconcile --plan plan.json` for a plan saved with `mvm agent plan --out`".into()),
            AgentError::BadStateDir { .. } => Some("name the node's state dir (node.toml's state_dir), which a reconcile creates".into()),
            AgentError::BadDuration(_) => Some("give a duration like 0, 30s, 5m or 1h".into()),
            AgentError::MetricsListen(..) => Some("pick a free port; :PORT listens on 127.0.0.1".into()),
            AgentError::Logs(_) => Some("`mvm tenant logs --help` lists the logs and their options".into()),
            AgentError::BadTenantId { .. } => Some("tenant ids are lowercase letters, digits and single hyphens, at most 11 bytes".into()),
            AgentError::NoSuchTenant { .. } => Some("`mvm agent observe` lists the tenants on this node".into()),
            AgentError::UnknownTenant { .. } => Some("`mvm tenant list` lists the tenants".into()),
            AgentError::NotDesired { .. } => Some("stop, start, pin, unpin and release act on tenants in the desired state the control plane sent; `mvm tenant list` shows which are (a kept one goes with `reconcile --prune`)".into()),
            AgentError::TenantExists { id } => Some(format!("`mvm tenant status {id}` shows it; pick another id, or `mvm tenant pin {id}` to change its revision")),
            AgentError::DestroyUpstream { id } => Some(format!("stop it (`mvm tenant stop {id}`), or remove it from the control plane's desired state")),
            AgentError::NoRevision { id, .. } => Some(format!("`mvm tenant revisions {id}` lists them (newest first); --steps 1 is the one before the running one")),
            AgentError::NoOverride { id, .. } => Some(format!("`mvm tenant status {id}` shows what is set by hand")),
            AgentError::DevInit { .. } => Some("give a new or empty directory, a kernel image (--kernel) and a static busybox (--busybox, Debian: apt install busybox-static)".into()),
            AgentError::DevRunning { .. } => Some("`mvm dev down` stops it; one developer VM runs at a time".into()),
            AgentError::CorruptDevRecord { .. } => Some("check for a Firecracker still running (`pgrep -a firecracker`), stop it by hand, remove <state>/dev/, then `mvm dev up` again".into()),
            AgentError::BadFlag { flag, .. } => Some(format!("{flag} takes the values desired.json does (README: Desired state)")),
            AgentError::CorruptOverrides { .. } => Some("mvm never resets a state file it cannot read: restore it from a backup, or move it aside to drop every override".into()),
            AgentError::Corrupt { .. } => Some("it was edited or damaged: mvm never resets a state file it cannot read; restore it from a backup or move it aside".into()),
            AgentError::WriteOutput { path, .. } => Some(format!(
                "check that the directory {} exists and that you may write to it",
                path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).display()
            )),
            AgentError::Confirm(_) => Some("answer on a terminal, or pass --auto-approve".into()),
            AgentError::NoAppliedDesired { .. } => Some("pass --desired desired.json, or run `mvm agent reconcile --desired …` first".into()),
            AgentError::Metadata(_) => Some("check that bridge.gateway is an address of this node and metadata.port is free".into()),
            AgentError::Runtime(_) => Some("the system is out of threads or memory; try a lower --parallelism".into()),
            AgentError::Etcd(_) => Some("check the --etcd URLs and that etcd is up (`curl <URL>/health`)".into()),
            AgentError::NeedsEtcd => Some("give the control plane's endpoints: --etcd http://127.0.0.1:2379[,…] (and --prefix if it is not /mvm)".into()),
            AgentError::BadNodeId { .. } => Some("a node id is what <state>/node-id holds (`mvm node info`) or what the agent's --node-id gave; `mvm fleet status` lists the fleet's".into()),
            AgentError::Unreachable(_) => Some("check the --etcd URLs and that etcd is up; without --once the agent runs offline from its last good document until it is".into()),
            AgentError::RevisionMismatch { .. } => Some("someone wrote it since: read it with `mvm fleet get NODE`, then put again with the revision it shows".into()),
            AgentError::AgentRunning { .. } => Some("stop that agent first, or give this one another --node-id; its claim goes with its lease (about 30 s after it died)".into()),
            AgentError::SecretsInput(_) => Some(format!(
                "give one regular file, a flat directory of regular files, or `-` with --name; names are A-Z a-z 0-9 . _ - (1 to {} bytes, no leading dot), at most {} files and {} bytes in all. Nothing was staged; the previous generation is untouched",
                crate::security::secrets::MAX_NAME,
                crate::security::secrets::MAX_FILES,
                crate::security::secrets::MAX_TOTAL_BYTES
            )),
            AgentError::NoSecretsTmpfs { id, .. } => Some(format!(
                "reconcile the node first (`mvm agent reconcile`) so tenant {id}'s resources exist; after a reboot the tmpfs is empty until then"
            )),
        }
    }
}

pub fn parse_tenant_id(given: &str) -> Result<crate::spec::types::TenantId, AgentError> {
    crate::spec::types::TenantId::parse(given).map_err(|problem| AgentError::BadTenantId {
        given: given.to_string(),
        problem: problem.to_string(),
    })
}

/// A flag's value, checked as desired.json's field is.
pub fn check_flag(
    flag: &'static str,
    value: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<String, AgentError> {
    check(value).map_err(|problem| AgentError::BadFlag {
        flag,
        value: value.to_string(),
        problem,
    })?;
    Ok(value.to_string())
}

/// Reads a `--target` list.
pub fn targets(raw: &[String]) -> Result<Vec<crate::plan::target::Target>, AgentError> {
    raw.iter()
        .map(|t| t.parse().map_err(AgentError::BadTarget))
        .collect()
}

/// One node as every use case sees it: its config, the host it runs on
/// and its state layout. Built once per command (`cli::run` makes the
/// one real `Host`); a test builds it on the recording host.
pub struct Node {
    pub config: NodeConfig,
    pub host: Host,
    pub layout: StateLayout,
}

impl Node {
    /// Takes the node lock (making the state dir that holds it first),
    /// waiting up to `timeout` and telling `waiting` who holds it.
    pub fn lock(
        &self,
        command_line: &str,
        timeout: std::time::Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<crate::host::NodeLock, AgentError> {
        self.host.ensure_state_dir(self.layout.root())?;
        Ok(self
            .host
            .locks
            .node_lock(&self.layout.lock(), command_line, timeout, waiting)?)
    }

    pub fn new(config: NodeConfig, host: Host) -> Self {
        let layout = StateLayout::new(&config.state_dir);
        Self {
            config,
            host,
            layout,
        }
    }

    /// What the host has now, or the observation captured at `given`
    /// (`--observed`), refused when it was made under another node config.
    pub fn observed(&self, given: Option<&Path>) -> Result<Observed, AgentError> {
        match given {
            Some(p) => load_observed_for(&self.config, p),
            None => Ok(self.host.probe.observe(&self.config)),
        }
    }

    /// The node's desired state: `document(given)` with the operator's
    /// overrides merged in, the path it came from, and what each override
    /// did.
    pub fn desired(
        &self,
        given: Option<&Path>,
    ) -> Result<(crate::spec::DesiredState, PathBuf, Vec<OverrideNote>), AgentError> {
        let (doc, path) = self.document(given)?;
        let merged = self.merged(&doc)?;
        Ok((merged.desired, path, merged.notes))
    }

    /// `doc` with the operator's overrides merged in, what each did, and
    /// the tenants both sources claim.
    pub fn merged(&self, doc: &crate::spec::DesiredState) -> Result<Merged, AgentError> {
        self.merge(doc, &self.overrides()?)
    }

    /// `doc` with `overrides` merged in.
    pub fn merge(
        &self,
        doc: &crate::spec::DesiredState,
        overrides: &Overrides,
    ) -> Result<Merged, AgentError> {
        Ok(crate::spec::overrides::merge(
            doc,
            overrides,
            &self.config,
            &self.layout.overrides(),
        )?)
    }

    /// A file in the state dir, `None` when it is missing — or when the
    /// state dir is (a node never reconciled).
    fn read_state_file(&self, path: &Path, cap: u64) -> crate::host::HostResult<Option<Vec<u8>>> {
        match self.host.files.read(path, cap) {
            Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            r => r,
        }
    }

    /// The operator's overrides (`<state>/overrides.json`); none before
    /// the first. A file that cannot be read, parsed or checked is an
    /// error naming it: the plan refuses rather than guessing.
    pub fn overrides(&self) -> Result<Overrides, AgentError> {
        let path = self.layout.overrides();
        let bytes = match self.read_state_file(&path, OVERRIDES_CAP) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Overrides::default()),
            // A user who may not read the state dir (a plan not run as
            // root) sees none of the node's state: the probe records that
            // and the plan warns; the overrides are as unknown as the rest.
            Err(e) if e.source.kind() == std::io::ErrorKind::PermissionDenied => {
                return Ok(Overrides::default());
            }
            Err(e) => return Err(e.into()),
        };
        let corrupt = |problem: String| AgentError::CorruptOverrides {
            path: path.clone(),
            problem,
        };
        let o: Overrides =
            crate::spec::json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        o.check().map_err(corrupt)?;
        Ok(o)
    }

    /// Writes the overrides atomically (the caller holds the node lock).
    pub fn write_overrides(&self, o: &Overrides) -> Result<(), AgentError> {
        let text = crate::spec::json::file_text(o);
        self.host
            .files
            .write_file(&self.layout.overrides(), &text, 0o600)?;
        Ok(())
    }

    /// Removes the temporary files a killed atomic writer of `path` left
    /// beside it (`.<name>.tmp.<pid>`; the caller holds the node lock, so
    /// no writer of it runs). The next write of `path` does the same; this
    /// is for a command that may have nothing to write this time.
    pub fn sweep_temps(&self, path: &Path) -> Result<(), AgentError> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        let prefix = crate::host::fs::atomic::temp_prefix(name);
        for stale in self.host.files.list(dir)? {
            if stale.starts_with(&prefix) {
                self.host.files.remove_tree(&dir.join(stale))?;
            }
        }
        Ok(())
    }

    /// The control plane's desired state at `given` (`--desired`), or the
    /// one the last successful reconcile converged to; with its path.
    pub fn document(
        &self,
        given: Option<&Path>,
    ) -> Result<(crate::spec::DesiredState, PathBuf), AgentError> {
        if let Some(p) = given {
            return Ok((load_desired(&self.config, p)?, p.to_path_buf()));
        }
        let path = self.layout.applied_desired();
        let Some(bytes) = self.read_state_file(&path, input::Input::Desired.cap())? else {
            return Err(AgentError::NoAppliedDesired { path });
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok((spec::parse_desired(&path, &text, &self.config)?, path))
    }

    /// The node's identity, without creating it (`None` before the first
    /// reconcile, or before the state dir exists).
    pub fn node_id(&self) -> Result<Option<String>, AgentError> {
        let path = self.layout.node_id();
        self.read_state_file(&path, 4096)?
            .map(|b| {
                crate::state::parse_node_id(&b).map_err(|problem| AgentError::Corrupt {
                    path: path.clone(),
                    problem,
                })
            })
            .transpose()
    }

    /// The node's stable identity (`<state>/node-id`), created once from
    /// the kernel's randomness.
    pub fn ensure_node_id(&self) -> Result<String, AgentError> {
        if let Some(id) = self.node_id()? {
            return Ok(id);
        }
        let id = crate::digest::hex(&self.host.identity.random_id()?);
        self.host
            .files
            .write_file(&self.layout.node_id(), format!("{id}\n").as_bytes(), 0o644)?;
        Ok(id)
    }
}

/// Writes a plan for `mvm agent reconcile --plan`.
pub fn save_plan(path: &Path, plan: &Plan) -> Result<(), AgentError> {
    let text = crate::spec::json::file_text(plan);
    input::write_output(path, &text).map_err(|source| AgentError::WriteOutput {
        path: path.to_path_buf(),
        source,
    })
}

/// `load_observed`, refused when it was made under another node config.
pub fn load_observed_for(node: &NodeConfig, path: &Path) -> Result<Observed, AgentError> {
    let o = load_observed(path)?;
    same_config(node, &o, path)?;
    Ok(o)
}

pub fn load_observed(path: &Path) -> Result<Observed, AgentError> {
    let text = input::read_text(path, input::Input::Observed).map_err(|source| {
        AgentError::ObservedRead {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let obs: Observed =
        crate::spec::json::from_str(&text).map_err(|e| AgentError::ObservedParse {
            path: path.to_path_buf(),
            at: format!(":{}:{}", e.line(), e.column()),
            message: without_location(&e),
        })?;
    if obs.format_version != OBSERVED_VERSION {
        return Err(AgentError::ObservedVersion {
            path: path.to_path_buf(),
            found: obs.format_version,
        });
    }
    Ok(obs)
}

/// An observation records the node config it was made under; planning it
/// with another (the defaults, when `--config` was forgotten) would plan
/// another node: refused, naming both.
pub fn same_config(node: &NodeConfig, o: &Observed, path: &Path) -> Result<(), AgentError> {
    let here = crate::observed::ObservedConfig::of(node);
    match &o.config {
        Some(c) if *c != here => Err(AgentError::ObservedConfig {
            path: path.to_path_buf(),
            observed: format!(
                "config sha256 {} (state dir {})",
                &c.sha256[..12],
                c.state_dir.display()
            ),
            here: format!(
                "config sha256 {} (state dir {})",
                &here.sha256[..12],
                here.state_dir.display()
            ),
        }),
        _ => Ok(()),
    }
}

/// serde_json's message without its " at line X column Y" suffix.
fn without_location(e: &serde_json::Error) -> String {
    let s = e.to_string();
    s.rsplit_once(" at line ")
        .map(|(m, _)| m.to_string())
        .unwrap_or(s)
}

pub struct PlanRequest<'a> {
    pub desired: &'a Path,
    pub observed: Option<&'a Path>,
    pub prune: bool,
    pub targets: &'a [crate::plan::target::Target],
}

/// Reads desired.json, observes the host (or reads `--observed`), plans.
pub fn plan(node: &Node, req: &PlanRequest) -> Result<(Plan, Observed), AgentError> {
    // Validate first: a bad file is reported without probing the host.
    let merged = node.merged(&load_desired(&node.config, req.desired)?)?;
    let observed = node.observed(req.observed)?;
    let opts = PlanOptions {
        prune: req.prune,
        targets: req.targets.to_vec(),
        threads: crate::host::service::cpus(),
        ..Default::default()
    };
    let mut plan = plan::plan(&merged.desired, &node.config, &observed, opts)?;
    plan.overrides = merged.notes;
    plan.block_tenants(&merged.conflicts);
    Ok((plan, observed))
}

/// A big value a reconcile is done with (the plan, the observation),
/// freed on a thread of its own once this guard goes: freeing 500
/// tenants' plan and observation piece by piece was a twentieth of a
/// reconcile's time, all of it after the work was done. `agent run` gets
/// the memory back moments later; a one-shot command may end first, and
/// the kernel takes it back whole. It holds only memory, never a lock, a
/// file or a child.
pub(crate) struct Aside<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Aside<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(Some(value))
    }
}

impl<T: Send + 'static> std::ops::Deref for Aside<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> std::ops::DerefMut for Aside<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_mut().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for Aside<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            // Should no thread start, the value is freed here instead.
            let _ = std::thread::Builder::new()
                .name("mvm-free".into())
                .spawn(move || drop(value));
        }
    }
}

/// Reads and validates desired.json.
pub fn load_desired(
    node: &NodeConfig,
    path: &Path,
) -> Result<crate::spec::DesiredState, AgentError> {
    let text = input::read_text(path, input::Input::Desired).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(spec::parse_desired(path, &text, node)?)
}

/// Why a saved plan cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot read saved plan {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a plan mvm can apply: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: made by mvm {made_by}; this is mvm {this}: saved plans cannot move between versions", path.display())]
    Version {
        path: PathBuf,
        made_by: String,
        this: String,
    },
    #[error("{}: stale plan: the node changed since it was made ({changed}; observed {then}, now {now})", path.display())]
    Stale {
        path: PathBuf,
        then: String,
        now: String,
        /// What changed, by resource.
        changed: String,
    },
    #[error("{}: made with another node config than this node's", path.display())]
    ConfigChanged { path: PathBuf },
}

/// Loads a saved plan and checks that it was made by this mvm against the
/// host as it is now.
pub fn load_saved_plan(
    path: &Path,
    node: &NodeConfig,
    observed: &Observed,
) -> Result<Plan, SavedPlanError> {
    let text =
        input::read_text(path, input::Input::Plan).map_err(|source| SavedPlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let value: serde_json::Value =
        crate::spec::json::parse(&text).map_err(|e| SavedPlanError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let made_by = value
        .get("mvm_version")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    if made_by != env!("CARGO_PKG_VERSION") {
        return Err(SavedPlanError::Version {
            path: path.to_path_buf(),
            made_by,
            this: env!("CARGO_PKG_VERSION").into(),
        });
    }
    let format = value
        .get("format_version")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("none");
    if !crate::plan::check::readable_version(format) {
        return Err(SavedPlanError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "format_version {format:?}; this mvm reads {}",
                crate::plan::FORMAT_VERSION
            ),
        });
    }
    let plan: Plan = serde_json::from_value(value).map_err(|e| SavedPlanError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Apply takes its paths and settings from the plan: they must be this
    // node's, so a plan made elsewhere (or edited) cannot point it anywhere.
    if plan.apply_context.node != *node {
        return Err(SavedPlanError::ConfigChanged {
            path: path.to_path_buf(),
        });
    }
    // Every change must decode into its kind's typed attributes, so a
    // hand-edited attribute is refused here, before the lock is used to
    // apply anything.
    crate::plan::simulate::apply_to(&plan, observed).map_err(|e| SavedPlanError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // And every attribute must be one the specs could have produced here.
    crate::plan::check::saved(&plan, node, observed).map_err(|message| {
        SavedPlanError::Invalid {
            path: path.to_path_buf(),
            message,
        }
    })?;
    let now = observed.fingerprint();
    if plan.observed_fingerprint != now {
        let differ = crate::plan::check::changed_since(&plan, node, observed);
        let changed = match differ.len() {
            0 => "nothing the plan covers differs, but the rest of the node does".to_string(),
            n if n <= 10 => format!("changed since: {}", differ.join(", ")),
            n => format!(
                "changed since: {} and {} more",
                differ[..10].join(", "),
                n - 10
            ),
        };
        return Err(SavedPlanError::Stale {
            path: path.to_path_buf(),
            then: plan.observed_fingerprint,
            now,
            changed,
        });
    }
    Ok(plan)
}

/// Parses `30s`, `2m`, `1h`, `0`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, AgentError> {
    parse_duration_text(s).map_err(AgentError::BadDuration)
}

fn parse_duration_text(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 2m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        _ => {
            return Err(format!(
                "{s:?} has unknown unit {unit:?}; use ms, s, m, h or d"
            ));
        }
    };
    Ok(std::time::Duration::from_secs(secs))
}
