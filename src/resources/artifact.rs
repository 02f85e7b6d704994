//! `tenant.<id>.artifact`: the Nix build of the tenant's flake (kernel and
//! root filesystem) and the GC root that keeps it. A different flake,
//! profile or lock is a different build, so those changes replace it; the
//! store path is only known once Nix has built it.

use super::{Attrs, Desired, ResolvedTenant, attr_str};
use crate::observed::{ObservedTenant, hex};
use crate::state::ArtifactRecord;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const REPLACE_ON: &[&str] = &["flake_ref", "profile", "lock"];

pub fn desired(t: &ResolvedTenant, obs: Option<&ObservedTenant>) -> Desired {
    let mut d = Desired::default();
    let spec = &t.spec;
    d.set("flake_ref", spec.flake_ref.clone());
    d.set("profile", spec.profile.as_str());
    let built = last_build(t, obs);
    match (&spec.lock, built) {
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
    d
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

pub fn observed(obs: &ObservedTenant) -> Option<Attrs> {
    let a = obs.record.as_ref()?.artifact.as_ref()?;
    let mut out = Attrs::new();
    out.insert("flake_ref".into(), a.flake_ref.clone().into());
    out.insert("profile".into(), a.profile.clone().into());
    out.insert("lock".into(), a.lock.clone().into());
    out.insert("store_path".into(), a.store_path.clone().into());
    Some(out)
}

pub fn simulate(t: &mut ObservedTenant, after: Option<&Attrs>) {
    let Some(rec) = t.record.as_mut() else { return };
    rec.artifact = after.map(|a| {
        let flake_ref = attr_str(a, "flake_ref");
        let profile = attr_str(a, "profile");
        let digest = hex(&Sha256::digest(format!("{flake_ref}#{profile}").as_bytes()));
        let lock = match a.get("lock") {
            Some(Value::String(l)) => l.clone(),
            _ => digest.clone(),
        };
        let store_path = match a.get("store_path") {
            Some(Value::String(p)) => p.clone(),
            _ => format!("/nix/store/{}-mvm-{profile}", &digest[..32]),
        };
        ArtifactRecord {
            flake_ref,
            profile,
            lock,
            store_path,
        }
    });
}
