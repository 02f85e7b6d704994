//! Resolving tenants: deciding the values desired.json may leave out — IP,
//! MAC and uid/gid. A value once recorded for a tenant is kept; new ones are
//! the lowest free, so the result depends only on the inputs.

use super::PlanError;
use crate::observed::Observed;
use crate::resources::ResolvedTenant;
use crate::spec::types::{MacAddr, TenantId};
use crate::spec::{DesiredState, NodeConfig};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

pub fn resolve(
    desired: &DesiredState,
    node: &NodeConfig,
    observed: &Observed,
) -> Result<Vec<ResolvedTenant>, PlanError> {
    let wanted: HashSet<&TenantId> = desired.tenants.iter().map(|t| &t.tenant_id).collect();
    let record = |id: &TenantId| observed.tenants.get(id).and_then(|t| t.record.as_ref());

    // Addresses held by tenants that stay on the node without being in
    // desired.json (kept, or deleted by this very plan) are off limits.
    let mut ip_holder: HashMap<Ipv4Addr, &TenantId> = HashMap::new();
    let mut mac_holder: HashMap<MacAddr, &TenantId> = HashMap::new();
    let mut used_uids: HashSet<u32> = HashSet::new();
    for (id, t) in &observed.tenants {
        if let Some(r) = &t.record {
            used_uids.insert(r.uid);
            if !wanted.contains(id) {
                ip_holder.insert(r.ip, id);
                mac_holder.insert(r.mac, id);
            }
        }
    }

    // Pass 1: explicit IPs.
    let mut ips: Vec<Option<Ipv4Addr>> = vec![None; desired.tenants.len()];
    for (i, t) in desired.tenants.iter().enumerate() {
        if let Some(ip) = t.ip {
            if let Some(holder) = ip_holder.get(&ip) {
                return Err(PlanError::AddressInUse {
                    tenant: t.tenant_id.clone(),
                    ip,
                    holder: (*holder).clone(),
                });
            }
            ip_holder.insert(ip, &t.tenant_id);
            ips[i] = Some(ip);
        }
    }
    // Pass 2: recorded IPs, unless another tenant now claims them.
    for (i, t) in desired.tenants.iter().enumerate() {
        if ips[i].is_none()
            && let Some(r) = record(&t.tenant_id)
            && !ip_holder.contains_key(&r.ip)
        {
            ip_holder.insert(r.ip, &t.tenant_id);
            ips[i] = Some(r.ip);
        }
    }
    // Pass 3: the lowest free host address.
    let subnet = node.bridge.subnet;
    let mut free = subnet.hosts().filter(|a| *a != node.bridge.gateway);
    for (i, t) in desired.tenants.iter().enumerate() {
        if ips[i].is_none() {
            let ip = free
                .by_ref()
                .find(|a| !ip_holder.contains_key(a))
                .ok_or_else(|| PlanError::SubnetFull {
                    subnet: subnet.to_string(),
                    tenant: t.tenant_id.clone(),
                })?;
            ip_holder.insert(ip, &t.tenant_id);
            ips[i] = Some(ip);
        }
    }

    let mut next_uid = node.tenants.uid_min;
    let mut out = Vec::with_capacity(desired.tenants.len());
    for (t, ip) in desired.tenants.iter().zip(ips) {
        let ip = ip.expect("every tenant has an IP after pass 3");
        let rec = record(&t.tenant_id);
        let mac = t
            .mac
            .or_else(|| rec.filter(|r| r.ip == ip).map(|r| r.mac))
            .unwrap_or_else(|| MacAddr::from_ipv4(ip));
        if let Some(holder) = mac_holder.get(&mac)
            && *holder != &t.tenant_id
        {
            return Err(PlanError::MacInUse {
                tenant: t.tenant_id.clone(),
                mac: mac.to_string(),
                holder: (*holder).clone(),
            });
        }
        mac_holder.insert(mac, &t.tenant_id);
        let (uid, gid) = match rec {
            Some(r) => (r.uid, r.gid),
            None => {
                while used_uids.contains(&next_uid) {
                    next_uid += 1;
                }
                if next_uid > node.tenants.uid_max {
                    return Err(PlanError::UidRangeFull {
                        lo: node.tenants.uid_min,
                        hi: node.tenants.uid_max,
                        tenant: t.tenant_id.clone(),
                    });
                }
                used_uids.insert(next_uid);
                (next_uid, next_uid)
            }
        };
        out.push(ResolvedTenant {
            spec: t.clone(),
            ip,
            mac,
            uid,
            gid,
        });
    }
    Ok(out)
}
