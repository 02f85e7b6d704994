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
//! `delete` through `providers::Host`), and what its audit record carries.
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
pub mod tenant;
pub mod values;
mod view;

pub use addr::{Dep, KindId, ResourceAddr, Scope};
pub use attrs::{AttrName, Attrs, Desired, DocumentChange, Documents, Unwanted};
pub use context::ApplyCtx;
pub(crate) use kind::tenant_mut;
pub use kind::{DecodeError, Kind, Provider, Resource, StepError, decode};
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
