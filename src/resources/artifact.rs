//! `tenant.<id>.artifact`: the Nix build of the tenant's flake (kernel and
//! root filesystem) and the GC root that keeps it. A different flake,
//! profile or lock is a different build, so those changes replace it; the
//! store path is only known once Nix has built it.

use super::{At, Attrs, Ctx, Dep, Desired, Documents, ResolvedTenant, Resource, Scope, Subject};
use crate::observed::{Observed, ObservedTenant};
use crate::security::audit::AuditDetails;
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use crate::state::ArtifactRecord;
use serde::Deserialize;

pub struct Artifact;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactAttrs {
    pub flake_ref: String,
    pub profile: String,
    /// Unknown until built, unless the spec pins it.
    pub lock: Option<String>,
    /// Unknown until built.
    pub store_path: Option<String>,
}

/// The recorded build this spec still asks for: the same flake and profile
/// keep their lock and store path unless the spec pins a different lock.
fn last_build<'a>(
    t: &ResolvedTenant,
    obs: Option<&'a ObservedTenant>,
) -> Option<&'a ArtifactRecord> {
    let spec = &t.spec;
    obs.and_then(|o| o.record.as_ref())
        .and_then(|r| r.artifact.as_ref())
        .filter(|a| a.flake_ref == spec.flake_ref && a.profile == spec.profile.as_str())
        .filter(|a| spec.lock.as_ref().is_none_or(|l| *l == a.lock))
}

/// The lock the tenant's build will have, if it is known before building.
pub fn planned_lock(t: &ResolvedTenant, obs: Option<&ObservedTenant>) -> Option<String> {
    last_build(t, obs)
        .map(|a| a.lock.clone())
        .or_else(|| t.spec.lock.clone())
}

impl Resource for Artifact {
    type Attrs = ArtifactAttrs;
    const WORD: &'static str = "artifact";
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &["flake_ref", "profile", "lock"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Tenant("dirs")]
    }

    fn desired(&self, ctx: &Ctx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        let obs = ctx.observed.tenant(t.id());
        let mut d = Desired::default();
        let spec = &t.spec;
        d.set("flake_ref", spec.flake_ref.clone());
        d.set("profile", spec.profile.as_str());
        match (&spec.lock, last_build(t, obs)) {
            (_, Some(a)) => {
                d.set("lock", a.lock.clone());
                d.set("store_path", a.store_path.clone());
            }
            (Some(lock), None) => {
                d.set("lock", lock.clone());
                d.unknown("store_path");
            }
            (None, None) => {
                d.unknown("lock");
                d.unknown("store_path");
            }
        }
        Some(d)
    }

    fn observed(&self, _: &Ctx, at: At) -> Option<Attrs> {
        let At::Tenant(_, obs) = at else { return None };
        let a = obs.record.as_ref()?.artifact.as_ref()?;
        let mut out = Attrs::new();
        out.insert("flake_ref".into(), a.flake_ref.clone().into());
        out.insert("profile".into(), a.profile.clone().into());
        out.insert("lock".into(), a.lock.clone().into());
        out.insert("store_path".into(), a.store_path.clone().into());
        Some(out)
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&ArtifactAttrs>,
        _: &Documents,
    ) {
        let t = super::tenant_mut(obs, id);
        let Some(rec) = t.record.as_mut() else { return };
        rec.artifact = after.map(|a| {
            let digest = crate::digest::sha256(format!("{}#{}", a.flake_ref, a.profile).as_bytes());
            ArtifactRecord {
                flake_ref: a.flake_ref.clone(),
                profile: a.profile.clone(),
                lock: a.lock.clone().unwrap_or_else(|| digest.clone()),
                store_path: a
                    .store_path
                    .clone()
                    .unwrap_or_else(|| format!("/nix/store/{}-mvm-{}", &digest[..32], a.profile)),
            }
        });
    }

    fn audit(&self, a: &ArtifactAttrs) -> AuditDetails {
        [
            ("flake_ref", Some(&a.flake_ref)),
            ("lock", a.lock.as_ref()),
            ("store_path", a.store_path.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.clone())))
        .collect()
    }
}
