//! Resource targeting (`--target`), as in Terraform: a plan restricted to
//! the resources matching any pattern plus everything they depend on.
//! Patterns: `node.bridge`, `node.*`, `tenant.acme`, `tenant.acme.cgroup`,
//! `tenant.*.cgroup`, `tenant.*`.

use crate::resources::{NodeKind, ResourceAddr, TenantKind};
use crate::spec::types::TenantId;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(Option<NodeKind>),
    Tenant(Option<TenantId>, Option<TenantKind>),
}

impl Target {
    pub fn matches(&self, addr: &ResourceAddr) -> bool {
        match (self, addr) {
            (Target::Node(k), ResourceAddr::Node(a)) => k.is_none_or(|k| k == *a),
            (Target::Tenant(id, k), ResourceAddr::Tenant(aid, ak)) => {
                id.as_ref().is_none_or(|i| i == aid) && k.is_none_or(|k| k == *ak)
            }
            _ => false,
        }
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a target; expected node.<kind>, node.*, tenant.<id>, tenant.<id>.<kind> or tenant.*.<kind>"
            )
        };
        let parts: Vec<&str> = s.split('.').collect();
        match parts.as_slice() {
            ["node", "*"] => Ok(Target::Node(None)),
            ["node", w] => NodeKind::ALL
                .into_iter()
                .find(|k| k.word() == *w)
                .map(|k| Target::Node(Some(k)))
                .ok_or_else(bad),
            ["tenant", id] | ["tenant", id, "*"] => Ok(Target::Tenant(tenant(id)?, None)),
            ["tenant", id, w] => {
                let kind = TenantKind::from_word(w).ok_or_else(bad)?;
                Ok(Target::Tenant(tenant(id)?, Some(kind)))
            }
            _ => Err(bad()),
        }
    }
}

fn tenant(id: &str) -> Result<Option<TenantId>, String> {
    if id == "*" {
        return Ok(None);
    }
    TenantId::parse(id)
        .map(Some)
        .map_err(|e| format!("tenant id {id:?} {e}"))
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(k) => write!(f, "node.{}", k.map_or("*", |k| k.word())),
            Target::Tenant(id, k) => {
                write!(f, "tenant.{}", id.as_ref().map_or("*", |i| i.as_str()))?;
                match k {
                    Some(k) => write!(f, ".{}", k.word()),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let a: ResourceAddr = "tenant.acme.cgroup".parse().unwrap();
        for (p, m) in [
            ("tenant.*.cgroup", true),
            ("tenant.acme", true),
            ("tenant.acme.*", true),
            ("tenant.x.cgroup", false),
            ("node.*", false),
            ("tenant.*.dirs", false),
        ] {
            assert_eq!(p.parse::<Target>().unwrap().matches(&a), m, "{p}");
        }
        assert!("tenant.acme.bogus".parse::<Target>().is_err());
        assert!("vm".parse::<Target>().is_err());
        assert_eq!(
            "tenant.*.cgroup".parse::<Target>().unwrap().to_string(),
            "tenant.*.cgroup"
        );
    }
}
