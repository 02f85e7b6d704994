//! `tenant.<id>.nft`: the tenant's elements in mvm's nftables sets: its
//! (tap, MAC, IP) binding for the anti-spoofing guard, its packet mark
//! (= its uid, the identity the metadata endpoint trusts), and membership of
//! the metadata and gateway-SSH allow sets. Elements are added and removed
//! atomically, so every change is in place.

use super::{Attrs, Desired, ResolvedTenant, attr_bool, attr_str, attr_u64};
use crate::observed::{ObservedTenant, TenantNftObs};
use crate::spec::types::TenantId;
use serde_json::Value;

pub const REPLACE_ON: &[&str] = &[];

pub fn desired(t: &ResolvedTenant) -> Desired {
    let mut d = Desired::default();
    d.set("tap", t.id().tap_name());
    d.set("ip", t.ip.to_string());
    d.set("mac", t.mac.to_string());
    d.set("mark", t.uid);
    d.set("metadata", t.spec.metadata);
    d.set("ssh_from_gateway", t.spec.ssh_from_gateway);
    d
}

pub fn observed(id: &TenantId, obs: &ObservedTenant) -> Option<Attrs> {
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

pub fn simulate(t: &mut ObservedTenant, after: Option<&Attrs>) {
    t.nft = after.map(|a| TenantNftObs {
        ip: attr_str(a, "ip").parse().ok(),
        mac: attr_str(a, "mac").parse().ok(),
        mark: Some(attr_u64(a, "mark") as u32),
        metadata: attr_bool(a, "metadata"),
        ssh_from_gateway: attr_bool(a, "ssh_from_gateway"),
    });
}
