//! `tenant.<id>.jail`: the jailer chroot base, staged with what the VM
//! needs (the artifact's kernel and rootfs, the secrets image bind-mounted
//! read-only). It runs Firecracker as the tenant's own uid/gid. Without a
//! jailer binary mvm launches Firecracker directly, and the plan says so.

use crate::host::HostResult;
use crate::observed::Observed;
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, PlanCtx, Provider, Resource, Scope, Subject,
};
use crate::spec::TenantSpec;
use crate::spec::jail::JailLayout;
use crate::spec::jail::exec_name;
use crate::spec::types::TenantId;
use crate::state::JailRecord;
use serde::Deserialize;

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
        let rel = std::path::Path::new("tenants")
            .join(id.as_str())
            .join("jail");
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
