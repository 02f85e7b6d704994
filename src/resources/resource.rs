//! What one kind's file implements: `Resource` (its attributes typed, its
//! desired and observed state, how a change simulates) and `Provider`
//! (how it is applied on the host). The engine sees kinds only through
//! `Kind` (`kind.rs`).

use super::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, NodeView, PlanCtx, ResolvedTenant, Scope,
    Subject, Unwanted,
};
use crate::host::HostError;
use crate::observed::{Observed, ObservedTenant};
use crate::security::audit::AuditDetails;
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use serde::de::DeserializeOwned;

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
    /// Whether deleting several at once is cheaper than one by one
    /// (`Provider::delete_together`): the executor then hands it every
    /// delete of this kind that is ready at the same time, as one step.
    const DELETES_TOGETHER: bool = false;

    /// What it depends on; `spec` is the tenant's (`None` for node kinds
    /// and for tenants being pruned).
    fn depends_on(&self, spec: Option<&TenantSpec>) -> &'static [Dep];
    /// Desired attributes, or `None` when nothing asks for it.
    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired>;
    /// Why it is not wanted, when `desired` says it is not.
    fn unwanted(&self, _s: Subject) -> Unwanted {
        Unwanted::Unused
    }
    /// Attributes as found on the host, or `None` when it does not exist.
    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs>;
    /// Documents to diff for a change (`want` is `None` when deleting).
    fn documents(
        &self,
        _ctx: &PlanCtx,
        _at: Option<&ObservedTenant>,
        _want: Option<&ResolvedTenant>,
    ) -> Documents {
        Documents::new()
    }
    /// Why a create or update of it cannot be applied on this node.
    fn blocked(&self, _ctx: &PlanCtx, _s: Subject) -> Option<String> {
        None
    }
    /// Plan warnings this kind raises (what weakens isolation, what could
    /// not be probed, settings that have no effect on this node).
    fn warnings(&self, _ctx: &PlanCtx, _view: &NodeView) -> Vec<String> {
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
        _ctx: &PlanCtx,
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
    /// Deletes each of `items` (as `delete` would), one result each, in
    /// order; a kind with `Resource::DELETES_TOGETHER` does it at once.
    fn delete_together(
        &self,
        ctx: &ApplyCtx,
        items: &[(Option<&TenantId>, Option<&A>)],
    ) -> Vec<Result<(), HostError>> {
        items
            .iter()
            .map(|(id, prior)| self.delete(ctx, *id, *prior))
            .collect()
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
