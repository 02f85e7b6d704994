//! Where a resource is: its scope, its dependencies, its kind's place in
//! the registry (`KindId`) and its address (`tenant.<id>.<word>`). Plain
//! data: what needs the registry (a kind's word, parsing and printing an
//! address) is implemented beside `REGISTRY`, in `mod.rs`.

use crate::spec::types::TenantId;

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

/// A resource's address: `node.bridge`, `tenant.acme.vm`. Ordered node
/// resources first, then tenants by id, each tenant's kinds in creation
/// order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceAddr {
    pub(super) tenant: Option<TenantId>,
    pub(super) kind: KindId,
}
