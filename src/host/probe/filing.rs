//! Filing a finding under its tenant.

use crate::observed::{DirObs, Observed, ObservedTenant};
use crate::spec::types::TenantId;

pub(super) fn tenant<'a>(obs: &'a mut Observed, id: &TenantId) -> &'a mut ObservedTenant {
    obs.tenants.entry(id.clone()).or_default()
}

pub(super) fn dir_obs(st: &crate::host::fs::beneath::Stat) -> DirObs {
    DirObs {
        mode: format!("{:04o}", st.mode & 0o7777),
        uid: st.uid,
        gid: st.gid,
    }
}

/// A staged generation's number and its manifest as read (`Ok(None)`:
/// none there).
pub type ManifestRead = (u64, Result<Option<Vec<u8>>, String>);

/// Files what a tenant's secrets tmpfs holds: each `gen-<n>` directory's
/// manifest (`Ok(None)`: none, a generation still being written or one a
/// killed command left), oldest first; a manifest that cannot be used is
/// reported and left out, never trusted.
pub fn file_secrets(
    tmpfs: &std::path::Path,
    manifests: Vec<ManifestRead>,
    ignored: &mut Vec<String>,
) -> Vec<crate::security::secrets::Manifest> {
    use crate::security::secrets::{Manifest, generation_dir};
    let mut out: Vec<Manifest> = Vec::new();
    for (n, read) in manifests {
        let path = tmpfs.join(generation_dir(n));
        match read.and_then(|b| b.map(|b| Manifest::parse(&b, n)).transpose()) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => ignored.push(format!(
                "{}: no manifest; not a whole generation",
                path.display()
            )),
            Err(e) => ignored.push(format!("{}: {e}", path.display())),
        }
    }
    out.sort_by_key(|m| m.generation);
    out
}
