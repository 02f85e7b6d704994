//! Resource targeting (`--target`), as in Terraform: a plan restricted to
//! the resources matching any pattern plus everything they depend on.
//! Patterns: `node.bridge`, `node.*`, `tenant.acme`, `tenant.acme.cgroup`,
//! `tenant.*.cgroup`, `tenant.*`, `tenant.acme.*`.

use crate::resources::{KindId, ResourceAddr, Scope};
use crate::spec::types::TenantId;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    scope: Scope,
    /// `None`: any tenant (`tenant.*`); always `None` for node targets.
    tenant: Option<TenantId>,
    /// `None`: any kind (`.*`).
    kind: Option<KindId>,
}

/// The forms `--target` takes, for messages and `--help`.
pub const FORMS: &str =
    "node.<kind>, node.*, tenant.<id>, tenant.<id>.<kind>, tenant.<id>.*, tenant.*.<kind>";

impl Target {
    /// Whether it names one tenant (`tenant.<id>…`): matching nothing,
    /// its id is a typo.
    pub fn names_a_tenant(&self) -> bool {
        self.tenant.is_some()
    }

    /// The tenant it names, if one.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    pub fn matches(&self, addr: &ResourceAddr) -> bool {
        addr.kind().scope() == self.scope
            && self.kind.is_none_or(|k| k == addr.kind())
            && (self.tenant.is_none() || self.tenant.as_ref() == addr.tenant())
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a target; expected {FORMS}");
        let kind = |scope, w: &str| -> Result<Option<KindId>, String> {
            match w {
                "*" => Ok(None),
                w => KindId::find(scope, w).map(Some).ok_or_else(|| {
                    let words: Vec<&str> = KindId::all(scope).map(KindId::word).collect();
                    format!(
                        "{s:?} is not a target: {} kinds are {}",
                        scope.word(),
                        words.join(", ")
                    )
                }),
            }
        };
        let parts: Vec<&str> = s.split('.').collect();
        match parts.as_slice() {
            ["node", w] => Ok(Target {
                scope: Scope::Node,
                tenant: None,
                kind: kind(Scope::Node, w)?,
            }),
            ["tenant", id] => Ok(Target {
                scope: Scope::Tenant,
                tenant: tenant(id)?,
                kind: None,
            }),
            ["tenant", id, w] => Ok(Target {
                scope: Scope::Tenant,
                tenant: tenant(id)?,
                kind: kind(Scope::Tenant, w)?,
            }),
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
        write!(f, "{}", self.scope.word())?;
        if self.scope == Scope::Tenant {
            write!(f, ".{}", self.tenant.as_ref().map_or("*", |i| i.as_str()))?;
            if let Some(k) = self.kind {
                write!(f, ".{}", k.word())?;
            }
            return Ok(());
        }
        write!(f, ".{}", self.kind.map_or("*", KindId::word))
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
        let n: ResourceAddr = "node.nft".parse().unwrap();
        assert!("node.nft".parse::<Target>().unwrap().matches(&n));
        assert!(!"tenant.*.nft".parse::<Target>().unwrap().matches(&n));
        assert!("tenant.acme.bogus".parse::<Target>().is_err());
        assert!("vm".parse::<Target>().is_err());
        for t in ["tenant.*.cgroup", "node.*", "node.bridge", "tenant.acme"] {
            assert_eq!(t.parse::<Target>().unwrap().to_string(), t);
        }
        assert_eq!(
            "tenant.acme.*".parse::<Target>().unwrap().to_string(),
            "tenant.acme"
        );
    }
}
