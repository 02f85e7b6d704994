//! `tenant.<id>.nft`: the tenant's elements in mvm's nftables sets, keyed
//! by its tap: its (tap, MAC, IP) binding for the IPv4 and ARP guards, its
//! packet mark (= its uid, the identity the metadata service trusts), and
//! membership of the metadata and gateway-SSH sets. Adding or removing a
//! tenant is a handful of element adds or deletes in one small
//! transaction; the chains never change. Every change is in place.

use crate::host::{HostError, HostResult};
use crate::net::ruleset;
use crate::observed::{Observed, TenantNftObs};
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, PlanCtx, Provider, Resource, Scope, Subject,
};
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
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub mark: Option<u32>,
    pub metadata: bool,
    pub ssh_from_gateway: bool,
    /// Each element, as `net::ruleset::element_display` prints it.
    pub elements: Vec<String>,
}

impl Resource for TenantNft {
    type Attrs = TenantNftAttrs;
    const WORD: &'static str = "nft";
    const NETWORK: bool = true;
    const DELETES_TOGETHER: bool = true;
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &[];
    const UNIQUE: &'static [&'static str] = &["ip", "mac", "mark"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Node("nft"), Dep::Tenant("dirs")]
    }

    fn desired(&self, _: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
        let tap = t.id().tap_name();
        let mut d = Desired::default();
        d.set("tap", tap.clone());
        d.set("ip", t.ip.to_string());
        d.set("mac", t.mac.to_string());
        d.set("mark", t.uid);
        d.set("metadata", t.spec.metadata);
        d.set("ssh_from_gateway", t.spec.ssh_from_gateway);
        d.set(
            "elements",
            ruleset::tenant_element_lines(
                &tap,
                t.mac,
                t.ip,
                t.uid,
                t.spec.metadata,
                t.spec.ssh_from_gateway,
            ),
        );
        Some(d)
    }

    fn blocked(&self, ctx: &PlanCtx, _: Subject) -> Option<String> {
        crate::resources::node::nft::foreign(ctx)
    }

    /// Elements in another node's tables are not this node's.
    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs> {
        let At::Tenant(id, obs) = at else { return None };
        let n = obs.nft.as_ref()?;
        if crate::resources::node::nft::foreign(ctx).is_some() {
            return None;
        }
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
        a.insert("elements".into(), n.elements.clone().into());
        Some(a)
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&TenantNftAttrs>,
        _: &Documents,
    ) {
        let t = crate::resources::tenant_mut(obs, id);
        t.nft = after.map(|a| TenantNftObs {
            ip: a.ip,
            mac: a.mac,
            mark: a.mark,
            metadata: a.metadata,
            ssh_from_gateway: a.ssh_from_gateway,
            elements: a.elements.clone(),
        });
    }

    /// The mark is the tenant's uid.
    fn identity(&self, a: &TenantNftAttrs) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        out.extend(a.ip.map(|ip| ("ip", ip.to_string())));
        out.extend(a.mac.map(|m| ("mac", m.to_string())));
        out.extend(a.mark.map(|m| ("uid", m.to_string())));
        out
    }

    fn check(
        &self,
        ctx: &PlanCtx,
        id: Option<&TenantId>,
        a: &TenantNftAttrs,
    ) -> Result<(), String> {
        let id = id.ok_or("not a tenant address")?;
        let (Some(ip), Some(mac), Some(mark)) = (a.ip, a.mac, a.mark) else {
            return Err("ip, mac and mark must all be set".into());
        };
        if a.tap != id.tap_name() {
            return Err(format!(
                "tap is {:?}; this tenant's tap is {}",
                a.tap,
                id.tap_name()
            ));
        }
        crate::state::record::check_in_tenant_range(ctx.node, "mark", mark)?;
        crate::state::record::check_address(ctx.node, ip, mac)?;
        let want =
            ruleset::tenant_element_lines(&a.tap, mac, ip, mark, a.metadata, a.ssh_from_gateway);
        if a.elements != want {
            return Err("elements are not the ones its ip, mac, mark and flags make".into());
        }
        Ok(())
    }

    fn audit(&self, a: &TenantNftAttrs) -> AuditDetails {
        let mut d = AuditDetails::new();
        if let Some(ip) = a.ip {
            d.insert("ip".into(), ip.to_string());
        }
        if let Some(mac) = a.mac {
            d.insert("mac".into(), mac.to_string());
        }
        d
    }
}

/// Tenants whose elements one transaction deletes at most (four
/// elements each: a few KiB of netlink messages).
const TOGETHER: usize = 64;

/// Elements as nft commands take them, from the lines a plan shows.
fn parsed(lines: &[String]) -> Vec<(&'static str, &'static str, &'static str, Value)> {
    lines
        .iter()
        .filter_map(|l| ruleset::element_parse(l))
        .collect()
}

impl Provider<TenantNftAttrs> for TenantNft {
    /// One transaction: the elements that went are deleted, the new ones
    /// added. The elements come from the tenant's identity, which
    /// `check` ties to what the plan shows.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        prior: Option<&TenantNftAttrs>,
        after: &TenantNftAttrs,
        _: &Documents,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        let (Some(ip), Some(mac), Some(mark)) = (after.ip, after.mac, after.mark) else {
            return Err(HostError::other_on(
                "add the elements of",
                id.tap_name(),
                "the plan gives no ip, mac or mark",
            ));
        };
        let want = ruleset::tenant_elements(
            &id.tap_name(),
            mac,
            ip,
            mark,
            after.metadata,
            after.ssh_from_gateway,
        );
        let have = prior.map(|p| parsed(&p.elements)).unwrap_or_default();
        let cmds = ruleset::element_changes(&have, &want);
        if cmds["nftables"].as_array().is_some_and(|c| c.is_empty()) {
            return Ok(());
        }
        ctx.host.firewall.nft_apply(&cmds)
    }

    /// Deletes the elements it had, in one transaction.
    fn delete(
        &self,
        ctx: &ApplyCtx,
        _: Option<&TenantId>,
        prior: Option<&TenantNftAttrs>,
    ) -> HostResult {
        let have = prior.map(|p| parsed(&p.elements)).unwrap_or_default();
        if have.is_empty() {
            return Ok(());
        }
        ctx.host
            .firewall
            .nft_apply(&ruleset::element_changes(&have, &[]))
    }

    /// Their elements in one transaction per `TOGETHER` tenants (an nft
    /// commit each would also make each link deleted meanwhile wait for
    /// the commit lock); should one fail, one transaction per tenant of
    /// it, each with its result.
    fn delete_together(
        &self,
        ctx: &ApplyCtx,
        items: &[(Option<&TenantId>, Option<&TenantNftAttrs>)],
    ) -> Vec<HostResult> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(TOGETHER) {
            let cmds: Vec<Value> = chunk
                .iter()
                .map(|(_, prior)| prior.map(|p| parsed(&p.elements)).unwrap_or_default())
                .flat_map(|have| ruleset::element_commands(&have, &[]))
                .collect();
            let whole = cmds.is_empty()
                || ctx
                    .host
                    .firewall
                    .nft_apply(&serde_json::json!({ "nftables": cmds }))
                    .is_ok();
            out.extend(chunk.iter().map(|(id, prior)| {
                if whole {
                    Ok(())
                } else {
                    self.delete(ctx, *id, *prior)
                }
            }));
        }
        out
    }
}
