//! Resource kinds: for each, the attributes it has, which changes update it
//! in place and which force replacement, and how the graph connects them.
//!
//! Each kind lives in its own file, named after its address word
//! (`cgroup.rs` ↔ `tenant.<id>.cgroup`), and provides three pure functions:
//! `desired` (attributes the spec asks for), `observed` (attributes read off
//! an `Observed` value) and `simulate` (the host change applying it makes,
//! as an edit of an `Observed` value, used by tests and the property check
//! that a converged host plans no changes).

pub mod artifact;
pub mod bridge;
pub mod cgroup;
pub mod dirs;
pub mod jail;
pub mod metadata;
pub mod nft;
pub mod secrets;
pub mod tap;
pub mod tenant_nft;
pub mod vm;

use crate::observed::{Observed, ObservedTenant};
use crate::spec::types::{MacAddr, TenantId};
use crate::spec::{NodeConfig, TenantSpec};
use crate::state::StateLayout;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

/// An attribute name: a static string when the planner makes it (no
/// allocation per resource), owned when read back from a saved plan.
pub type AttrName = std::borrow::Cow<'static, str>;

/// A resource's attributes, sorted by name.
pub type Attrs = BTreeMap<AttrName, Value>;

/// What the spec asks of one resource: its attributes, and which of them
/// only apply can know (`(known after apply)`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    pub attrs: Attrs,
    pub unknown: BTreeSet<AttrName>,
}

impl Desired {
    pub fn set(&mut self, key: &'static str, v: impl Into<Value>) {
        self.attrs.insert(AttrName::Borrowed(key), v.into());
    }
    pub fn unknown(&mut self, key: &'static str) {
        self.unknown.insert(AttrName::Borrowed(key));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    Bridge,
    Nft,
    Metadata,
}

/// Tenant resource kinds, in creation order (the order used to sort a
/// tenant's resources in a plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TenantKind {
    Dirs,
    Artifact,
    Cgroup,
    Secrets,
    Jail,
    Tap,
    Nft,
    Vm,
}

impl NodeKind {
    pub const ALL: [NodeKind; 3] = [NodeKind::Bridge, NodeKind::Nft, NodeKind::Metadata];
    pub fn word(self) -> &'static str {
        match self {
            NodeKind::Bridge => "bridge",
            NodeKind::Nft => "nft",
            NodeKind::Metadata => "metadata",
        }
    }
    /// Attributes whose change cannot be applied in place.
    pub fn replace_on(self) -> &'static [&'static str] {
        match self {
            NodeKind::Bridge => bridge::REPLACE_ON,
            NodeKind::Nft => nft::REPLACE_ON,
            NodeKind::Metadata => metadata::REPLACE_ON,
        }
    }
}

impl TenantKind {
    pub const ALL: [TenantKind; 8] = [
        TenantKind::Dirs,
        TenantKind::Artifact,
        TenantKind::Cgroup,
        TenantKind::Secrets,
        TenantKind::Jail,
        TenantKind::Tap,
        TenantKind::Nft,
        TenantKind::Vm,
    ];
    pub fn word(self) -> &'static str {
        match self {
            TenantKind::Dirs => "dirs",
            TenantKind::Artifact => "artifact",
            TenantKind::Cgroup => "cgroup",
            TenantKind::Secrets => "secrets",
            TenantKind::Jail => "jail",
            TenantKind::Tap => "tap",
            TenantKind::Nft => "nft",
            TenantKind::Vm => "vm",
        }
    }
    pub fn from_word(w: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.word() == w)
    }
    pub fn replace_on(self) -> &'static [&'static str] {
        match self {
            TenantKind::Dirs => dirs::REPLACE_ON,
            TenantKind::Artifact => artifact::REPLACE_ON,
            TenantKind::Cgroup => cgroup::REPLACE_ON,
            TenantKind::Secrets => secrets::REPLACE_ON,
            TenantKind::Jail => jail::REPLACE_ON,
            TenantKind::Tap => tap::REPLACE_ON,
            TenantKind::Nft => tenant_nft::REPLACE_ON,
            TenantKind::Vm => vm::REPLACE_ON,
        }
    }

    /// The tenant kinds this one depends on (edges dependency → self).
    /// Everything of a tenant depends on its `dirs`: the tree holds the
    /// record and the audit log every change is written to, so it is
    /// created first and removed last.
    pub fn tenant_deps(self) -> &'static [TenantKind] {
        use TenantKind::*;
        match self {
            Dirs => &[],
            Artifact | Secrets | Cgroup | Tap | Nft => &[Dirs],
            Jail => &[Dirs, Artifact, Secrets],
            Vm => &[Jail, Cgroup, Tap, Nft],
        }
    }

    /// The node resources this one depends on.
    pub fn node_deps(self, metadata: bool) -> &'static [NodeKind] {
        match self {
            TenantKind::Tap => &[NodeKind::Bridge],
            TenantKind::Nft => &[NodeKind::Nft],
            TenantKind::Vm if metadata => &[NodeKind::Metadata],
            _ => &[],
        }
    }
}

impl NodeKind {
    pub fn node_deps(self) -> &'static [NodeKind] {
        match self {
            NodeKind::Metadata => &[NodeKind::Bridge, NodeKind::Nft],
            _ => &[],
        }
    }
}

/// A resource's address: `node.bridge`, `tenant.acme.vm`. Ordered node
/// resources first, then tenants by id, each tenant's kinds in creation
/// order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceAddr {
    Node(NodeKind),
    Tenant(TenantId, TenantKind),
}

impl ResourceAddr {
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            ResourceAddr::Tenant(id, _) => Some(id),
            ResourceAddr::Node(_) => None,
        }
    }
    pub fn kind_word(&self) -> &'static str {
        match self {
            ResourceAddr::Node(k) => k.word(),
            ResourceAddr::Tenant(_, k) => k.word(),
        }
    }
    pub fn replace_on(&self) -> &'static [&'static str] {
        match self {
            ResourceAddr::Node(k) => k.replace_on(),
            ResourceAddr::Tenant(_, k) => k.replace_on(),
        }
    }
}

impl fmt::Display for ResourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceAddr::Node(k) => write!(f, "node.{}", k.word()),
            ResourceAddr::Tenant(id, k) => write!(f, "tenant.{id}.{}", k.word()),
        }
    }
}

impl std::str::FromStr for ResourceAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a resource address like node.bridge or tenant.<id>.vm");
        let mut parts = s.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("node"), Some(w), None, None) => NodeKind::ALL
                .into_iter()
                .find(|k| k.word() == w)
                .map(ResourceAddr::Node)
                .ok_or_else(bad),
            (Some("tenant"), Some(id), Some(w), None) => {
                let id = TenantId::parse(id).map_err(|e| format!("{s:?}: tenant id {e}"))?;
                let k = TenantKind::from_word(w).ok_or_else(bad)?;
                Ok(ResourceAddr::Tenant(id, k))
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

/// A tenant with everything the planner had to decide filled in: its
/// address, MAC and uid/gid, allocated once and then kept in its record.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTenant {
    pub spec: TenantSpec,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub uid: u32,
    pub gid: u32,
    /// The Firecracker config this tenant's VM runs with and its sha256,
    /// rendered once here because both the VM's attributes and the plan's
    /// config diff need it.
    pub fc_config: vm::FcConfig,
    pub fc_config_sha256: String,
}

impl ResolvedTenant {
    pub fn new(
        node: &NodeConfig,
        spec: TenantSpec,
        ip: Ipv4Addr,
        mac: MacAddr,
        uid: u32,
        gid: u32,
    ) -> Self {
        let fc_config = vm::fc_config(node, &spec, ip, mac);
        let fc_config_sha256 = vm::config_sha256(&fc_config);
        Self {
            spec,
            ip,
            mac,
            uid,
            gid,
            fc_config,
            fc_config_sha256,
        }
    }

    pub fn id(&self) -> &TenantId {
        &self.spec.tenant_id
    }
}

/// What the kinds may read while computing attributes.
pub struct Ctx<'a> {
    pub node: &'a NodeConfig,
    pub observed: &'a Observed,
    pub layout: StateLayout,
}

impl<'a> Ctx<'a> {
    pub fn new(node: &'a NodeConfig, observed: &'a Observed) -> Self {
        Self {
            node,
            observed,
            layout: StateLayout::new(&node.state_dir),
        }
    }
}

/// Desired attributes of a tenant resource, or `None` when the spec does not
/// want it (a stopped tenant's `vm`).
pub fn desired_tenant(ctx: &Ctx, kind: TenantKind, t: &ResolvedTenant) -> Option<Desired> {
    let obs = ctx.observed.tenant(t.id());
    match kind {
        TenantKind::Dirs => Some(dirs::desired(ctx, t)),
        TenantKind::Artifact => Some(artifact::desired(t, obs)),
        TenantKind::Cgroup => Some(cgroup::desired(ctx, t)),
        TenantKind::Secrets => Some(secrets::desired(ctx, t)),
        TenantKind::Jail => Some(jail::desired(ctx, t)),
        TenantKind::Tap => Some(tap::desired(ctx, t)),
        TenantKind::Nft => Some(tenant_nft::desired(t)),
        TenantKind::Vm => vm::desired(ctx, t, obs),
    }
}

/// Attributes of a tenant resource as found on the host, or `None` when it
/// does not exist.
pub fn observed_tenant(
    ctx: &Ctx,
    kind: TenantKind,
    id: &TenantId,
    obs: &ObservedTenant,
) -> Option<Attrs> {
    match kind {
        TenantKind::Dirs => dirs::observed(ctx, id, obs),
        TenantKind::Artifact => artifact::observed(obs),
        TenantKind::Cgroup => cgroup::observed(ctx, id, obs),
        TenantKind::Secrets => secrets::observed(ctx, id, obs),
        TenantKind::Jail => jail::observed(ctx, id, obs),
        TenantKind::Tap => tap::observed(id, obs),
        TenantKind::Nft => tenant_nft::observed(id, obs),
        TenantKind::Vm => vm::observed(obs),
    }
}

pub fn desired_node(ctx: &Ctx, kind: NodeKind, tenants: &[ResolvedTenant]) -> Option<Desired> {
    match kind {
        NodeKind::Bridge => Some(bridge::desired(ctx)),
        NodeKind::Nft => Some(nft::desired()),
        NodeKind::Metadata => metadata::desired(ctx, tenants),
    }
}

pub fn observed_node(ctx: &Ctx, kind: NodeKind) -> Option<Attrs> {
    match kind {
        NodeKind::Bridge => bridge::observed(ctx),
        NodeKind::Nft => nft::observed(ctx.observed),
        NodeKind::Metadata => metadata::observed(ctx.observed),
    }
}

/// Applies a planned change to an `Observed` value the way the provider
/// changes the host: afterwards, `observed_*` of the resource equals the
/// planned `after` attributes (with unknowns filled in). `after == None`
/// deletes the resource.
pub fn simulate(
    obs: &mut Observed,
    node: &NodeConfig,
    addr: &ResourceAddr,
    after: Option<&Attrs>,
    fc_config: Option<&Value>,
) {
    match addr {
        ResourceAddr::Node(k) => match k {
            NodeKind::Bridge => bridge::simulate(obs, after),
            NodeKind::Nft => nft::simulate(obs, after),
            NodeKind::Metadata => metadata::simulate(obs, after),
        },
        ResourceAddr::Tenant(id, k) => {
            let t = obs.tenants.entry(id.clone()).or_default();
            match k {
                TenantKind::Dirs => dirs::simulate(t, id, after),
                TenantKind::Artifact => artifact::simulate(t, after),
                TenantKind::Cgroup => cgroup::simulate(t, after),
                TenantKind::Secrets => secrets::simulate(t, after),
                TenantKind::Jail => jail::simulate(t, after),
                TenantKind::Tap => tap::simulate(t, after),
                TenantKind::Nft => tenant_nft::simulate(t, after),
                TenantKind::Vm => vm::simulate(t, node, after, fc_config),
            }
            if !t.is_present() {
                obs.tenants.remove(id);
            }
        }
    }
}

/// Whether this build can change the host for resources of this kind.
/// Kinds arrive with their providers: the filesystem and cgroupfs ones
/// first; network, artifacts, jails and VMs follow.
pub fn has_provider(addr: &ResourceAddr) -> bool {
    matches!(
        addr,
        ResourceAddr::Tenant(
            _,
            TenantKind::Dirs | TenantKind::Cgroup | TenantKind::Secrets
        )
    )
}

/// Reads a string attribute (helpers for the kinds' `simulate`).
pub(crate) fn attr_str(a: &Attrs, k: &str) -> String {
    a.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn attr_u64(a: &Attrs, k: &str) -> u64 {
    a.get(k).and_then(Value::as_u64).unwrap_or_default()
}

pub(crate) fn attr_bool(a: &Attrs, k: &str) -> bool {
    a.get(k).and_then(Value::as_bool).unwrap_or_default()
}
