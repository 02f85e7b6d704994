//! `tenant.<id>.jail`: the jailer chroot base, staged with what the VM
//! needs (the artifact's kernel and rootfs, the secrets image bind-mounted
//! read-only). It runs Firecracker as the tenant's own uid/gid. Without a
//! jailer binary mvm launches Firecracker directly, and the plan says so.

use super::{At, Attrs, Ctx, Dep, Desired, Documents, Resource, Scope, Subject};
use crate::observed::Observed;
use crate::spec::TenantSpec;
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

    fn desired(&self, ctx: &Ctx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        let mut d = Desired::default();
        d.set("chroot_base", ctx.layout.jail(t.id()).display().to_string());
        d.set("exec", exec_name(&ctx.node.firecracker.binary));
        d.set("jailer", ctx.observed.binaries.jailer);
        d.set("uid", t.uid);
        d.set("gid", t.gid);
        Some(d)
    }

    fn observed(&self, ctx: &Ctx, at: At) -> Option<Attrs> {
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
        let t = super::tenant_mut(obs, id);
        if let Some(rec) = t.record.as_mut() {
            rec.jail = after.map(|a| JailRecord {
                exec: a.exec.clone(),
                jailer: a.jailer,
            });
        }
    }
}
