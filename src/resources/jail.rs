//! `tenant.<id>.jail`: the jailer chroot base, staged with what the VM
//! needs (the artifact's kernel and rootfs, the secrets image bind-mounted
//! read-only). It runs Firecracker as the tenant's own uid/gid. Without a
//! jailer binary mvm launches Firecracker directly, and the plan says so.

use super::{Attrs, Ctx, Desired, ResolvedTenant, attr_bool, attr_str};
use crate::observed::ObservedTenant;
use crate::security::jailer::exec_name;
use crate::spec::types::TenantId;
use crate::state::JailRecord;

pub const REPLACE_ON: &[&str] = &["chroot_base", "exec", "jailer", "uid", "gid"];

pub fn desired(ctx: &Ctx, t: &ResolvedTenant) -> Desired {
    let mut d = Desired::default();
    d.set("chroot_base", ctx.layout.jail(t.id()).display().to_string());
    d.set("exec", exec_name(&ctx.node.firecracker.binary));
    d.set("jailer", ctx.observed.binaries.jailer);
    d.set("uid", t.uid);
    d.set("gid", t.gid);
    d
}

pub fn observed(ctx: &Ctx, id: &TenantId, obs: &ObservedTenant) -> Option<Attrs> {
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

pub fn simulate(t: &mut ObservedTenant, after: Option<&Attrs>) {
    if let Some(rec) = t.record.as_mut() {
        rec.jail = after.map(|a| JailRecord {
            exec: attr_str(a, "exec"),
            jailer: attr_bool(a, "jailer"),
        });
    }
}
