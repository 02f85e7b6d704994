//! `tenant.<id>.secrets`: a tmpfs at `<state>/tenants/<id>/secrets`, mode
//! 0700, `nodev,noexec,nosuid`, size-limited. Secrets never touch disk; the
//! plan shows the mount, never its contents. Options and size change in
//! place with a remount.

use super::{Attrs, Ctx, Desired, ResolvedTenant, attr_str};
use crate::apply::context::ApplyCtx;
use crate::observed::{MountObs, ObservedTenant};
use crate::providers::host::{HostError, HostResult, TmpfsOptions};
use crate::spec::types::TenantId;

pub const REPLACE_ON: &[&str] = &["path", "fstype"];

pub const FSTYPE: &str = "tmpfs";
/// The mount flags mvm requires, sorted as the probe reports them.
pub const FLAGS: &[&str] = &["nodev", "noexec", "nosuid"];
pub const MODE: &str = "0700";
pub const SIZE: &str = "16384k";

pub fn desired(ctx: &Ctx, t: &ResolvedTenant) -> Desired {
    let mut d = Desired::default();
    d.set("path", ctx.layout.secrets(t.id()).display().to_string());
    d.set("fstype", FSTYPE);
    d.set("options", FLAGS.join(","));
    d.set("mode", MODE);
    d.set("size", SIZE);
    d
}

pub fn observed(ctx: &Ctx, id: &TenantId, obs: &ObservedTenant) -> Option<Attrs> {
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
    a.insert(
        "mode".into(),
        sup("mode=").map(|m| format!("{m:0>4}")).into(),
    );
    a.insert("size".into(), sup("size=").into());
    Some(a)
}

pub fn simulate(t: &mut ObservedTenant, after: Option<&Attrs>) {
    t.secrets = after.map(|a| {
        let mut options: Vec<String> = attr_str(a, "options")
            .split(',')
            .map(str::to_string)
            .collect();
        options.push("rw".into());
        options.sort();
        MountObs {
            fstype: attr_str(a, "fstype"),
            options,
            super_options: vec![
                format!("mode={}", attr_str(a, "mode").trim_start_matches('0')),
                format!("size={}", attr_str(a, "size")),
            ],
        }
    });
}

/// Mounts the tmpfs, or remounts it with the planned options. The mount
/// point comes from the tenant id, never from the plan; size and mode must
/// be plain values, so a hand-edited plan cannot smuggle mount options.
pub fn apply(ctx: &ApplyCtx, id: &TenantId, after: &Attrs) -> HostResult {
    let target = ctx.layout.secrets(id);
    let (size, mode) = (attr_str(after, "size"), attr_str(after, "mode"));
    let size_ok = size
        .strip_suffix(['k', 'm', 'g'])
        .unwrap_or(&size)
        .bytes()
        .all(|b| b.is_ascii_digit())
        && !size.is_empty();
    let mode_ok = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let path_ok = attr_str(after, "path") == target.display().to_string();
    if !(size_ok && mode_ok && path_ok) {
        return Err(HostError::new(
            "mount tmpfs on",
            &target,
            std::io::Error::other(format!(
                "the plan's secrets options are not valid (path, size {size:?}, mode {mode:?})"
            )),
        ));
    }
    ctx.host.mount_tmpfs(&target, &TmpfsOptions { size, mode })
}

/// Unmounts it: the secrets are gone with the mount.
pub fn delete(ctx: &ApplyCtx, id: &TenantId) -> HostResult {
    ctx.host.unmount(&ctx.layout.secrets(id))
}
