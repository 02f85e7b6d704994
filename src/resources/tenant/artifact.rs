//! `tenant.<id>.artifact`: the Nix build of the tenant's flake in the
//! artifact contract's shape (`host/vm/nixbuild.rs`: `vmlinux`,
//! `rootfs.ext4`, `config.json` in `packages.<system>.mvm-<profile>`). A
//! different flake, profile or lock is a different build, so those changes
//! replace it; the store path is only known once Nix has built it. A build
//! already recorded, whose store path is still in the store, is not built
//! again. A tenant that pins `lock` gets its build only if the flake's lock
//! hash is that one.

use crate::host::{HostError, HostResult};
use crate::observed::{Observed, ObservedTenant};
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, PlanCtx, Provider, ResolvedTenant, Resource,
    Scope, Subject,
};
use crate::security::audit::AuditDetails;
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use crate::state::ArtifactRecord;
use crate::state::record::ArtifactFile;
use serde::Deserialize;
use std::path::Path;

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
    obs.filter(|o| !o.artifact_gone)
        .and_then(|o| o.record.as_ref())
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

    /// A flake reference without `rev=` and no `lock`: each build may take
    /// a newer commit, so two nodes (or two restarts) can run different
    /// code under the same desired state.
    fn warnings(&self, _: &PlanCtx, view: &crate::resources::NodeView) -> Vec<String> {
        view.tenants
            .iter()
            .filter(|t| t.spec.lock.is_none() && !crate::spec::types::flake_ref_is_pinned(&t.spec.flake_ref))
            .map(|t| {
                format!(
                    "tenant {}'s flake_ref {:?} is not pinned (no rev=, no lock): each build may take a newer commit; add ?rev=<40-hex commit> or a lock",
                    t.id(),
                    t.spec.flake_ref
                )
            })
            .collect()
    }

    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
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
                // A rollback names the build it must land on.
                match &spec.store_path {
                    Some(p) => d.set("store_path", p.clone()),
                    None => d.unknown("store_path"),
                }
            }
            (None, None) => {
                d.unknown("lock");
                d.unknown("store_path");
            }
        }
        Some(d)
    }

    fn observed(&self, _: &PlanCtx, at: At) -> Option<Attrs> {
        let At::Tenant(_, obs) = at else { return None };
        if obs.artifact_gone {
            return None;
        }
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
        let t = crate::resources::tenant_mut(obs, id);
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
                files: Vec::new(),
            }
        });
    }

    fn blocked(&self, ctx: &PlanCtx, _: Subject) -> Option<String> {
        let nix = &ctx.node.nix;
        let b = &ctx.observed.binaries;
        match nix.builder.as_str() {
            "local" if !b.nix => Some(format!(
                "Nix is not installed at {} (apt install nix-bin)",
                nix.binary.display()
            )),
            "local" if !b.nix_build_users => Some(
                "Nix has no build users (group nixbld), so builds would run as root; create them or set nix.builder = \"container\"".into(),
            ),
            _ => None,
        }
    }

    fn check(&self, _: &PlanCtx, _: Option<&TenantId>, a: &ArtifactAttrs) -> Result<(), String> {
        crate::spec::types::check_flake_ref(&a.flake_ref).map_err(|e| format!("flake_ref {e}"))?;
        if !crate::spec::Profile::NAMES.contains(&a.profile.as_str()) {
            return Err(format!(
                "profile {:?} is not one of {:?}",
                a.profile,
                crate::spec::Profile::NAMES
            ));
        }
        if let Some(l) = &a.lock {
            crate::spec::types::check_lock_hash(l).map_err(|e| format!("lock {e}"))?;
        }
        Ok(())
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

impl Provider<ArtifactAttrs> for Artifact {
    /// Locks, checks a pinned lock, builds, writes the build log to the
    /// tenant's `logs/build.log`, and records lock, store paths and
    /// sha256s in `tenant.json`.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        _: Option<&ArtifactAttrs>,
        after: &ArtifactAttrs,
        _: &Documents,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        let nix = &ctx.node.nix;
        let what = crate::host::vm::nixbuild::installable(&after.flake_ref, &after.profile);
        let lock = ctx.host.builds.flake_lock(nix, &after.flake_ref)?;
        if let Some(pinned) = &after.lock
            && *pinned != lock
        {
            return Err(HostError::other_on(
                "build",
                &what,
                format!(
                    "the flake's lock is {lock}, but tenant {id} pins {pinned}: refusing to build another revision"
                ),
            ));
        }
        let log = ctx.layout.build_log(id);
        let built = match ctx.host.builds.build(nix, &after.flake_ref, &after.profile) {
            Ok(b) => b,
            Err(e) => {
                let _ = ctx
                    .host
                    .files
                    .write_file(&log, e.to_string().as_bytes(), 0o600);
                return Err(e);
            }
        };
        ctx.host.files.write_file(&log, &built.log, 0o600)?;
        // A plan that knows the store path (a rollback) gets exactly that
        // build, or none.
        if let Some(want) = &after.store_path
            && Path::new(want) != built.out
        {
            return Err(HostError::other_on(
                "build",
                &what,
                format!(
                    "it produced {}, but tenant {id} is rolled back to {want}: refusing to run another build",
                    built.out.display()
                ),
            ));
        }
        let artifact = ArtifactRecord {
            flake_ref: after.flake_ref.clone(),
            profile: after.profile.clone(),
            lock,
            store_path: built.out.display().to_string(),
            files: built
                .files
                .iter()
                .map(|(name, p, sha)| ArtifactFile {
                    name: name.clone(),
                    store_path: p.display().to_string(),
                    sha256: sha.clone(),
                })
                .collect(),
        };
        ctx.update_record(id, |rec| rec.artifact = Some(artifact))
    }

    /// Forgets the build (the store keeps it until Nix collects garbage).
    fn delete(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        _: Option<&ArtifactAttrs>,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        if !ctx.host.files.exists(&ctx.layout.record(id)) {
            return Ok(());
        }
        ctx.update_record(id, |rec| rec.artifact = None)
    }
}
