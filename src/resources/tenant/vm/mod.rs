//! `tenant.<id>.vm`: the tenant's Firecracker process, launched through the
//! jailer from a config file mvm renders here. Firecracker cannot change a
//! running VM's machine, drives or network, so every attribute change
//! replaces the VM; the config's full text is carried in the plan so
//! reviewers see a diff of it.
//!
//! Every path in the config is jail-relative: the jail resource stages the
//! artifact's kernel and rootfs at `/vmlinux` and `/rootfs.ext4`, so the
//! config does not depend on the store path and is known at plan time.

use crate::host::ProcessRef;
use crate::host::{HostError, HostResult};
use crate::observed::{Observed, ObservedTenant, VmProcess};
use crate::resources::tenant::jail::Stage;
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Document, DocumentChange, Documents, NodeView, PlanCtx,
    Provider, ResolvedTenant, Resource, Scope, Subject, Unwanted,
};
use crate::security::audit::AuditDetails;
use crate::security::jailer::{Launch, VmLogs};
use crate::spec::TenantSpec;
use crate::spec::desired::{Profile, RunState, SeccompLevel};
use crate::spec::jail::{API_SOCKET_IN_JAIL, JailLayout};
use crate::spec::types::{MacAddr, TenantId};
use crate::state::VmRecord;
use serde::Deserialize;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;

mod config;

pub use config::{
    BootSource, CONFIG_DOC, Drive, FcConfig, Logger, MachineConfig, Metrics, NetworkInterface,
    config_sha256, config_value, fc_config, observed_config,
};

pub struct Vm;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmAttrs {
    /// Always `running`: a stopped tenant has no VM resource.
    pub state: RunState,
    pub flake_ref: String,
    pub profile: Profile,
    /// Unknown until the artifact is built, unless pinned.
    pub lock: Option<String>,
    pub vcpus: u8,
    pub mem_mib: u32,
    /// The persistent data volume, in MiB (created once, kept across
    /// restarts).
    pub data_mib: Option<u32>,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub seccomp: SeccompLevel,
    pub jailer: bool,
    pub fc_config_sha256: String,
    /// The secrets generation it runs with (`(sensitive) generation 4,
    /// 2 files`), and that generation's keyed fingerprint: a running VM
    /// keeps its own until `secrets rotate`; a VM started anew gets the
    /// newest staged.
    pub secrets: crate::security::secrets::Summary,
    pub secrets_fingerprint: Option<String>,
    /// Known after apply.
    pub pid: Option<u32>,
}

impl Resource for Vm {
    type Attrs = VmAttrs;
    const WORD: &'static str = "vm";
    const SCOPE: Scope = Scope::Tenant;
    /// Firecracker cannot change a running VM's machine, drives or network.
    const REPLACE_ON: &'static [&'static str] = &[
        "flake_ref",
        "profile",
        "lock",
        "vcpus",
        "mem_mib",
        "data_mib",
        "ip",
        "mac",
        "seccomp",
        "jailer",
        "fc_config_sha256",
        "secrets",
        "secrets_fingerprint",
    ];
    /// A running VM holds its tap, jail and cgroup open: a new one of
    /// those needs a new VM.
    const HOLDS: &'static [&'static str] = &["jail", "cgroup", "tap"];

    fn depends_on(&self, spec: Option<&TenantSpec>) -> &'static [Dep] {
        const BASE: &[Dep] = &[
            Dep::Tenant("jail"),
            Dep::Tenant("cgroup"),
            Dep::Tenant("tap"),
            Dep::Tenant("nft"),
        ];
        const WITH_METADATA: &[Dep] = &[
            Dep::Node("metadata"),
            Dep::Tenant("jail"),
            Dep::Tenant("cgroup"),
            Dep::Tenant("tap"),
            Dep::Tenant("nft"),
        ];
        if spec.is_some_and(|s| s.metadata) {
            WITH_METADATA
        } else {
            BASE
        }
    }

    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        if t.spec.state == RunState::Stopped {
            return None;
        }
        let obs = ctx.observed.tenant(t.id());
        let mut d = Desired::default();
        d.set("state", "running");
        d.set("flake_ref", t.spec.flake_ref.clone());
        d.set("profile", t.spec.profile.as_str());
        match crate::resources::tenant::artifact::planned_lock(t, obs) {
            Some(l) => d.set("lock", l),
            None => d.unknown("lock"),
        }
        d.set("vcpus", t.spec.vcpus);
        d.set("mem_mib", t.spec.mem_mib);
        d.set("data_mib", t.spec.data_mib);
        d.set("ip", t.ip.to_string());
        d.set("mac", t.mac.to_string());
        d.set("seccomp", t.spec.seccomp.as_str());
        d.set("jailer", ctx.observed.binaries.jailer);
        d.set(
            "fc_config_sha256",
            config_sha256(&fc_config(
                ctx.node,
                &t.spec,
                t.ip,
                t.mac,
                ctx.observed.binaries.jailer,
            )),
        );
        let secrets = wanted_secrets(ctx, t.id(), obs);
        d.set(
            "secrets",
            secrets
                .map(|m| m.summary())
                .unwrap_or_else(|| crate::security::secrets::NONE.into()),
        );
        d.set(
            "secrets_fingerprint",
            secrets.map(|m| m.fingerprint.clone()),
        );
        d.unknown("pid");
        Some(d)
    }

    fn unwanted(&self, s: Subject) -> Unwanted {
        match s {
            Subject::Tenant(t) if t.spec.state == RunState::Stopped => Unwanted::Stopped,
            _ => Unwanted::Unused,
        }
    }

    fn observed(&self, _: &PlanCtx, at: At) -> Option<Attrs> {
        let At::Tenant(_, obs) = at else { return None };
        let p = obs.vm.as_ref()?;
        // The record describes this process only if pid *and* start time
        // match: a reused pid, or a Firecracker mvm did not launch, has no
        // known revision or config, so every recorded attribute reads as
        // null and the plan replaces it.
        let rec = obs
            .record
            .as_ref()
            .and_then(|r| r.vm.as_ref())
            .filter(|r| r.pid == p.pid && r.start_time == p.start_time);
        let mut a = Attrs::new();
        a.insert("state".into(), "running".into());
        a.insert("pid".into(), p.pid.into());
        let field = |f: fn(&VmRecord) -> Value| rec.map_or(Value::Null, f);
        a.insert("flake_ref".into(), field(|r| r.flake_ref.clone().into()));
        a.insert("profile".into(), field(|r| r.profile.clone().into()));
        a.insert("lock".into(), field(|r| r.lock.clone().into()));
        a.insert("vcpus".into(), field(|r| r.vcpus.into()));
        a.insert("mem_mib".into(), field(|r| r.mem_mib.into()));
        a.insert("data_mib".into(), field(|r| r.data_mib.into()));
        a.insert("ip".into(), field(|r| r.ip.to_string().into()));
        a.insert("mac".into(), field(|r| r.mac.to_string().into()));
        a.insert("seccomp".into(), field(|r| r.seccomp.clone().into()));
        a.insert("jailer".into(), field(|r| r.jailer.into()));
        a.insert(
            "fc_config_sha256".into(),
            field(|r| r.fc_config_sha256.clone().into()),
        );
        a.insert(
            "secrets".into(),
            field(|r| {
                let s = r.secrets.as_ref().map(|s| (s.generation, s.files));
                crate::security::secrets::Summary(s).to_string().into()
            }),
        );
        a.insert(
            "secrets_fingerprint".into(),
            field(|r| r.secrets.as_ref().map(|s| s.fingerprint.clone()).into()),
        );
        Some(a)
    }

    fn documents(
        &self,
        ctx: &PlanCtx,
        at: Option<&ObservedTenant>,
        want: Option<&ResolvedTenant>,
    ) -> Documents {
        let change = DocumentChange {
            before: at.and_then(observed_config).map(Document::new),
            after: want.map(|t| {
                let jailed = ctx.observed.binaries.jailer;
                Document::new(&config_value(&fc_config(
                    ctx.node, &t.spec, t.ip, t.mac, jailed,
                )))
            }),
        };
        [(CONFIG_DOC.to_string(), change)].into()
    }

    fn blocked(&self, ctx: &PlanCtx, s: Subject) -> Option<String> {
        let fc = &ctx.node.firecracker;
        if !ctx.observed.binaries.firecracker {
            return Some(format!("no Firecracker binary at {}", fc.binary.display()));
        }
        if let Subject::Tenant(t) = s
            && t.spec.data_mib.is_some()
            && !ctx.observed.binaries.mkfs_ext4
        {
            return Some(
                "data_mib needs mkfs.ext4 to make the data volume, and it is not installed (apt install e2fsprogs)"
                    .into(),
            );
        }
        match s {
            Subject::Tenant(t) => crate::security::seccomp::blocked(
                t.spec.seccomp,
                ctx.observed.binaries.strict_seccomp_filter,
                fc,
            ),
            Subject::Node(_) => None,
        }
    }

    fn warnings(&self, ctx: &PlanCtx, view: &NodeView) -> Vec<String> {
        let mut w = Vec::new();
        let running = view
            .tenants
            .iter()
            .any(|t| t.spec.state == RunState::Running);
        if running && !ctx.observed.binaries.jailer {
            w.push(format!(
                "no jailer at {}: VMs will run Firecracker directly, as root, without its chroot or uid/gid drop (mvm still places them in their cgroups)",
                ctx.node.firecracker.jailer.display()
            ));
        }
        w
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&VmAttrs>,
        docs: &Documents,
    ) {
        let t = crate::resources::tenant_mut(obs, id);
        let Some(a) = after else {
            t.vm = None;
            if let Some(r) = t.record.as_mut() {
                r.vm = None;
            }
            return;
        };
        let lock = a.lock.clone().unwrap_or_else(|| {
            t.record
                .as_ref()
                .and_then(|r| r.artifact.as_ref())
                .map(|x| x.lock.clone())
                .unwrap_or_default()
        });
        let id_hash = crate::digest::sha256(a.mac.to_string().as_bytes());
        let head = u32::from_str_radix(&id_hash[..8], 16).expect("hex digits");
        let pid = 1000 + head % 4_000_000;
        let start_time = u64::from_str_radix(&id_hash[8..10], 16).expect("hex digits") * 1000 + 100;
        t.vm = Some(VmProcess { pid, start_time });
        let config = docs
            .get(CONFIG_DOC)
            .and_then(|d| d.after.as_ref())
            .map_or(Value::Null, Document::value);
        if let Some(r) = t.record.as_mut() {
            r.vm = Some(VmRecord {
                flake_ref: a.flake_ref.clone(),
                lock,
                profile: a.profile.as_str().to_string(),
                vcpus: a.vcpus,
                mem_mib: a.mem_mib,
                data_mib: a.data_mib,
                ip: a.ip,
                mac: a.mac,
                seccomp: a.seccomp.as_str().to_string(),
                jailer: a.jailer,
                fc_config: config,
                fc_config_sha256: a.fc_config_sha256.clone(),
                secrets: vm_secrets(a),
                pid,
                start_time,
                started_at: None,
            });
            if let Some(g) = a.secrets.generation() {
                r.secrets_generation = r.secrets_generation.max(g);
            }
        }
        // Once it runs on a generation, the older ones are removed.
        if let Some(g) = a.secrets.generation() {
            t.secrets_generations.retain(|m| m.generation >= g);
        }
    }

    fn identity(&self, a: &VmAttrs) -> Vec<(&'static str, String)> {
        vec![("ip", a.ip.to_string()), ("mac", a.mac.to_string())]
    }

    fn check(&self, ctx: &PlanCtx, _: Option<&TenantId>, a: &VmAttrs) -> Result<(), String> {
        use crate::spec::desired::{DATA_MIB_MAX, MEM_MIB_MAX, MEM_MIB_MIN, VCPUS_MAX};
        crate::spec::types::check_flake_ref(&a.flake_ref).map_err(|e| format!("flake_ref {e}"))?;
        let ok = (1..=VCPUS_MAX).contains(&u64::from(a.vcpus))
            && (MEM_MIB_MIN..=MEM_MIB_MAX).contains(&u64::from(a.mem_mib))
            && a.data_mib
                .is_none_or(|d| (1..=DATA_MIB_MAX).contains(&u64::from(d)))
            && a.state == RunState::Running
            && a.fc_config_sha256.len() == 64
            && a.fc_config_sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(
                "vcpus, mem_mib, data_mib, state or the config sha256 is not one the specs allow"
                    .into(),
            );
        }
        crate::spec::desired::check_ip(&a.ip.to_string(), ctx.node)
            .map_err(|e| format!("ip {e}"))?;
        match (a.secrets.0, &a.secrets_fingerprint) {
            (None, None) => {}
            (Some(_), Some(f)) if crate::security::secrets::is_fingerprint(f) => {}
            _ => {
                return Err(
                    "secrets and secrets_fingerprint must name one generation and its hmac-sha256 fingerprint, or both be none"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// A start's record: what `audit` says, plus the lock, the store paths
    /// and sha256s of kernel, rootfs and base config, the pid, and the cgroup
    /// limits the VM runs under.
    fn audit_applied(&self, ctx: &ApplyCtx, id: Option<&TenantId>, a: &VmAttrs) -> AuditDetails {
        let mut d = self.audit(a);
        d.insert("vcpus".into(), a.vcpus.to_string());
        d.insert("mem_mib".into(), a.mem_mib.to_string());
        d.insert("seccomp".into(), a.seccomp.as_str().to_string());
        d.insert("jailer".into(), a.jailer.to_string());
        let host = ctx.host.identity.hostname();
        if let Some(instance) = host.strip_prefix("lima-") {
            d.insert("lima_instance".into(), instance.to_string());
        }
        d.insert("hostname".into(), host);
        let rec = id.and_then(|id| ctx.record(id).ok().flatten());
        if let Some(rec) = rec {
            if let Some(art) = &rec.artifact {
                d.insert("lock".into(), art.lock.clone());
                for f in &art.files {
                    d.insert(format!("{}_store_path", f.name), f.store_path.clone());
                    d.insert(format!("{}_sha256", f.name), f.sha256.clone());
                }
            }
            if let Some(vm) = &rec.vm {
                d.insert("pid".into(), vm.pid.to_string());
            }
            // How long the start took, phase by phase (µs).
            if let Some(id) = id {
                for (k, v) in ctx.take_timings(id) {
                    d.insert(k.into(), v.to_string());
                }
            }
            // The generation's files, by name and size (never a value).
            if let (Some(g), Some(id)) = (a.secrets.generation(), id) {
                let dir = ctx.layout.secrets(id);
                if let Ok(Some(m)) =
                    ctx.host.secrets.secrets_manifest(&dir, g).map(|b| {
                        b.and_then(|b| crate::security::secrets::Manifest::parse(&b, g).ok())
                    })
                {
                    let files: Vec<String> = m
                        .files
                        .iter()
                        .map(|f| format!("{} ({} bytes)", f.name, f.bytes))
                        .collect();
                    d.insert("secrets_files".into(), files.join(", "));
                }
            }
            // The limits it runs under, as the cgroup step wrote them
            // (`memory.max` → `memory_max`): none the host lacks.
            for (file, v) in rec.cgroup.iter().flatten() {
                d.insert(file.replace('.', "_"), v.clone());
            }
        }
        d
    }

    fn audit(&self, a: &VmAttrs) -> AuditDetails {
        let mut d: AuditDetails = [
            ("flake_ref".to_string(), a.flake_ref.clone()),
            ("fc_config_sha256".to_string(), a.fc_config_sha256.clone()),
            ("ip".to_string(), a.ip.to_string()),
            ("mac".to_string(), a.mac.to_string()),
        ]
        .into();
        if let Some(l) = &a.lock {
            d.insert("lock".into(), l.clone());
        }
        d.insert("secrets".into(), a.secrets.to_string());
        if let Some(f) = &a.secrets_fingerprint {
            d.insert("secrets_fingerprint".into(), f.clone());
        }
        d
    }
}

/// The secrets generation a tenant's VM is to run with: the newest staged
/// when it is started anew or rotated; otherwise the one the running VM
/// has (none stays none), unless that one is no longer on the tmpfs.
fn wanted_secrets<'a>(
    ctx: &PlanCtx,
    id: &TenantId,
    obs: Option<&'a ObservedTenant>,
) -> Option<&'a crate::security::secrets::Manifest> {
    let obs = obs?;
    let running = obs
        .vm
        .as_ref()
        .zip(obs.record.as_ref().and_then(|r| r.vm.as_ref()))
        .filter(|(p, r)| r.pid == p.pid && r.start_time == p.start_time)
        .map(|(_, r)| r.secrets.as_ref());
    match running {
        Some(_) if ctx.rotate_secrets.contains(id) => obs.newest_secrets(),
        None => obs.newest_secrets(),
        Some(None) => None,
        Some(Some(s)) => obs
            .secrets_generation(s.generation)
            .filter(|m| m.fingerprint == s.fingerprint)
            .or_else(|| obs.newest_secrets()),
    }
}

/// What a VM's record says of its secrets, from its attributes.
fn vm_secrets(a: &VmAttrs) -> Option<crate::state::record::VmSecrets> {
    let (generation, files) = a.secrets.0?;
    Some(crate::state::record::VmSecrets {
        generation,
        files,
        fingerprint: a.secrets_fingerprint.clone()?,
    })
}

/// The staged generation the plan names, checked against the tmpfs now:
/// the same fingerprint and file count, or an error saying what to do.
fn planned_secrets(ctx: &ApplyCtx, id: &TenantId, a: &VmAttrs) -> HostResult<Option<u64>> {
    let Some((g, files)) = a.secrets.0 else {
        return Ok(None);
    };
    let dir = ctx.layout.secrets(id);
    let stale = |what: String| {
        HostError::other_on(
            "start the VM of",
            id,
            format!(
                "the plan starts it with secrets generation {g}, but {what}: run `mvm agent plan` again (or `mvm tenant secrets rotate {id}`)"
            ),
        )
    };
    let bytes = ctx
        .host
        .secrets
        .secrets_manifest(&dir, g)?
        .ok_or_else(|| stale(format!("{} holds no such generation", dir.display())))?;
    let m = crate::security::secrets::Manifest::parse(&bytes, g)
        .map_err(|e| stale(format!("its manifest cannot be used: {e}")))?;
    if Some(&m.fingerprint) != a.secrets_fingerprint.as_ref() || m.files.len() != files {
        return Err(stale(
            "the tmpfs holds other content under that number".into(),
        ));
    }
    Ok(Some(g))
}

/// Appends this start to the tenant's `revisions.json`, keeping the
/// newest `tenants.revision_history`. A history that cannot be read is
/// an error, never reset.
fn record_revision(
    ctx: &ApplyCtx,
    id: &TenantId,
    artifact: &crate::state::ArtifactRecord,
    after: &VmAttrs,
) -> HostResult {
    use crate::state::record::{REVISIONS_CAP, Revision};
    let path = ctx.layout.revisions(id);
    let mut list: Vec<Revision> = match ctx.host.files.read(&path, REVISIONS_CAP)? {
        Some(b) => crate::spec::json::from_slice(&b)
            .map_err(|e| HostError::other("read", &path, format!("not a revision history: {e}")))?,
        None => Vec::new(),
    };
    list.push(Revision {
        started_at: ctx
            .host
            .clock
            .now()
            .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string(),
        flake_ref: artifact.flake_ref.clone(),
        lock: artifact.lock.clone(),
        profile: artifact.profile.clone(),
        files: artifact.files.clone(),
        fc_config_sha256: after.fc_config_sha256.clone(),
        seccomp: after.seccomp.as_str().to_string(),
        jailer: after.jailer,
    });
    let keep = ctx.node.tenants.revision_history as usize;
    if list.len() > keep {
        list.drain(..list.len() - keep);
    }
    let text = crate::spec::json::file_text(&list);
    ctx.host.files.write_file(&path, &text, 0o600)
}

impl Provider<VmAttrs> for Vm {
    /// Has the jail staged afresh for this launch (`jail::stage`: a reused
    /// jailer id fails) with exactly the planned config; launches
    /// Firecracker through the jailer as the tenant's uid/gid in its
    /// cgroup; records pid and start time, and the revision.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        _: Option<&VmAttrs>,
        after: &VmAttrs,
        docs: &Documents,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        let at = |what: &str| HostError::other_on("start the VM of", id, what.to_string());
        let config = docs
            .get(CONFIG_DOC)
            .and_then(|d| d.after.as_ref())
            .map(Document::value)
            .ok_or_else(|| at("the plan carries no Firecracker config"))?;
        let typed: FcConfig = serde_json::from_value(config.clone())
            .map_err(|e| at(&format!("the plan's Firecracker config is not valid: {e}")))?;
        if config_sha256(&typed) != after.fc_config_sha256 {
            return Err(at(
                "the plan's Firecracker config does not match its sha256",
            ));
        }
        let rec = ctx
            .record(id)?
            .ok_or_else(|| at("the tenant has no record"))?;
        let artifact = rec
            .artifact
            .as_ref()
            .ok_or_else(|| at("its artifact is not built"))?;
        let fc = &ctx.node.firecracker;
        let jailed = after.jailer;
        let secrets = planned_secrets(ctx, id, after)?;
        let config_text = crate::spec::json::file_text(&typed);
        let begun = crate::host::service::Moment::now();
        // The run's logs first: the jail binds its FIFOs.
        let logs = VmLogs {
            dir: ctx.layout.logs_dir(id),
            max_bytes: ctx.node.logs.max_bytes,
            previous_runs: ctx.node.logs.previous_runs,
            uid: rec.uid,
            gid: rec.gid,
        };
        ctx.host.vms.prepare_logs(&logs)?;
        let staged = crate::resources::tenant::jail::stage(
            ctx,
            id,
            &rec,
            &Stage {
                config_json: &config_text,
                data_drive: typed.drives.iter().any(|d| d.drive_id == "data"),
                jailed,
                seccomp: after.seccomp,
                data_mib: after.data_mib,
                secrets,
            },
        )?;
        let layout = &staged.layout;
        let in_jail = |p: &str| {
            if jailed {
                p.to_string()
            } else {
                format!("{}{p}", layout.root.display())
            }
        };
        let launch = Launch {
            jailer: jailed.then(|| fc.jailer.clone()),
            firecracker: fc.binary.clone(),
            id: id.to_string(),
            uid: rec.uid,
            gid: rec.gid,
            chroot_base: layout.chroot_base.clone(),
            parent_cgroup: format!("{}/{id}", ctx.node.cgroup.parent),
            api_sock: in_jail(&format!("/{API_SOCKET_IN_JAIL}")),
            config_file: in_jail("/vm.json"),
            seccomp_filter: staged.seccomp_filter.as_deref().map(in_jail),
            cgroup_procs: (!jailed)
                .then(|| ctx.cgroup_mount.clone())
                .flatten()
                .map(|m| {
                    m.join(&ctx.node.cgroup.parent)
                        .join(id.as_str())
                        .join("cgroup.procs")
                }),
            api_sock_host: layout.api_socket.clone(),
            logs: Some(logs),
            // Its data volume is as large as the spec says (its log and
            // metrics are FIFOs, bounded by the pump).
            max_file_bytes: (u64::from(after.data_mib.unwrap_or(0)) << 20).max(1 << 30),
        };
        // Nothing of the tenant runs when its VM is launched: a process
        // left in its cgroup (a launch by an mvm killed before it could
        // record it, still starting when this run looked) would hold the
        // tap and make the jailer fail with EBUSY.
        if let Some(mount) = &ctx.cgroup_mount {
            ctx.host
                .cgroups
                .cgroup_kill(mount, &Path::new(&ctx.node.cgroup.parent).join(id.as_str()))?;
        }
        let staged_in = begun.elapsed();
        let launching = crate::host::service::Moment::now();
        let launched = ctx.host.vms.launch(&launch)?;
        let launched_in = launching.elapsed();
        let recording = crate::host::service::Moment::now();
        let running = launched.process;
        let vm = VmRecord {
            flake_ref: after.flake_ref.clone(),
            lock: artifact.lock.clone(),
            profile: after.profile.as_str().to_string(),
            vcpus: after.vcpus,
            mem_mib: after.mem_mib,
            data_mib: after.data_mib,
            ip: after.ip,
            mac: after.mac,
            seccomp: after.seccomp.as_str().to_string(),
            jailer: jailed,
            fc_config: config,
            fc_config_sha256: after.fc_config_sha256.clone(),
            secrets: vm_secrets(after),
            pid: running.pid,
            start_time: running.start_time,
            started_at: Some(ctx.host.clock.now().to_string()),
        };
        ctx.update_record(id, |r| {
            r.vm = Some(vm);
            r.vm_starts += 1;
            if let Some(g) = secrets {
                r.secrets_generation = r.secrets_generation.max(g);
            }
        })?;
        record_revision(ctx, id, artifact, after)?;
        // It runs on the new generation: the older ones can go (a crash
        // before this leaves them for the next start or `secrets set`).
        if let Some(g) = secrets {
            ctx.host
                .secrets
                .prune_secrets(&ctx.layout.secrets(id), g, &[])?;
        }
        // Measured, not derived: mvm's own share is all but the wait for
        // the jailer's and Firecracker's API.
        let us = |d: std::time::Duration| d.as_micros() as u64;
        let recorded_in = recording.elapsed();
        let own = staged_in + launched_in.saturating_sub(launched.api_wait) + recorded_in;
        ctx.keep_timings(
            id,
            vec![
                ("stage_us", us(staged_in)),
                ("launch_us", us(launched_in)),
                ("api_wait_us", us(launched.api_wait)),
                ("record_us", us(recorded_in)),
                ("mvm_us", us(own)),
            ],
        );
        Ok(())
    }

    /// Stops the VM — the recorded process, or one of this tenant's that
    /// a crashed run launched without recording it — and clears its jail.
    fn delete(&self, ctx: &ApplyCtx, id: Option<&TenantId>, prior: Option<&VmAttrs>) -> HostResult {
        let id = id.expect("a tenant address");
        let rec = ctx.record(id)?;
        let layout = JailLayout::new(&ctx.node.state_dir, &ctx.node.firecracker.binary, id);
        if let Some(rec) = &rec {
            let cgroup = format!("{}/{id}", ctx.node.cgroup.parent);
            let grace = std::time::Duration::from_secs(ctx.node.firecracker.stop_timeout_secs);
            let fc = &ctx.node.firecracker.binary;
            // The recorded VM; or, when the plan did not know it (a run
            // died between launch and record, so its attributes read as
            // unknown), whatever Firecracker of this tenant runs — as the
            // tenant (jailed) or as root (launched without a jailer).
            let pid = prior.and_then(|p| p.pid);
            let recorded = rec.vm.as_ref().filter(|v| Some(v.pid) == pid).map(|v| {
                (
                    ProcessRef {
                        pid: v.pid,
                        start_time: v.start_time,
                    },
                    if v.jailer { rec.uid } else { 0 },
                )
            });
            let found = recorded.or_else(|| {
                [rec.uid, 0].into_iter().find_map(|uid| {
                    let r = match pid {
                        Some(pid) => ctx.host.vms.identify(pid, uid, &cgroup, id.as_str()),
                        None => None,
                    };
                    r.or_else(|| ctx.host.vms.find(fc, uid, &cgroup, id.as_str()))
                        .map(|r| (r, uid))
                })
            });
            if let Some((r, uid)) = found {
                ctx.host
                    .vms
                    .stop(r, uid, &cgroup, &layout.api_socket, grace)?;
            }
        }
        crate::resources::tenant::jail::clear(ctx, id)?;
        if rec.is_some() {
            ctx.update_record(id, |r| r.vm = None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NodeConfig;

    fn converged_acme() -> ObservedTenant {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/observed/converged.json"
        ))
        .unwrap();
        let o: Observed = serde_json::from_str(&text).unwrap();
        o.tenants
            .into_iter()
            .find(|(id, _)| id.as_str() == "acme")
            .unwrap()
            .1
    }

    fn observed(t: &ObservedTenant) -> Attrs {
        let node = NodeConfig::default_config();
        let obs = Observed::empty();
        let id = TenantId::parse("acme").unwrap();
        Resource::observed(&Vm, &PlanCtx::new(&node, &obs), At::Tenant(&id, t)).unwrap()
    }

    #[test]
    fn recorded_vm_matches_its_process() {
        let t = converged_acme();
        let a = observed(&t);
        assert_eq!(a["vcpus"], 2);
        assert!(observed_config(&t).is_some());
    }

    #[test]
    fn reused_pid_is_not_the_recorded_vm() {
        let mut t = converged_acme();
        t.vm.as_mut().unwrap().start_time += 1;
        let a = observed(&t);
        assert_eq!(a["state"], "running");
        assert_eq!(a["vcpus"], Value::Null);
        assert_eq!(a["fc_config_sha256"], Value::Null);
        assert!(observed_config(&t).is_none());
    }
}
