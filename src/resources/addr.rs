//! Where a resource is: its scope, its dependencies, its kind's place in
//! the registry (`KindId`) and its address (`tenant.<id>.<word>`).

use super::{Kind, REGISTRY};
use crate::spec::types::TenantId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Whether a kind exists once per node or once per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Node,
    Tenant,
}

impl Scope {
    pub fn word(self) -> &'static str {
        match self {
            Scope::Node => "node",
            Scope::Tenant => "tenant",
        }
    }
}

/// A dependency, by scope and address word: `Dep::Node("bridge")`,
/// `Dep::Tenant("dirs")` (the same tenant's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dep {
    Node(&'static str),
    Tenant(&'static str),
}

/// A registered kind: its place in `REGISTRY`, which is also its order
/// among a tenant's (or the node's) resources.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindId(pub(super) u8);

impl KindId {
    /// Every kind of `scope`, in registry order.
    pub fn all(scope: Scope) -> impl Iterator<Item = KindId> {
        (0..REGISTRY.len())
            .map(|i| KindId(i as u8))
            .filter(move |k| k.get().scope() == scope)
    }

    pub fn find(scope: Scope, word: &str) -> Option<KindId> {
        Self::all(scope).find(|k| k.word() == word)
    }

    pub fn get(self) -> &'static dyn Kind {
        REGISTRY[usize::from(self.0)]
    }

    pub fn word(self) -> &'static str {
        self.get().word()
    }

    pub fn scope(self) -> Scope {
        self.get().scope()
    }
}

impl fmt::Debug for KindId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.scope().word(), self.word())
    }
}

/// A resource's address: `node.bridge`, `tenant.acme.vm`. Ordered node
/// resources first, then tenants by id, each tenant's kinds in creation
/// order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceAddr {
    tenant: Option<TenantId>,
    kind: KindId,
}

impl ResourceAddr {
    pub fn node(kind: KindId) -> Self {
        debug_assert_eq!(kind.scope(), Scope::Node);
        Self { tenant: None, kind }
    }

    pub fn tenant_kind(id: TenantId, kind: KindId) -> Self {
        debug_assert_eq!(kind.scope(), Scope::Tenant);
        Self {
            tenant: Some(id),
            kind,
        }
    }

    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    pub fn kind(&self) -> KindId {
        self.kind
    }

    pub fn kind_word(&self) -> &'static str {
        self.kind.word()
    }

    /// The addresses of `deps`, for a resource of `tenant` (or the node).
    pub fn deps_of(tenant: Option<&TenantId>, deps: &[Dep]) -> Vec<ResourceAddr> {
        deps.iter()
            .filter_map(|d| match (d, tenant) {
                (Dep::Node(w), _) => KindId::find(Scope::Node, w).map(ResourceAddr::node),
                (Dep::Tenant(w), Some(id)) => {
                    KindId::find(Scope::Tenant, w).map(|k| ResourceAddr::tenant_kind(id.clone(), k))
                }
                (Dep::Tenant(_), None) => None,
            })
            .collect()
    }
}

impl fmt::Display for ResourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            None => write!(f, "node.{}", self.kind.word()),
            Some(id) => write!(f, "tenant.{id}.{}", self.kind.word()),
        }
    }
}

impl std::str::FromStr for ResourceAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a resource address like node.bridge or tenant.<id>.vm");
        let mut parts = s.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("node"), Some(w), None, None) => KindId::find(Scope::Node, w)
                .map(ResourceAddr::node)
                .ok_or_else(bad),
            (Some("tenant"), Some(id), Some(w), None) => {
                let id = TenantId::parse(id).map_err(|e| format!("{s:?}: tenant id {e}"))?;
                let k = KindId::find(Scope::Tenant, w).ok_or_else(bad)?;
                Ok(ResourceAddr::tenant_kind(id, k))
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for ResourceAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
