//! `tenant.<id>.secrets`: a tmpfs at `<state>/tenants/<id>/secrets`, mode
//! 0700, `nodev,noexec,nosuid`, size-limited. Secrets never touch disk; the
//! plan shows the mount, never its contents. Options and size change in
//! place with a remount.

use crate::host::{HostError, HostResult, TmpfsOptions};
use crate::observed::{MountObs, Observed};
use crate::resources::values::{FileMode, TmpfsSize};
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, PlanCtx, Provider, Resource, Scope, Subject,
};
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use serde::Deserialize;

pub struct Secrets;

pub const FSTYPE: &str = "tmpfs";
/// The mount flags mvm requires, sorted as the probe reports them.
pub const FLAGS: &[&str] = &["nodev", "noexec", "nosuid"];
pub const MODE: &str = "0700";
pub const SIZE: &str = crate::security::secrets::TMPFS_SIZE;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsAttrs {
    pub path: String,
    pub fstype: String,
    /// Comma-separated mount flags.
    pub options: String,
    pub mode: FileMode,
    pub size: TmpfsSize,
}

impl Resource for Secrets {
    type Attrs = SecretsAttrs;
    const WORD: &'static str = "secrets";
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &["path", "fstype"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Tenant("dirs")]
    }

    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        let mut d = Desired::default();
        d.set("path", ctx.layout.secrets(t.id()).display().to_string());
        d.set("fstype", FSTYPE);
        d.set("options", FLAGS.join(","));
        d.set("mode", MODE);
        d.set("size", SIZE);
        Some(d)
    }

    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs> {
        let At::Tenant(id, obs) = at else { return None };
        let m = obs.secrets.as_ref()?;
        let sup = |key: &str| {
            m.super_options
                .iter()
                .find_map(|o| o.strip_prefix(key).map(str::to_string))
        };
        let mut a = Attrs::new();
        a.insert(
            "path".into(),
            ctx.layout.secrets(id).display().to_string().into(),
        );
        a.insert("fstype".into(), m.fstype.clone().into());
        let flags: Vec<&str> = FLAGS
            .iter()
            .copied()
            .filter(|f| m.options.iter().any(|o| o == f))
            .collect();
        a.insert("options".into(), flags.join(",").into());
        // The root directory's real mode: what a remount leaves and a chmod
        // changes; the `mode=` option only says what it was mounted with.
        let mode = match &m.root {
            Some(root) => Some(root.mode.clone()),
            None => sup("mode=").map(|m| format!("{m:0>4}")),
        };
        a.insert("mode".into(), mode.into());
        a.insert("size".into(), sup("size=").into());
        Some(a)
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&SecretsAttrs>,
        _: &Documents,
    ) {
        let t = crate::resources::tenant_mut(obs, id);
        t.secrets = after.map(|a| {
            let mut options: Vec<String> = a.options.split(',').map(str::to_string).collect();
            options.push("rw".into());
            options.sort();
            MountObs {
                fstype: a.fstype.clone(),
                options,
                super_options: vec![format!("mode={:o}", a.mode.0), format!("size={}", a.size.0)],
                root: Some(crate::observed::DirObs {
                    mode: a.mode.octal(),
                    uid: 0,
                    gid: 0,
                }),
            }
        });
    }

    fn check(&self, ctx: &PlanCtx, id: Option<&TenantId>, a: &SecretsAttrs) -> Result<(), String> {
        let id = id.ok_or("not a tenant address")?;
        let path = ctx.layout.secrets(id).display().to_string();
        let options = FLAGS.join(",");
        for (name, have, want) in [
            ("path", a.path.as_str(), path.as_str()),
            ("fstype", &a.fstype, FSTYPE),
            ("options", &a.options, &options),
            ("mode", &a.mode.octal(), MODE),
            ("size", &a.size.0, SIZE),
        ] {
            if have != want {
                return Err(format!("{name} is {have:?}; mvm only ever plans {want:?}"));
            }
        }
        Ok(())
    }
}

impl Provider<SecretsAttrs> for Secrets {
    /// Mounts the tmpfs, or remounts it with the planned options. The
    /// mount point comes from the tenant id, never from the plan; size and
    /// mode were checked when the plan was decoded, so a hand-edited plan
    /// cannot smuggle mount options.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        _: Option<&SecretsAttrs>,
        after: &SecretsAttrs,
        _: &Documents,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        let target = ctx.layout.secrets(id);
        if after.path != target.display().to_string() || after.fstype != FSTYPE {
            return Err(HostError::other(
                "mount tmpfs on",
                &target,
                format!(
                    "the plan asks for a {} at {}; this tenant's secrets are a {FSTYPE} here",
                    after.fstype, after.path
                ),
            ));
        }
        let opts = TmpfsOptions {
            size: after.size.0.clone(),
            mode: after.mode.octal(),
        };
        ctx.host.mounts.mount_tmpfs(&target, &opts)
    }

    /// Unmounts it: the secrets are gone with the mount.
    fn delete(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        _: Option<&SecretsAttrs>,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        ctx.host.mounts.unmount(&ctx.layout.secrets(id))
    }
}
