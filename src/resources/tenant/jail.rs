//! `tenant.<id>.jail`: the jailer chroot base and what the jail runs as
//! (the tenant's own uid/gid, recorded). Its root is staged afresh for
//! each launch (`stage`, called by the VM's provider: a reused jailer id
//! fails) with the artifact's kernel and rootfs, the secrets image, the
//! data volume, the seccomp filter and the config. Without a jailer binary
//! mvm launches Firecracker directly, and the plan says so.

use crate::host::{HostError, HostResult, JailStage};
use crate::observed::Observed;
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, PlanCtx, Provider, Resource, Scope, Subject,
};
use crate::security::jailer::{JAIL_TMPFS_BYTES, JAIL_TMPFS_INODES};
use crate::spec::TenantSpec;
use crate::spec::jail::JailLayout;
use crate::spec::jail::exec_name;
use crate::spec::types::TenantId;
use crate::state::JailRecord;
use crate::state::TenantRecord;
use serde::Deserialize;
use std::path::Path;

pub struct Jail;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailAttrs {
    pub chroot_base: String,
    pub exec: String,
    pub jailer: bool,
    pub uid: u32,
    pub gid: u32,
}

impl Resource for Jail {
    type Attrs = JailAttrs;
    const WORD: &'static str = "jail";
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &["chroot_base", "exec", "jailer", "uid", "gid"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[
            Dep::Tenant("dirs"),
            Dep::Tenant("artifact"),
            Dep::Tenant("secrets"),
        ]
    }

    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        let mut d = Desired::default();
        d.set("chroot_base", ctx.layout.jail(t.id()).display().to_string());
        d.set("exec", exec_name(&ctx.node.firecracker.binary));
        d.set("jailer", ctx.observed.binaries.jailer);
        d.set("uid", t.uid);
        d.set("gid", t.gid);
        Some(d)
    }

    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs> {
        let At::Tenant(id, obs) = at else { return None };
        obs.jail_dir.as_ref()?;
        let rec = obs.record.as_ref()?;
        let jail = rec.jail.as_ref()?;
        let mut a = Attrs::new();
        a.insert(
            "chroot_base".into(),
            ctx.layout.jail(id).display().to_string().into(),
        );
        a.insert("exec".into(), jail.exec.clone().into());
        a.insert("jailer".into(), jail.jailer.into());
        a.insert("uid".into(), rec.uid.into());
        a.insert("gid".into(), rec.gid.into());
        Some(a)
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&JailAttrs>,
        _: &Documents,
    ) {
        let t = crate::resources::tenant_mut(obs, id);
        if let Some(rec) = t.record.as_mut() {
            rec.jail = after.map(|a| JailRecord {
                exec: a.exec.clone(),
                jailer: a.jailer,
            });
        }
    }

    fn identity(&self, a: &JailAttrs) -> Vec<(&'static str, String)> {
        vec![("uid", a.uid.to_string()), ("gid", a.gid.to_string())]
    }

    fn check(&self, ctx: &PlanCtx, id: Option<&TenantId>, a: &JailAttrs) -> Result<(), String> {
        let id = id.ok_or("not a tenant address")?;
        let base = ctx.layout.jail(id).display().to_string();
        if a.chroot_base != base || a.exec != exec_name(&ctx.node.firecracker.binary) {
            return Err(format!(
                "chroot_base and exec are always {base} and the Firecracker binary's name"
            ));
        }
        let (lo, hi) = (ctx.node.tenants.uid_min, ctx.node.tenants.uid_max);
        if !(lo..=hi).contains(&a.uid) || !(lo..=hi).contains(&a.gid) {
            return Err(format!(
                "uid and gid must be in the tenant range {lo}..={hi}"
            ));
        }
        Ok(())
    }
}

/// The files a VM's jail gets beside what the jailer makes: bind mounts
/// that must go before the tree can.
pub const STAGED: &[&str] = &[
    "vmlinux",
    "rootfs.ext4",
    "secrets.img",
    "data.ext4",
    "filter.bpf",
    "fc.log",
    "fc.metrics",
];

/// Removes the jailer's tree of a tenant (`<chroot_base>/<exec>`): the
/// jail root's tmpfs with its bind mounts (and all the tenant wrote there),
/// what an mvm before the tmpfs bind-mounted in the root itself, then the
/// tree, never crossing a mount.
pub fn clear(ctx: &ApplyCtx, id: &TenantId) -> HostResult {
    let layout = JailLayout::new(&ctx.node.state_dir, &ctx.node.firecracker.binary, id);
    ctx.host.mounts.unstage_jail(&layout.root)?;
    for f in STAGED {
        ctx.host.mounts.unmount(&layout.root.join(f))?;
    }
    let exec_dir = layout
        .chroot_base
        .join(exec_name(&ctx.node.firecracker.binary));
    ctx.host.files.remove_tree(&exec_dir)
}

/// Size of the (empty) secrets image a tenant without secrets gets.
const SECRETS_IMAGE: u64 = 1 << 20;

/// What a launch needs in its jail.
pub struct Stage<'a> {
    /// The config Firecracker is launched with, as written to `vm.json`.
    pub config_json: &'a [u8],
    /// Whether that config attaches the data volume (drive `data`).
    pub data_drive: bool,
    /// Whether the jailer makes the chroot (else Firecracker runs in the
    /// root unchrooted, and mvm makes its socket's directory).
    pub jailed: bool,
    pub seccomp: crate::spec::SeccompLevel,
    pub data_mib: Option<u32>,
    /// The secrets generation it gets (checked against its plan); none:
    /// the empty drive.
    pub secrets: Option<u64>,
}

/// The jail as staged for one launch.
pub struct Staged {
    pub layout: JailLayout,
    /// The strict filter's path in the jail, when the VM gets one.
    pub seccomp_filter: Option<String>,
}

/// Builds a VM's jail root afresh for a launch (a reused jailer id fails):
/// whatever a previous launch left is cleared, then the root is its own
/// bounded tmpfs holding the kernel and rootfs bound read-only from the
/// store, the secrets image (the planned generation's, or an empty one)
/// bound read-only from the tenant's tmpfs
/// (never copied to disk), the persistent data volume bound read-write
/// (made on first use), the strict seccomp filter when the tenant runs
/// under it, and the config as `vm.json`.
pub fn stage(ctx: &ApplyCtx, id: &TenantId, rec: &TenantRecord, req: &Stage) -> HostResult<Staged> {
    let at = |what: &str| HostError::other_on("stage the jail of", id, what.to_string());
    let artifact = rec
        .artifact
        .as_ref()
        .ok_or_else(|| at("its artifact is not built"))?;
    let file = |name: &str| {
        artifact
            .files
            .iter()
            .find(|f| f.name == name)
            .map(|f| std::path::PathBuf::from(&f.store_path))
            .ok_or_else(|| at(&format!("its artifact has no {name}")))
    };
    let fc = &ctx.node.firecracker;
    let layout = JailLayout::new(&ctx.node.state_dir, &fc.binary, id);
    clear(ctx, id)?;
    let rel_root = layout
        .root
        .strip_prefix(ctx.layout.root())
        .map_err(|_| at("the jail is outside the state dir"))?;
    ctx.host
        .files
        .ensure_dir(ctx.layout.root(), rel_root, 0o700, 0, 0)?;
    let mut binds = vec![
        ("vmlinux".to_string(), file("vmlinux")?, false),
        ("rootfs.ext4".to_string(), file("rootfs.ext4")?, false),
    ];
    let secrets = ctx.layout.secrets(id);
    let image = match req.secrets {
        Some(g) => secrets
            .join(crate::security::secrets::generation_dir(g))
            .join(crate::security::secrets::IMAGE),
        None => {
            ctx.host
                .mounts
                .tmpfs_file(&secrets, "secrets.img", SECRETS_IMAGE, rec.gid)?;
            secrets.join("secrets.img")
        }
    };
    binds.push(("secrets.img".into(), image, false));
    // Firecracker's log and metrics: the FIFOs the run's pump reads
    // (`state/logs.rs`), never a file it could grow.
    let logs = ctx.layout.logs_dir(id);
    binds.push((
        "fc.log".into(),
        logs.join(crate::state::logs::LOG_FIFO),
        true,
    ));
    binds.push((
        "fc.metrics".into(),
        logs.join(crate::state::logs::METRICS_FIFO),
        true,
    ));
    if req.data_drive {
        let data = ctx.layout.data_volume(id);
        let mib = u64::from(req.data_mib.unwrap_or(0));
        ctx.host
            .files
            .ensure_volume(&data, mib << 20, rec.uid, rec.gid)?;
        binds.push(("data.ext4".into(), data, true));
    }
    let seccomp_filter =
        crate::security::seccomp::filter_file(req.seccomp, fc).map(|(host, name)| {
            binds.push((name.to_string(), host, false));
            format!("/{name}")
        });
    ctx.host.mounts.stage_jail(&JailStage {
        root: layout.root.clone(),
        size: JAIL_TMPFS_BYTES,
        inodes: JAIL_TMPFS_INODES,
        binds,
        files: vec![("vm.json".into(), req.config_json.to_vec(), 0o644)],
        // No jailer to make it: the socket's directory.
        dirs: if req.jailed {
            Vec::new()
        } else {
            vec!["run".into()]
        },
    })?;
    Ok(Staged {
        layout,
        seccomp_filter,
    })
}

impl Provider<JailAttrs> for Jail {
    /// The chroot base exists (the tenant's tree has it); what the jail
    /// runs as is recorded. Its contents are made fresh for each launch.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        _: Option<&JailAttrs>,
        after: &JailAttrs,
        _: &Documents,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        let rel = ctx
            .layout
            .jail(id)
            .strip_prefix(ctx.layout.root())
            .map(Path::to_path_buf)
            .map_err(|_| {
                HostError::other("create", &ctx.layout.jail(id), "not below the state dir")
            })?;
        ctx.host
            .files
            .ensure_dir(ctx.layout.root(), &rel, 0o700, 0, 0)?;
        let jail = JailRecord {
            exec: after.exec.clone(),
            jailer: after.jailer,
        };
        ctx.update_record(id, |rec| rec.jail = Some(jail))
    }

    /// Unmounts and removes what a launch put in the jail.
    fn delete(&self, ctx: &ApplyCtx, id: Option<&TenantId>, _: Option<&JailAttrs>) -> HostResult {
        let id = id.expect("a tenant address");
        clear(ctx, id)?;
        if ctx.host.files.exists(&ctx.layout.record(id)) {
            ctx.update_record(id, |rec| rec.jail = None)?;
        }
        Ok(())
    }
}
