//! `Kind`: the object-safe face of every `Resource`, which the planner and
//! the executor iterate; and the typed decoding of plan attributes, once,
//! with one error naming the address and the attribute.

use super::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, NodeView, PlanCtx, Provider, ResolvedTenant,
    Resource, ResourceAddr, Scope, Subject, Unwanted,
};
use crate::host::HostError;
use crate::observed::{Observed, ObservedTenant};
use crate::security::audit::AuditDetails;
use crate::spec::TenantSpec;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired>;
    fn unwanted(&self, s: Subject) -> Unwanted;
    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs>;
    fn documents(
        &self,
        ctx: &PlanCtx,
        at: Option<&ObservedTenant>,
        want: Option<&ResolvedTenant>,
    ) -> Documents;
    fn blocked(&self, ctx: &PlanCtx, s: Subject) -> Option<String>;
    fn warnings(&self, ctx: &PlanCtx, view: &NodeView) -> Vec<String>;
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
    /// `Resource::DELETES_TOGETHER`.
    fn deletes_together(&self) -> bool;
    /// Deletes each of `items` (address, prior), one result each, in
    /// order (`Provider::delete_together`).
    fn delete_together(
        &self,
        ctx: &ApplyCtx,
        items: &[(&ResourceAddr, Option<&Attrs>)],
    ) -> Vec<Result<(), StepError>>;
    /// Decodes planned attributes and checks them (`Resource::check`).
    fn check(&self, ctx: &PlanCtx, addr: &ResourceAddr, after: &Attrs) -> Result<(), String>;
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
    fn check(&self, ctx: &PlanCtx, addr: &ResourceAddr, after: &Attrs) -> Result<(), String> {
        let typed = decode::<R::Attrs>(addr, after).map_err(|e| e.to_string())?;
        Resource::check(self, ctx, addr.tenant(), &typed).map_err(|e| {
            format!("{addr}: the plan's attributes are not what this node's specs allow: {e}")
        })
    }
    fn depends_on(&self, spec: Option<&TenantSpec>) -> &'static [Dep] {
        Resource::depends_on(self, spec)
    }
    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        Resource::desired(self, ctx, s)
    }
    fn unwanted(&self, s: Subject) -> Unwanted {
        Resource::unwanted(self, s)
    }
    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs> {
        Resource::observed(self, ctx, at)
    }
    fn documents(
        &self,
        ctx: &PlanCtx,
        at: Option<&ObservedTenant>,
        want: Option<&ResolvedTenant>,
    ) -> Documents {
        Resource::documents(self, ctx, at, want)
    }
    fn blocked(&self, ctx: &PlanCtx, s: Subject) -> Option<String> {
        Resource::blocked(self, ctx, s)
    }
    fn warnings(&self, ctx: &PlanCtx, view: &NodeView) -> Vec<String> {
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
    fn deletes_together(&self) -> bool {
        R::DELETES_TOGETHER
    }
    fn delete_together(
        &self,
        ctx: &ApplyCtx,
        items: &[(&ResourceAddr, Option<&Attrs>)],
    ) -> Vec<Result<(), StepError>> {
        let priors: Vec<Option<R::Attrs>> = items
            .iter()
            .map(|(addr, prior)| prior.and_then(|a| decode::<R::Attrs>(addr, a).ok()))
            .collect();
        let typed: Vec<(Option<&crate::spec::types::TenantId>, Option<&R::Attrs>)> = items
            .iter()
            .zip(&priors)
            .map(|((addr, _), prior)| (addr.tenant(), prior.as_ref()))
            .collect();
        Provider::delete_together(self, ctx, &typed)
            .into_iter()
            .map(|r| r.map_err(StepError::from))
            .collect()
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
