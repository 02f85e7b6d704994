//! Resource kinds. A kind is one file implementing `Resource` plus one line
//! in `REGISTRY`; the planner, the executor, targeting, rendering and the
//! audit log only iterate the registry and never name a kind.
//!
//! Each kind says, for itself: its address word and scope (node or
//! tenant), what it depends on, which attribute changes force replacement,
//! whether it adopts an unknown prior in place, which of its dependencies a
//! running instance holds open, its desired and observed attributes, the
//! documents a reviewer should see diffed (the Firecracker config), why it
//! cannot be applied on this host, the warnings it raises, how applying it
//! changes an `Observed` value (`simulate`), its provider (`apply` and
//! `delete` through `host::Host`), and what its audit record carries.
//!
//! Attributes travel in plans as a JSON map (`Attrs`) so that plans render,
//! diff and serialize without knowing kinds; a kind decodes them once into
//! its own typed struct (`Resource::Attrs`) before simulate or apply, with
//! one error naming the address and the attribute.

mod addr;
mod attrs;
pub mod audit_log;
mod context;
mod kind;
pub mod node;
mod resource;
pub mod tenant;
pub mod values;
mod view;

use crate::spec::types::TenantId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

pub use addr::{Dep, KindId, ResourceAddr, Scope};
pub use attrs::{AttrName, Attrs, Desired, Document, DocumentChange, Documents, Unwanted};
pub use context::ApplyCtx;
pub use kind::{DecodeError, Kind, StepError, decode};
pub(crate) use resource::tenant_mut;
pub use resource::{Provider, Resource};
pub use view::{At, NodeView, PlanCtx, ResolvedTenant, Subject};

/// Every resource kind, in creation order: node kinds first, then a
/// tenant's kinds in the order a plan lists them (a valid topological
/// order of the graph). Adding a kind is adding its file and one line here.
pub static REGISTRY: &[&dyn Kind] = &[
    &node::bridge::Bridge,
    &node::nft::NodeNft,
    &node::metadata::Metadata,
    &tenant::dirs::Dirs,
    &tenant::artifact::Artifact,
    &tenant::cgroup::Cgroup,
    &tenant::secrets::Secrets,
    &tenant::jail::Jail,
    &tenant::tap::Tap,
    &tenant::nft::TenantNft,
    &tenant::vm::Vm,
];

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TenantSpec;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// Every dependency names a registered kind of its scope; tenant kinds
    /// depend on node kinds or their own tenant's, node kinds only on node
    /// kinds; and the registry order is a topological order (a kind comes
    /// after everything it depends on), which plans rely on.
    #[test]
    fn registry_is_consistent() {
        let mut words = BTreeSet::new();
        for (i, k) in REGISTRY.iter().enumerate() {
            assert!(
                words.insert((k.scope(), k.word())),
                "{} registered twice",
                k.word()
            );
            if i > 0 {
                assert!(
                    REGISTRY[i - 1].scope() <= k.scope(),
                    "node kinds come first"
                );
            }
        }
        let spec: TenantSpec = serde_json::from_value(serde_json::json!({
            "tenant_id": "acme", "flake_ref": "github:a/b", "profile": "minimal", "vcpus": 2,
            "mem_mib": 1024, "state": "running", "ip": null, "mac": null, "seccomp": "baseline",
            "metadata": true, "ssh_from_gateway": false, "cpuset": null, "pids_max": 256,
            "data_mib": null, "lock": null}))
        .unwrap();
        for (i, k) in REGISTRY.iter().enumerate() {
            for spec in [None, Some(&spec)] {
                for d in k.depends_on(spec) {
                    let (scope, w) = match d {
                        Dep::Node(w) => (Scope::Node, w),
                        Dep::Tenant(w) => (Scope::Tenant, w),
                    };
                    assert!(
                        k.scope() == Scope::Tenant || scope == Scope::Node,
                        "{} is a node kind depending on a tenant kind",
                        k.word()
                    );
                    let dep = KindId::find(scope, w)
                        .unwrap_or_else(|| panic!("{} depends on unknown {w}", k.word()));
                    assert!(
                        usize::from(dep.0) < i,
                        "{} is registered before its dependency {w}",
                        k.word()
                    );
                }
            }
            for held in k.holds() {
                assert!(
                    k.depends_on(Some(&spec))
                        .iter()
                        .any(|d| matches!(d, Dep::Tenant(w) if w == held)),
                    "{} holds {held}, which it does not depend on",
                    k.word()
                );
            }
        }
    }

    #[test]
    fn addresses_round_trip_and_order_node_first() {
        let a: ResourceAddr = "tenant.acme.vm".parse().unwrap();
        assert_eq!(a.to_string(), "tenant.acme.vm");
        let b: ResourceAddr = "node.metadata".parse().unwrap();
        let c: ResourceAddr = "tenant.acme.dirs".parse().unwrap();
        assert!(b < c && c < a);
        assert!("tenant.acme.bogus".parse::<ResourceAddr>().is_err());
        assert!("node.dirs".parse::<ResourceAddr>().is_err());
    }

    #[test]
    fn decode_errors_name_the_address_and_attribute() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct A {
            uid: u32,
        }
        let addr: ResourceAddr = "tenant.acme.dirs".parse().unwrap();
        let mut attrs = Attrs::new();
        attrs.insert("uid".into(), Value::from(4_294_967_296u64));
        let e = decode::<A>(&addr, &attrs).unwrap_err().to_string();
        assert!(
            e.starts_with("tenant.acme.dirs: the plan's attribute uid"),
            "{e}"
        );
        attrs.clear();
        let e = decode::<A>(&addr, &attrs).unwrap_err().to_string();
        assert!(e.contains("missing field `uid`"), "{e}");
    }
}
