//! What the kinds read while planning: the resolved tenants, the node's
//! view, the subject of a question and the planning context.

use crate::observed::{Observed, ObservedTenant};
use crate::spec::types::{MacAddr, TenantId};
use crate::spec::{NodeConfig, TenantSpec};
use crate::state::StateLayout;
use std::net::Ipv4Addr;

/// A tenant with everything the planner had to decide filled in: its
/// address, MAC and uid/gid, allocated once and then kept in its record.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTenant {
    pub spec: TenantSpec,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub uid: u32,
    pub gid: u32,
}

impl ResolvedTenant {
    pub fn id(&self) -> &TenantId {
        &self.spec.tenant_id
    }
}

/// The node as the node kinds see it: the desired tenants, and the tenants
/// kept on the node though absent from desired.json (they keep what they
/// depend on).
pub struct NodeView<'a> {
    pub tenants: &'a [ResolvedTenant],
    pub kept: Vec<&'a ObservedTenant>,
}

/// What a kind computes its desired attributes for.
#[derive(Clone, Copy)]
pub enum Subject<'a> {
    Node(&'a NodeView<'a>),
    Tenant(&'a ResolvedTenant),
}

/// Where a kind reads its observed attributes from.
#[derive(Clone, Copy)]
pub enum At<'a> {
    Node,
    Tenant(&'a TenantId, &'a ObservedTenant),
}

/// What the kinds may read while computing attributes.
pub struct PlanCtx<'a> {
    pub node: &'a NodeConfig,
    pub observed: &'a Observed,
    pub layout: StateLayout,
    /// Tenants whose VM is to move to its newest staged secrets.
    pub rotate_secrets: std::collections::BTreeSet<TenantId>,
}

impl<'a> PlanCtx<'a> {
    pub fn new(node: &'a NodeConfig, observed: &'a Observed) -> Self {
        Self {
            node,
            observed,
            layout: StateLayout::new(&node.state_dir),
            rotate_secrets: Default::default(),
        }
    }
}
