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

pub mod artifact;
pub mod audit_log;
pub mod bridge;
pub mod cgroup;
mod context;
pub mod dirs;
pub mod jail;
pub mod metadata;
pub mod nft;
pub mod secrets;
pub mod tap;
pub mod tenant_nft;
pub mod values;
pub mod vm;

pub use context::ApplyCtx;

use crate::host::HostError;
use crate::observed::{Observed, ObservedTenant};
use crate::security::audit::AuditDetails;
use crate::spec::types::{MacAddr, TenantId};
use crate::spec::{NodeConfig, TenantSpec};
use crate::state::StateLayout;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

/// Every resource kind, in creation order: node kinds first, then a
/// tenant's kinds in the order a plan lists them (a valid topological
/// order of the graph). Adding a kind is adding its file and one line here.
pub static REGISTRY: &[&dyn Kind] = &[
    &bridge::Bridge,
    &nft::NodeNft,
    &metadata::Metadata,
    &dirs::Dirs,
    &artifact::Artifact,
    &cgroup::Cgroup,
    &secrets::Secrets,
    &jail::Jail,
    &tap::Tap,
    &tenant_nft::TenantNft,
    &vm::Vm,
];

/// An attribute name: a static string when the planner makes it (no
/// allocation per resource), owned when read back from a saved plan.
pub type AttrName = std::borrow::Cow<'static, str>;

/// A resource's attributes as plans carry them, sorted by name.
pub type Attrs = BTreeMap<AttrName, Value>;

/// Named documents of a change, before and after (`firecracker_config`),
/// shown to reviewers as a unified diff.
pub type Documents = BTreeMap<String, DocumentChange>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentChange {
    pub before: Option<Value>,
    pub after: Option<Value>,
}

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

/// Why a resource the host has is no longer wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwanted {
    /// Nothing in desired.json (or a kept tenant) needs it.
    Unused,
    /// The tenant's state is `stopped`.
    Stopped,
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

/// A resource kind, with its attributes typed. One file implements it for
/// one kind; `Kind` is the object-safe face the engine iterates.
pub trait Resource: Provider<Self::Attrs> + Sync + 'static {
    /// The attributes simulate and apply work with, decoded once from the
    /// plan. Attributes that may be `(known after apply)` are `Option`s.
    type Attrs: DeserializeOwned;
    /// The address word: `tenant.<id>.<WORD>`, `node.<WORD>`.
    const WORD: &'static str;
    const SCOPE: Scope;
    /// Attributes whose change cannot be applied in place.
    const REPLACE_ON: &'static [&'static str];
    /// A resource whose prior identity is unknown (null) adopts the
    /// planned one in place instead of being replaced (a tenant tree whose
    /// record is lost: replacing it would delete the tenant's files).
    const ADOPTS_UNKNOWN_PRIOR: bool = false;
    /// Dependencies (by word) a running instance holds open: when one is
    /// missing and gets created, this resource is replaced to use it.
    const HOLDS: &'static [&'static str] = &[];
    /// Attributes no two tenants may share (a uid, an IP): a saved plan
    /// that gives two tenants the same value is refused.
    const UNIQUE: &'static [&'static str] = &[];
    /// Whether these attributes are where a tenant's identity (uid, gid,
    /// IP, MAC) is planned: the identity every other kind's must match.
    const DEFINES_IDENTITY: bool = false;
    /// Whether it is part of the tenant network (`mvm net verify` checks
    /// these kinds).
    const NETWORK: bool = false;

    /// What it depends on; `spec` is the tenant's (`None` for node kinds
    /// and for tenants being pruned).
    fn depends_on(&self, spec: Option<&TenantSpec>) -> &'static [Dep];
    /// Desired attributes, or `None` when nothing asks for it.
    fn desired(&self, ctx: &Ctx, s: Subject) -> Option<Desired>;
    /// Why it is not wanted, when `desired` says it is not.
    fn unwanted(&self, _s: Subject) -> Unwanted {
        Unwanted::Unused
    }
    /// Attributes as found on the host, or `None` when it does not exist.
    fn observed(&self, ctx: &Ctx, at: At) -> Option<Attrs>;
    /// Documents to diff for a change (`want` is `None` when deleting).
    fn documents(
        &self,
        _ctx: &Ctx,
        _at: Option<&ObservedTenant>,
        _want: Option<&ResolvedTenant>,
    ) -> Documents {
        Documents::new()
    }
    /// Why a create or update of it cannot be applied on this node.
    fn blocked(&self, _ctx: &Ctx, _s: Subject) -> Option<String> {
        None
    }
    /// Plan warnings this kind raises (what weakens isolation, what could
    /// not be probed, settings that have no effect on this node).
    fn warnings(&self, _ctx: &Ctx, _view: &NodeView) -> Vec<String> {
        Vec::new()
    }
    /// Applies a planned change to an `Observed` value the way the provider
    /// changes the host: afterwards `observed` of the resource equals the
    /// planned `after` (with unknowns filled in). `after == None` deletes.
    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&Self::Attrs>,
        docs: &Documents,
    );
    /// What an audit record of a change to it carries. Never a secret.
    fn audit(&self, _a: &Self::Attrs) -> AuditDetails {
        AuditDetails::new()
    }
    /// What the audit record of a successful create or update carries:
    /// `audit`, plus what only the host knows once it is done (the VM's
    /// store paths and pid).
    fn audit_applied(
        &self,
        _ctx: &ApplyCtx,
        _id: Option<&TenantId>,
        a: &Self::Attrs,
    ) -> AuditDetails {
        self.audit(a)
    }
    /// Checks planned attributes with the rules desired.json and node.toml
    /// are held to (what `desired` could have produced on this node), so a
    /// hand-edited saved plan cannot ask a provider for anything the specs
    /// could not. Every kind implements it.
    fn check(
        &self,
        _ctx: &Ctx,
        _id: Option<&TenantId>,
        _after: &Self::Attrs,
    ) -> Result<(), String> {
        Ok(())
    }
    /// The tenant's identity as these attributes carry it, by fact
    /// (`"uid"`, `"gid"`, `"ip"`, `"mac"`). A saved plan is refused unless
    /// each equals the tenant's identity: the record's, or the planned one
    /// where the plan makes it (the kind with `DEFINES_IDENTITY`) — a free
    /// address in range is not enough, it must be the tenant's own.
    fn identity(&self, _a: &Self::Attrs) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// Creates, updates and deletes a kind's resources on the host.
pub trait Provider<A>: Sync {
    /// Creates or updates it. `prior` is what the host had, for an update
    /// in place (`None` for a create or replace, or a prior that did not
    /// decode: then everything is written).
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        prior: Option<&A>,
        after: &A,
        docs: &Documents,
    ) -> Result<(), HostError>;
    /// Deletes it. Paths come from the address, never from attributes;
    /// `prior` is what the host had (for what only attributes can name,
    /// like a tenant's set elements), `None` when it did not decode.
    fn delete(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        prior: Option<&A>,
    ) -> Result<(), HostError>;
}

/// Attributes that do not decode into a kind's typed attributes.
#[derive(Debug, thiserror::Error)]
#[error("{address}: the plan's attribute {path} is not valid: {message}")]
pub struct DecodeError {
    pub address: String,
    pub path: String,
    pub message: String,
}

/// Why one step could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Decodes plan attributes into a kind's typed attributes.
pub fn decode<A: DeserializeOwned>(addr: &ResourceAddr, attrs: &Attrs) -> Result<A, DecodeError> {
    let map: serde_json::Map<String, Value> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        DecodeError {
            address: addr.to_string(),
            path: if path == "." { "(all)".into() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

/// The object-safe face of `Resource`, implemented for every kind: what
/// the planner and executor call.
pub trait Kind: Sync {
    fn word(&self) -> &'static str;
    fn scope(&self) -> Scope;
    fn replace_on(&self) -> &'static [&'static str];
    fn adopts_unknown_prior(&self) -> bool;
    fn holds(&self) -> &'static [&'static str];
    fn unique(&self) -> &'static [&'static str];
    fn depends_on(&self, spec: Option<&TenantSpec>) -> &'static [Dep];
    fn desired(&self, ctx: &Ctx, s: Subject) -> Option<Desired>;
    fn unwanted(&self, s: Subject) -> Unwanted;
    fn observed(&self, ctx: &Ctx, at: At) -> Option<Attrs>;
    fn documents(
        &self,
        ctx: &Ctx,
        at: Option<&ObservedTenant>,
        want: Option<&ResolvedTenant>,
    ) -> Documents;
    fn blocked(&self, ctx: &Ctx, s: Subject) -> Option<String>;
    fn warnings(&self, ctx: &Ctx, view: &NodeView) -> Vec<String>;
    /// Whether it is part of the tenant network `mvm net verify` checks.
    fn network(&self) -> bool;
    fn simulate(
        &self,
        obs: &mut Observed,
        addr: &ResourceAddr,
        after: Option<&Attrs>,
        docs: &Documents,
    ) -> Result<(), DecodeError>;
    /// Decodes `after` (and `prior`, leniently) and applies; returns what
    /// the audit record carries.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        addr: &ResourceAddr,
        prior: Option<&Attrs>,
        after: &Attrs,
        docs: &Documents,
    ) -> Result<AuditDetails, StepError>;
    fn delete(
        &self,
        ctx: &ApplyCtx,
        addr: &ResourceAddr,
        prior: Option<&Attrs>,
    ) -> Result<(), StepError>;
    /// Decodes planned attributes and checks them (`Resource::check`).
    fn check(&self, ctx: &Ctx, addr: &ResourceAddr, after: &Attrs) -> Result<(), String>;
    /// `Resource::identity` of attributes (empty when they do not decode).
    fn identity_of(&self, addr: &ResourceAddr, attrs: &Attrs) -> Vec<(&'static str, String)>;
    fn defines_identity(&self) -> bool;
    /// What the audit record of deleting it carries (from the attributes
    /// it had), empty when they do not decode.
    fn audit_of(&self, addr: &ResourceAddr, attrs: &Attrs) -> AuditDetails;
}

impl<R: Resource> Kind for R {
    fn word(&self) -> &'static str {
        R::WORD
    }
    fn scope(&self) -> Scope {
        R::SCOPE
    }
    fn replace_on(&self) -> &'static [&'static str] {
        R::REPLACE_ON
    }
    fn adopts_unknown_prior(&self) -> bool {
        R::ADOPTS_UNKNOWN_PRIOR
    }
    fn holds(&self) -> &'static [&'static str] {
        R::HOLDS
    }
    fn unique(&self) -> &'static [&'static str] {
        R::UNIQUE
    }
    fn check(&self, ctx: &Ctx, addr: &ResourceAddr, after: &Attrs) -> Result<(), String> {
        let typed = decode::<R::Attrs>(addr, after).map_err(|e| e.to_string())?;
        Resource::check(self, ctx, addr.tenant(), &typed).map_err(|e| {
            format!("{addr}: the plan's attributes are not what this node's specs allow: {e}")
        })
    }
    fn depends_on(&self, spec: Option<&TenantSpec>) -> &'static [Dep] {
        Resource::depends_on(self, spec)
    }
    fn desired(&self, ctx: &Ctx, s: Subject) -> Option<Desired> {
        Resource::desired(self, ctx, s)
    }
    fn unwanted(&self, s: Subject) -> Unwanted {
        Resource::unwanted(self, s)
    }
    fn observed(&self, ctx: &Ctx, at: At) -> Option<Attrs> {
        Resource::observed(self, ctx, at)
    }
    fn documents(
        &self,
        ctx: &Ctx,
        at: Option<&ObservedTenant>,
        want: Option<&ResolvedTenant>,
    ) -> Documents {
        Resource::documents(self, ctx, at, want)
    }
    fn blocked(&self, ctx: &Ctx, s: Subject) -> Option<String> {
        Resource::blocked(self, ctx, s)
    }
    fn warnings(&self, ctx: &Ctx, view: &NodeView) -> Vec<String> {
        Resource::warnings(self, ctx, view)
    }
    fn network(&self) -> bool {
        R::NETWORK
    }
    fn simulate(
        &self,
        obs: &mut Observed,
        addr: &ResourceAddr,
        after: Option<&Attrs>,
        docs: &Documents,
    ) -> Result<(), DecodeError> {
        let typed = after.map(|a| decode::<R::Attrs>(addr, a)).transpose()?;
        Resource::simulate(self, obs, addr.tenant(), typed.as_ref(), docs);
        if let Some(id) = addr.tenant()
            && obs.tenants.get(id).is_some_and(|t| !t.is_present())
        {
            obs.tenants.remove(id);
        }
        Ok(())
    }
    fn apply(
        &self,
        ctx: &ApplyCtx,
        addr: &ResourceAddr,
        prior: Option<&Attrs>,
        after: &Attrs,
        docs: &Documents,
    ) -> Result<AuditDetails, StepError> {
        let after: R::Attrs = decode(addr, after)?;
        let prior: Option<R::Attrs> = prior.and_then(|b| decode(addr, b).ok());
        Provider::apply(self, ctx, addr.tenant(), prior.as_ref(), &after, docs)?;
        Ok(self.audit_applied(ctx, addr.tenant(), &after))
    }
    fn delete(
        &self,
        ctx: &ApplyCtx,
        addr: &ResourceAddr,
        prior: Option<&Attrs>,
    ) -> Result<(), StepError> {
        let prior = prior.and_then(|a| decode::<R::Attrs>(addr, a).ok());
        Ok(Provider::delete(self, ctx, addr.tenant(), prior.as_ref())?)
    }
    fn audit_of(&self, addr: &ResourceAddr, attrs: &Attrs) -> AuditDetails {
        decode::<R::Attrs>(addr, attrs)
            .map(|a| self.audit(&a))
            .unwrap_or_default()
    }
    fn identity_of(&self, addr: &ResourceAddr, attrs: &Attrs) -> Vec<(&'static str, String)> {
        decode::<R::Attrs>(addr, attrs)
            .map(|a| self.identity(&a))
            .unwrap_or_default()
    }
    fn defines_identity(&self) -> bool {
        R::DEFINES_IDENTITY
    }
}

/// A registered kind: its place in `REGISTRY`, which is also its order
/// among a tenant's (or the node's) resources.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindId(u8);

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

/// The tenant's entry in an `Observed` value, created if missing (the
/// kinds' `simulate`).
pub(crate) fn tenant_mut<'o>(
    obs: &'o mut Observed,
    id: Option<&TenantId>,
) -> &'o mut ObservedTenant {
    let id = id.expect("a tenant kind is simulated with its tenant's address");
    obs.tenants.entry(id.clone()).or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
