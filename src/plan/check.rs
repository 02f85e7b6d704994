//! Checking a saved plan before it is applied: apply takes its paths,
//! identities and limits from the plan, so a plan edited by hand must not
//! be able to ask for anything desired.json and node.toml could not. The
//! caller has already checked that the plan was made by this mvm, with this
//! node's config, against the host as it is now.

use super::{FORMAT_VERSION, Plan};
use crate::observed::Observed;
use crate::resources::{At, PlanCtx};
use crate::spec::NodeConfig;
use std::collections::HashMap;

/// Whether `version` (a plan's `format_version`) is one this mvm reads:
/// the same major version.
pub fn readable_version(version: &str) -> bool {
    let major = |v: &str| v.split('.').next().map(str::to_string);
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && major(version) == major(FORMAT_VERSION)
}

/// Every planned attribute checked by its kind, no two tenants sharing a
/// unique attribute (a uid, an IP, a MAC), and the apply context's cgroup2
/// mount the one this host has.
pub fn saved(plan: &Plan, node: &NodeConfig, observed: &Observed) -> Result<(), String> {
    let here = observed.cgroup.as_ref().map(|c| &c.mount);
    if plan.apply_context.cgroup_mount.as_ref() != here {
        return Err(format!(
            "apply_context.cgroup_mount is {}, but cgroup2 is {} on this host",
            show(plan.apply_context.cgroup_mount.as_deref()),
            show(here.map(|p| p.as_path()))
        ));
    }
    let ctx = PlanCtx::new(node, observed);
    // (kind, attribute, value) -> the tenant holding it.
    let mut holders: HashMap<(&str, &str, String), String> = HashMap::new();
    let mut claim = |kind: &'static str, attr: &'static str, value: String, who: String| {
        match holders.get(&(kind, attr, value.clone())) {
            Some(other) if *other != who => Err(format!(
                "tenants {other} and {who} would both have {attr} {value}; every tenant needs its own"
            )),
            _ => {
                holders.insert((kind, attr, value), who);
                Ok(())
            }
        }
    };
    for c in &plan.resource_changes {
        let Some(after) = &c.after else { continue };
        let kind = c.address.kind().get();
        kind.check(&ctx, &c.address, after)?;
        let who = c
            .address
            .tenant()
            .map(|t| t.to_string())
            .unwrap_or_default();
        for attr in kind.unique() {
            if let Some(v) = after.get(*attr).filter(|v| !v.is_null()) {
                claim(kind.word(), attr, v.to_string(), who.clone())?;
            }
        }
    }
    identities(plan, observed)?;
    // Tenants the plan keeps as they are hold their values too.
    for kept in &plan.kept_tenants {
        let Some(obs) = observed.tenants.get(&kept.tenant_id) else {
            continue;
        };
        for addr in &kept.resources {
            let kind = addr.kind().get();
            if kind.unique().is_empty() {
                continue;
            }
            let Some(attrs) = kind.observed(&ctx, At::Tenant(&kept.tenant_id, obs)) else {
                continue;
            };
            for attr in kind.unique() {
                if let Some(v) = attrs.get(*attr).filter(|v| !v.is_null()) {
                    claim(kind.word(), attr, v.to_string(), kept.tenant_id.to_string())?;
                }
            }
        }
    }
    Ok(())
}

/// Every identity fact (uid, gid, IP, MAC) a change carries is its
/// tenant's: the one the plan makes for it (the kind that defines
/// identities), else the one its record has. A hand-edited plan cannot
/// point a tenant's tap, rules or VM at another address, even a free one.
fn identities(plan: &Plan, observed: &Observed) -> Result<(), String> {
    use std::collections::BTreeMap;
    let mut planned: HashMap<&crate::spec::types::TenantId, BTreeMap<&str, String>> =
        HashMap::new();
    for c in &plan.resource_changes {
        let (Some(after), Some(id)) = (&c.after, c.address.tenant()) else {
            continue;
        };
        let kind = c.address.kind().get();
        if kind.defines_identity() {
            planned.insert(
                id,
                kind.identity_of(&c.address, after).into_iter().collect(),
            );
        }
    }
    for c in &plan.resource_changes {
        let (Some(after), Some(id)) = (&c.after, c.address.tenant()) else {
            continue;
        };
        let kind = c.address.kind().get();
        let claims = kind.identity_of(&c.address, after);
        if kind.defines_identity() || claims.is_empty() {
            continue;
        }
        let want: BTreeMap<&str, String> = match planned.get(id) {
            Some(p) => p.clone(),
            None => match observed.tenants.get(id).and_then(|t| t.record.as_ref()) {
                Some(r) => BTreeMap::from([
                    ("uid", r.uid.to_string()),
                    ("gid", r.gid.to_string()),
                    ("ip", r.ip.to_string()),
                    ("mac", r.mac.to_string()),
                ]),
                None => {
                    return Err(format!(
                        "{}: tenant {id} has no record and the plan makes none, so its identity is unknown",
                        c.address
                    ));
                }
            },
        };
        for (fact, value) in claims {
            if want.get(fact) != Some(&value) {
                return Err(format!(
                    "{}: {fact} {value} is not tenant {id}'s ({}); a tenant's network and processes use its own identity only",
                    c.address,
                    want.get(fact).map_or("none", String::as_str)
                ));
            }
        }
    }
    Ok(())
}

/// The resources of `plan` whose state on the host now differs from what
/// the plan saw (its `before`): what made a saved plan stale.
pub fn changed_since(plan: &Plan, node: &NodeConfig, observed: &Observed) -> Vec<String> {
    let ctx = PlanCtx::new(node, observed);
    plan.resource_changes
        .iter()
        .filter(|c| {
            let kind = c.address.kind().get();
            let now = match c.address.tenant() {
                None => kind.observed(&ctx, At::Node),
                Some(id) => observed
                    .tenants
                    .get(id)
                    .and_then(|t| kind.observed(&ctx, At::Tenant(id, t))),
            };
            now != c.before
        })
        .map(|c| c.address.to_string())
        .collect()
}

fn show(p: Option<&std::path::Path>) -> String {
    p.map_or("not mounted".into(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["1.0", "1.7"] {
            assert!(readable_version(ok), "{ok}");
        }
        for bad in ["2.0", "1", "1.x", "", "01.0.0", "1.0.0"] {
            assert!(!readable_version(bad), "{bad}");
        }
    }
}
