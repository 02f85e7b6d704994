//! Filing a finding under its tenant.

use crate::observed::{DirObs, Observed, ObservedTenant};
use crate::spec::types::TenantId;
use nix::sys::stat::FileStat;

pub(super) fn tenant<'a>(obs: &'a mut Observed, id: &TenantId) -> &'a mut ObservedTenant {
    obs.tenants.entry(id.clone()).or_default()
}

pub(super) fn dir_obs(st: &FileStat) -> DirObs {
    DirObs {
        mode: format!("{:04o}", st.st_mode & 0o7777),
        uid: st.st_uid,
        gid: st.st_gid,
    }
}
