//! `tenant.<id>.nft`: the tenant's elements in mvm's nftables sets: its
//! (tap, MAC, IP) binding for the anti-spoofing guard, its packet mark
//! (= its uid, the identity the metadata endpoint trusts), and membership of
//! the metadata and gateway-SSH allow sets. Elements are added and removed
//! atomically, so every change is in place.

use super::{At, Attrs, Ctx, Dep, Desired, Documents, Resource, Scope, Subject};
use crate::observed::{Observed, TenantNftObs};
use crate::security::audit::AuditDetails;
use crate::spec::TenantSpec;
use crate::spec::types::{MacAddr, TenantId};
use serde::Deserialize;
use serde_json::Value;
use std::net::Ipv4Addr;

pub struct TenantNft;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantNftAttrs {
    pub tap: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub mark: u32,
    pub metadata: bool,
    pub ssh_from_gateway: bool,
}

impl Resource for TenantNft {
    type Attrs = TenantNftAttrs;
    const WORD: &'static str = "nft";
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &[];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Node("nft"), Dep::Tenant("dirs")]
    }

    fn desired(&self, _: &Ctx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        let mut d = Desired::default();
        d.set("tap", t.id().tap_name());
        d.set("ip", t.ip.to_string());
        d.set("mac", t.mac.to_string());
        d.set("mark", t.uid);
        d.set("metadata", t.spec.metadata);
        d.set("ssh_from_gateway", t.spec.ssh_from_gateway);
        Some(d)
    }

    fn observed(&self, _: &Ctx, at: At) -> Option<Attrs> {
        let At::Tenant(id, obs) = at else { return None };
        let n = obs.nft.as_ref()?;
        let mut a = Attrs::new();
        a.insert("tap".into(), id.tap_name().into());
        a.insert(
            "ip".into(),
            n.ip.map_or(Value::Null, |ip| ip.to_string().into()),
        );
        a.insert(
            "mac".into(),
            n.mac.map_or(Value::Null, |m| m.to_string().into()),
        );
        a.insert("mark".into(), n.mark.map_or(Value::Null, Value::from));
        a.insert("metadata".into(), n.metadata.into());
        a.insert("ssh_from_gateway".into(), n.ssh_from_gateway.into());
        Some(a)
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&TenantNftAttrs>,
        _: &Documents,
    ) {
        let t = super::tenant_mut(obs, id);
        t.nft = after.map(|a| TenantNftObs {
            ip: Some(a.ip),
            mac: Some(a.mac),
            mark: Some(a.mark),
            metadata: a.metadata,
            ssh_from_gateway: a.ssh_from_gateway,
        });
    }

    fn audit(&self, a: &TenantNftAttrs) -> AuditDetails {
        [
            ("ip".to_string(), a.ip.to_string()),
            ("mac".to_string(), a.mac.to_string()),
        ]
        .into()
    }
}
