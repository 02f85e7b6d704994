//! The command line as clap parses it: every command, flag and its help.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `--target`'s help, the same for `plan` and `reconcile`.
const TARGET_HELP: &str = "Only these resources and what they depend on (repeatable): node.<kind>, node.*, tenant.<id>, tenant.<id>.<kind>, tenant.*.<kind>. A target naming a tenant neither desired nor on the node is an error; one that matches nothing else is warned about.";

#[derive(Debug, Parser)]
#[command(
    name = "mvm",
    version,
    about = "Keep a Firecracker microVM host in the state a control plane asks for",
    long_about = "mvm runs many tenants' Firecracker microVMs on one Linux host. It observes the host, \
plans the difference to desired.json Terraform-style, and applies it."
)]
pub struct Cli {
    /// Node config file (default: $MVM_CONFIG, else /etc/mvm/node.toml if it exists, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Never color output (also: NO_COLOR=1). Colors are used only on a terminal.
    #[arg(long, global = true)]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Node agent: observe the host, plan and apply changes.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Operate one tenant by hand.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// The node's tenant network.
    #[command(subcommand)]
    Net(NetCommand),
    /// The per-tenant metadata service.
    #[command(subcommand)]
    Metadata(MetadataCommand),
    /// The node itself.
    #[command(subcommand)]
    Node(NodeCommand),
    /// The control plane's side, on etcd: write a node's desired document, read it back,
    /// and every node's status.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Dev mode: one developer VM from a flake, for iterating on a guest image. NOT
    /// HARDENED (no jailer, no cgroup, runs as root; no network) and never a tenant: its own
    /// <state>/dev/, no node lock, no tenant record or audit log.
    #[command(subcommand)]
    Dev(DevCommand),
    /// The node configuration mvm uses.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `mvm completions bash > /etc/bash_completion.d/mvm`
    /// (zsh: into a directory on $fpath as `_mvm`; fish: ~/.config/fish/completions/mvm.fish).
    Completions(CompletionsArgs),
    /// Print mvm's manual page (roff) on stdout (`mvm man | man -l -`), or with --out write
    /// one page per command into a directory (`mvm.1`, `mvm-agent-run.1`, …).
    Man(ManArgs),
    /// Not for people: the log pump a VM launch starts (`state/logs.rs`), with its fds
    /// already in place.
    #[command(hide = true, name = "__log-pump")]
    LogPump(LogPumpArgs),
}

#[derive(Debug, Args)]
pub struct LogPumpArgs {
    #[arg(long)]
    pub max_bytes: u64,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration: the built-in defaults merged with node.toml
    /// (--config, $MVM_CONFIG or /etc/mvm/node.toml), each value with where it came from.
    Show(ConfigShowArgs),
}

#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    /// Print JSON: `{"source", "values": [{"key", "value", "from"}]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every command's page into this directory (it must exist).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// The node's identity and inventory: node id, hostname (and Lima instance), mvm and
    /// kernel versions, CPUs and memory, node.toml's source and state dir, the cgroup2
    /// controllers (and which tenant limits a hybrid host cannot enforce), Firecracker,
    /// jailer and Nix with the versions they report, the bridge and nft tables, the
    /// metadata service, and how many tenants and VMs the node has. Read-only.
    Info(NodeInfoArgs),
    /// Print the node's own audit log — every change to the bridge, the firewall (node.nft)
    /// and the metadata service, with who made it — or check its hash chain. Tenants' changes
    /// are in `mvm tenant audit ID`.
    Audit(NodeAuditArgs),
    /// Print the node's metrics in the Prometheus text format: each tenant's VM (up, vCPUs,
    /// memory, uptime, starts and restarts, Firecracker's counters), the node's tenants and
    /// running VMs, the last reconcile (result, time, duration, changes, failed and blocked
    /// resources) and the metadata service's requests by status. Read-only; `mvm agent run
    /// --metrics-listen` serves the same at /metrics.
    Metrics,
}

#[derive(Debug, Args)]
pub struct NodeAuditArgs {
    /// Check that no record was edited, removed, reordered or cut off; exit 1 if one was.
    #[arg(long)]
    pub verify: bool,
    /// Print the records as JSON lines, exactly as stored.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NodeInfoArgs {
    /// Print JSON (fields are only ever added).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MetadataCommand {
    /// Serve tenant metadata at <bridge.gateway>:<metadata.port> (guests reach it as
    /// http://<metadata.address>/ through the nft redirect). A tenant is identified by the
    /// packet mark of its tap (its uid) and its source address, never by the request; only
    /// tenants with `metadata: true` in the applied desired state are answered. It serves
    /// EC2's instance-metadata layout (instance-id, hostname, local-ipv4, mac,
    /// network/interfaces/macs/…, placement/availability-zone, public-keys/, the
    /// instance-identity document) under latest/ and every EC2 API version, plus mvm's
    /// tenant-id, node-id and revision. Tokens: PUT /latest/api/token with
    /// X-metadata-token-ttl-seconds (1..21600, or EC2's X-aws-ec2-metadata-token-ttl-seconds);
    /// every GET needs X-metadata-token (or X-aws-ec2-metadata-token) unless
    /// metadata.tokens = "optional". Once listening it runs as nobody with only CAP_DAC_READ_SEARCH (to
    /// read the state dir). Each peer is rate-limited before its request is read, may hold
    /// at most 16 connections (1024 in all, fewer under a low fd limit), and is logged at
    /// most 20 lines per 10 s; refusals and token issues are logged to stderr, never a
    /// token, and the log never grows past --log-max-bytes.
    /// Runs until stopped; `mvm agent reconcile` starts and stops it (node.metadata) while
    /// some tenant enables metadata, logging to <state_dir>/metadata.log.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here instead of <bridge.gateway>:<metadata.port>.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Read tenants from this state dir instead of node.toml's.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Requests per second each tenant may make, instead of node.toml's
    /// metadata.rate_per_sec.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: Option<u32>,
    /// Requests each tenant may make at once, instead of node.toml's
    /// metadata.burst.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub burst: Option<u32>,
    /// `required` (every read needs a session token) or `optional` (reads
    /// without one are answered too), instead of node.toml's
    /// metadata.tokens.
    #[arg(long, value_name = "required|optional")]
    pub tokens: Option<crate::security::metadata::Tokens>,
    /// The most bytes the log (stderr) may hold: past it the file is
    /// emptied and continues with a line saying so.
    #[arg(long, value_name = "BYTES", default_value_t = crate::host::metadata_server::LOG_MAX_BYTES,
          value_parser = clap::value_parser!(u64).range(4096..))]
    pub log_max_bytes: u64,
}

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Check, item by item, that the node's network is what the desired state renders:
    /// mvm's nftables rules, sets and elements, the bridge and its gateway address, every
    /// tenant's tap (attached, up, isolated, not learning, owned by the tenant, with its
    /// static FDB entry), nothing else on the bridge, the sysctls, and the metadata service
    /// while a tenant enables it. Exit 0 when all pass, 1 otherwise.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check against this desired state (default: the one the last successful
    /// reconcile converged to, kept as <state_dir>/desired.json).
    #[arg(long, value_name = "FILE")]
    pub desired: Option<PathBuf>,
    /// Check a captured observation (`mvm agent observe --json`) instead of this host.
    #[arg(long, value_name = "FILE")]
    pub observed: Option<PathBuf>,
    /// Print the checks as JSON (stable: {ok, passed, failed, checks: [{check, ok, detail}]}).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Print the tenant's audit log, or check its hash chain with --verify.
    Audit(AuditArgs),
    /// What the tenant's VM said: its console and Firecracker's and the jailer's output
    /// (vm.log), Firecracker's own log (firecracker.log), its last build's log (build.log)
    /// and the metadata service's lines about it — all of them, or those named. Each file
    /// lives in <state>/tenants/<id>/logs/ and outlives the VM; --previous reads the run
    /// before the current one. On a terminal, control characters are shown escaped.
    /// Read-only.
    Logs(TenantLogsArgs),
    /// The tenant VM's counters from Firecracker's metrics, summed over its current run
    /// (a running VM is asked to flush them first): vCPU exits, network and block bytes and
    /// operations, API requests, seccomp faults; and its uptime, vCPUs, memory and starts.
    /// Read-only.
    Metrics(TenantMetricsArgs),
    /// Every tenant desired or on the node: its VM (running with its pid, stopped, absent),
    /// address, uid, the revision it runs, what the applied desired state asks, and how many
    /// changes a reconcile would make to it now. Read-only.
    List(TenantListArgs),
    /// One tenant in detail: VM, desired spec, identity, revision and store path, each of
    /// its resources present or missing, and the changes a reconcile would make (drift, or
    /// one that did not finish). Read-only.
    Status(TenantStatusArgs),
    /// The tenant's VM starts, newest first: when, the flake ref and lock hash, the
    /// Firecracker config's sha256, the seccomp level and whether the jailer ran it — what
    /// `<state>/tenants/<id>/revisions.json` keeps (the last `tenants.revision_history`).
    Revisions(RevisionsArgs),
    /// Stop the tenant's VM now (its network, cgroup, data and everything else stay), and
    /// keep it stopped: an override in <state>/overrides.json that holds against the next
    /// `mvm agent reconcile --desired` until `mvm tenant start` or `mvm tenant release`.
    /// Reconciles this tenant's VM only.
    Stop(LifecycleArgs),
    /// Start the tenant's VM and keep it running: as `stop`, with the tenant set to
    /// `running`.
    Start(LifecycleArgs),
    /// Run the tenant on this flake (and, with --lock, only a build whose lock hash is
    /// this), whatever the control plane's desired state says, until `mvm tenant unpin`:
    /// an override in <state>/overrides.json, shown in every plan. Restarts its VM onto it.
    Pin(PinArgs),
    /// Drop the tenant's pin (or rollback): it runs the control plane's revision again.
    Unpin(LifecycleArgs),
    /// Run the tenant on the revision it ran `--steps` starts ago (its flake ref and lock
    /// hash, from `mvm tenant revisions`): a pin, until `mvm tenant unpin`. Nix reuses the
    /// store paths still there; the lock hash must match, or nothing is built.
    Rollback(RollbackArgs),
    /// Drop every override of the tenant (pin, stop/start): it is the control plane's again.
    Release(LifecycleArgs),
    /// Create a tenant on this node alone, with every desired.json field as a flag (checked
    /// the same way): it exists whatever the control plane's desired state says, and
    /// `reconcile --prune` never removes it. An override in <state>/overrides.json.
    Create(CreateArgs),
    /// Remove a tenant created by hand: all its resources, its audit log archived as a prune
    /// does. A tenant of the control plane's desired state is refused (it would come back).
    Destroy(LifecycleArgs),
    /// The tenant's secrets: stage a new generation (`set`), make the newest live
    /// (`rotate`). They live only on the tenant's tmpfs and reach the guest as a read-only
    /// drive mounted at /run/secrets; no value ever appears in a plan, record, log or argv.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Stage the next generation of the tenant's secrets on its tmpfs (the files 0400 and a
    /// read-only ext4 drive image of them), without touching its running VM. --from-file
    /// names one regular file (one secret, named by its file name), a flat directory of
    /// regular files (one secret each), or `-` (stdin, with --name). Links, FIFOs, devices,
    /// subdirectories, bad names (A-Z a-z 0-9 . _ -, 1 to 64 bytes, no leading dot) and more
    /// than 1 MiB or 256 files are refused, naming the file; the previous generation stays
    /// as it was. Older staged generations the VM does not run are superseded and removed.
    Set(SecretsSetArgs),
    /// Make the newest staged generation live: a plan of the tenant's VM like any other
    /// (plan shown, confirmation, node lock, progress, exit codes) that replaces it to boot
    /// with the new drive; the older generation is removed only once the VM runs on the new
    /// one. Nothing staged: says so and exits 0. A stopped tenant starts with the newest.
    Rotate(LifecycleArgs),
}

#[derive(Debug, Args)]
pub struct SecretsSetArgs {
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    /// A regular file, a flat directory of regular files, or `-` for stdin.
    #[arg(long = "from-file", value_name = "PATH")]
    pub from_file: std::path::PathBuf,
    /// The secret's name when reading stdin (`--from-file -`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    /// desired.json's `flake_ref`.
    #[arg(long = "flake", value_name = "REF")]
    pub flake: String,
    /// `minimal` or `standard`.
    #[arg(long, value_name = "PROFILE")]
    pub profile: String,
    #[arg(long, value_name = "N")]
    pub vcpus: u64,
    #[arg(long = "mem-mib", value_name = "MIB")]
    pub mem_mib: u64,
    /// `running` (the default) or `stopped`.
    #[arg(long, value_name = "STATE", default_value = "running")]
    pub state: String,
    #[arg(long, value_name = "IPV4")]
    pub ip: Option<String>,
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// Serve it the metadata endpoint.
    #[arg(long)]
    pub metadata: bool,
    /// Allow SSH to it from the gateway.
    #[arg(long = "ssh-from-gateway")]
    pub ssh_from_gateway: bool,
    /// `baseline` or `strict`.
    #[arg(long, value_name = "LEVEL")]
    pub seccomp: Option<String>,
    #[arg(long = "data-mib", value_name = "MIB")]
    pub data_mib: Option<u64>,
    /// CPUs to pin it to (`2-3`).
    #[arg(long, value_name = "LIST")]
    pub cpuset: Option<String>,
    #[arg(long = "pids-max", value_name = "N")]
    pub pids_max: Option<u64>,
    /// Only a build whose flake.lock hash is this.
    #[arg(long, value_name = "HASH")]
    pub lock: Option<String>,
}

impl CreateArgs {
    /// The tenant as desired.json would give it.
    pub fn spec(&self, id: &str) -> serde_json::Value {
        let mut t = serde_json::json!({
            "tenant_id": id, "flake_ref": self.flake, "profile": self.profile,
            "vcpus": self.vcpus, "mem_mib": self.mem_mib, "state": self.state,
            "metadata": self.metadata, "ssh_from_gateway": self.ssh_from_gateway,
        });
        let o = t.as_object_mut().expect("an object");
        let mut opt = |k: &str, v: Option<serde_json::Value>| {
            if let Some(v) = v {
                o.insert(k.to_string(), v);
            }
        };
        opt("ip", self.ip.clone().map(Into::into));
        opt("mac", self.mac.clone().map(Into::into));
        opt("seccomp", self.seccomp.clone().map(Into::into));
        opt("data_mib", self.data_mib.map(Into::into));
        opt("cpuset", self.cpuset.clone().map(Into::into));
        opt("pids_max", self.pids_max.map(Into::into));
        opt("lock", self.lock.clone().map(Into::into));
        t
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    /// How many starts back (1: the revision before the running one).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub steps: usize,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    /// The flake reference to run (as desired.json's `flake_ref`).
    #[arg(long = "flake", value_name = "REF")]
    pub flake: String,
    /// Only a build whose flake.lock hash is this (as desired.json's `lock`).
    #[arg(long, value_name = "HASH")]
    pub lock: Option<String>,
}

#[derive(Debug, Args)]
pub struct LifecycleArgs {
    /// The tenant id.
    pub tenant: String,
    /// Do not ask for confirmation on a terminal.
    #[arg(long)]
    pub auto_approve: bool,
    /// How long to wait for another reconcile's node lock: 0 (fail at once), 30s, 5m, ...
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: String,
    /// Print one JSON document of the result on stdout (the plan and
    /// progress go to stderr); see `mvm agent reconcile --help`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RevisionsArgs {
    /// The tenant id.
    pub tenant: String,
    /// Print the revisions as stored (JSON, oldest first), with the store paths and sha256s.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TenantListArgs {
    /// Compare with this desired state instead of the one the last reconcile applied.
    #[arg(long, value_name = "FILE")]
    pub desired: Option<PathBuf>,
    /// Read this observed state (`mvm agent observe --json`) instead of probing the host.
    #[arg(long, value_name = "FILE")]
    pub observed: Option<PathBuf>,
    /// Print JSON (fields are only ever added).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TenantStatusArgs {
    /// The tenant id.
    pub tenant: String,
    #[command(flatten)]
    pub from: TenantListArgs,
}

#[derive(Debug, Args)]
pub struct TenantLogsArgs {
    /// The tenant id.
    pub tenant: String,
    /// The VM's console and Firecracker's and the jailer's output (logs/vm.log).
    #[arg(long)]
    pub vm: bool,
    /// Firecracker's own log (logs/firecracker.log).
    #[arg(long)]
    pub firecracker: bool,
    /// The last build's log (logs/build.log).
    #[arg(long)]
    pub build: bool,
    /// The metadata service's lines about this tenant (<state>/metadata.log).
    #[arg(long)]
    pub metadata: bool,
    /// Keep printing what is written, until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines written since then: an RFC 3339 time (2026-12-02T10:00:00Z) or a
    /// duration back from now (90s, 10m, 2h, 1d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only the last N lines of each log.
    #[arg(long, short = 'n', value_name = "N")]
    pub lines: Option<usize>,
    /// The run before the current one (vm.log.1, firecracker.log.1); earlier runs are
    /// --previous with a number: --previous 2.
    #[arg(long, value_name = "RUNS", num_args = 0..=1, default_missing_value = "1")]
    pub previous: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TenantMetricsArgs {
    /// The tenant id.
    pub tenant: String,
    /// Print JSON: the VM's state and every counter and gauge Firecracker wrote.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The tenant id.
    pub tenant: String,
    /// Check that no record was edited, removed, reordered or cut off; exit 1 if one was.
    #[arg(long)]
    pub verify: bool,
    /// Print the records as JSON lines, exactly as stored.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Preview what would change to make the node match desired.json. Never changes the host.
    Plan(PlanArgs),
    /// Print what mvm sees on this host (the input `plan --observed` takes).
    Observe(ObserveArgs),
    /// Make the node match desired.json: observe, plan, show the plan, apply it.
    ///
    /// Idempotent: right after a successful run, a second one prints "No changes" and
    /// touches nothing. One reconcile runs at a time per node (a lock under the state dir).
    /// On a terminal it asks before applying unless --auto-approve; without one (as a
    /// node agent) it applies. Ctrl-C / SIGTERM stop new work, let running steps finish,
    /// and report what was done; a re-run converges.
    Reconcile(ReconcileArgs),
    /// Run as the node's agent, for months: follow the desired state in etcd (`--etcd`) or
    /// a file (`--desired`), reconcile toward each new valid document (a change after a quiet second at
    /// once; the rest of a burst once quiet for 1 s, 10 s at most), resync against it every `--resync` (±20 %) to repair
    /// drift, and report the node's status back to etcd under a lease. An absent, empty,
    /// oversize or invalid value is no information: the last good document (kept in
    /// <state>/agent-desired.json with its revision and sha256) stays, and the status says
    /// why; a drain is an explicit `{"tenants": []}`. On start it reconciles from that file
    /// at once, offline. SIGTERM/SIGINT let running steps finish, then exit 0.
    Run(RunArgs),
    /// Not an mvm command: Terraform's `apply` is `mvm agent reconcile`.
    #[command(hide = true)]
    Apply {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["etcd", "desired"])))]
pub struct RunArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Follow this file instead of etcd (re-read when it changes).
    #[arg(long, value_name = "FILE")]
    pub desired: Option<PathBuf>,
    /// The node id to act as, instead of <state>/node-id (for simulations of many nodes).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Delete tenants that are on the node but not in the document.
    #[arg(long)]
    pub prune: bool,
    #[arg(long, value_name = "ADDR", help = TARGET_HELP)]
    pub target: Vec<String>,
    /// How often to re-plan against the last good document (±20 % jitter).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub resync: String,
    /// Reconcile the current document once, report, and exit (1 unless converged).
    #[arg(long)]
    pub once: bool,
    /// How long a reconcile waits for a manual command's node lock.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub lock_timeout: String,
    /// Log lines as JSON objects instead of `event key=value …`.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Serve `mvm node metrics` over HTTP at http://ADDR/metrics for Prometheus. ADDR is
    /// HOST:PORT, or :PORT for 127.0.0.1:PORT (loopback: give an address on purpose to be
    /// scraped from elsewhere).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// Where etcd is.
#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (`http://127.0.0.1:2379`).
    #[arg(long, value_name = "URL[,URL…]", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The key prefix of the fleet.
    #[arg(long, value_name = "PREFIX", default_value = "/mvm")]
    pub prefix: String,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Write a node's desired document: validated as `--desired` is, then a compare-and-swap
    /// write (with --if-revision, only if the key is still at that revision; 0: absent).
    Put(FleetPutArgs),
    /// A node's desired document (with its revision) and its status.
    Get(FleetGetArgs),
    /// Every node: whether its agent's lease is alive, the revision it applied against the
    /// one desired, its result and failures.
    Status(FleetStatusArgs),
}

#[derive(Debug, Args)]
pub struct FleetPutArgs {
    pub node: String,
    #[arg(long, value_name = "FILE")]
    pub desired: PathBuf,
    #[arg(long, value_name = "REVISION")]
    pub if_revision: Option<i64>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
pub struct FleetGetArgs {
    pub node: String,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
pub struct FleetStatusArgs {
    /// Print JSON (fields are only ever added).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["desired", "plan"])))]
pub struct ReconcileArgs {
    /// The desired state (desired.json). One of --desired or --plan.
    #[arg(long, value_name = "FILE")]
    pub desired: Option<PathBuf>,
    /// Apply exactly this saved plan (`mvm agent plan --out`); refused if the node changed since. One of --desired or --plan.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["desired", "prune", "target"])]
    pub plan: Option<PathBuf>,
    /// Delete tenants that are on the node but not in desired.json.
    #[arg(long)]
    pub prune: bool,
    #[arg(long, value_name = "ADDR", help = TARGET_HELP)]
    pub target: Vec<String>,
    /// Resources applied at once when the graph allows (default: apply.parallelism in node.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: Option<u16>,
    /// Do not ask for confirmation on a terminal.
    #[arg(long)]
    pub auto_approve: bool,
    /// How long to wait for another reconcile's node lock: 0 (fail at once), 30s, 5m, ...
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: String,
    /// Print one JSON document of the result on stdout when done — for a
    /// control plane driving mvm: `{"format_version", "outcome"
    /// (no_changes, cancelled, applied), "success", "summary" {added,
    /// changed, destroyed, failed, blocked, skipped}, "resources" [{address,
    /// phase, actions, result (ok, failed, blocked, skipped, interrupted),
    /// error, duration_ms}], "audit_errors"}`. The plan and progress go to
    /// stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The desired state (desired.json).
    #[arg(long, value_name = "FILE")]
    pub desired: PathBuf,
    /// Plan against a captured observation (`mvm agent observe --json`) instead of this host.
    #[arg(long, value_name = "FILE")]
    pub observed: Option<PathBuf>,
    /// Delete tenants that are on the node but not in desired.json (kept by default).
    #[arg(long)]
    pub prune: bool,
    /// Print the machine-readable plan (versioned JSON) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also save the plan (JSON) to FILE, for `mvm agent reconcile --plan FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[arg(long, value_name = "ADDR", help = TARGET_HELP)]
    pub target: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// Print the full observed state as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Build <flake>#mvm-<profile> (as a tenant's artifact is built) and boot it in
    /// Firecracker as root — no jailer, no cgroup of its own, no network, its serial console
    /// on <state>/dev/console.log (input: the FIFO <state>/dev/console.in). One developer VM
    /// at a time; it never touches a tenant, takes no node lock, writes no audit record.
    Up(DevUpArgs),
    /// Write a starter flake into DIR that builds offline (no inputs, no network): flake.nix
    /// (packages mvm-minimal and mvm-standard in mvm's artifact contract), a copy of a static
    /// busybox as its builder and of a kernel image as vmlinux. Then `mvm dev up --flake
    /// path:DIR`, or a tenant with `"flake_ref": "path:DIR"`.
    Init(DevInitArgs),
    /// Stop the developer VM (Ctrl-Alt-Del, then SIGKILL after firecracker.stop_timeout_secs)
    /// and remove <state>/dev/.
    Down,
    /// Whether a developer VM runs: its pid, flake, build, and whether its API answers.
    Status(DevStatusArgs),
    /// Print the developer VM's serial console; with --follow keep printing until it exits
    /// (Ctrl-C to stop). Type into it with `cat > <state>/dev/console.in`.
    Console(DevConsoleArgs),
}

#[derive(Debug, Args)]
pub struct DevUpArgs {
    /// The flake to boot (as desired.json's flake_ref: `path:/src/guest`, `github:o/r?rev=…`).
    #[arg(long, value_name = "REF")]
    pub flake: String,
    /// Which of the flake's packages: mvm-minimal or mvm-standard.
    #[arg(long, default_value = "minimal",
          value_parser = clap::builder::PossibleValuesParser::new(crate::spec::desired::Profile::NAMES))]
    pub profile: String,
    /// vCPUs (1..=32, as desired.json's vcpus).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub vcpus: u8,
    /// Guest memory in MiB (128..=262144, as desired.json's mem_mib).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(128..=262_144))]
    pub mem_mib: u32,
    /// Print one JSON document of what started on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DevStatusArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DevConsoleArgs {
    /// Keep printing what the console shows until the VM exits.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct DevInitArgs {
    /// A new (or empty) directory for the flake.
    pub dir: PathBuf,
    /// The guest kernel image to copy in (an uncompressed vmlinux or a bzImage Firecracker
    /// loads; README: Install, "A guest kernel").
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,
    /// The static busybox the flake builds with (Debian: busybox-static).
    #[arg(long, value_name = "PATH", default_value = "/bin/busybox")]
    pub busybox: PathBuf,
}
