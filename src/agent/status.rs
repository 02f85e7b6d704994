//! `mvm tenant list` and `mvm tenant status`: what the node has of each
//! tenant, assembled purely from the applied desired state, the probes'
//! `Observed` and a plan of the one against the other (what is pending).

use crate::observed::{Observed, ObservedTenant};
use crate::plan::Plan;
use crate::resources::{At, PlanCtx, REGISTRY, Scope};
use crate::spec::NodeConfig;
use crate::spec::types::TenantId;
use crate::spec::{DesiredState, TenantSpec};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One row of `mvm tenant list --json`. Fields are only ever added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRow {
    pub tenant_id: TenantId,
    /// `running`, `stopped`, or `absent` (nothing of it on the node).
    pub vm: &'static str,
    pub pid: Option<u32>,
    pub ip: Option<String>,
    pub uid: Option<u32>,
    /// The flake ref and lock hash the record says run (or were built).
    pub flake_ref: Option<String>,
    pub lock: Option<String>,
    /// In the desired state the last reconcile applied; `false`: a kept
    /// tenant (on the node, no longer desired, not pruned yet).
    pub desired: bool,
    /// What the applied desired state asks for: `running` or `stopped`.
    pub desired_state: Option<&'static str>,
    pub metadata: Option<bool>,
    /// Changes a reconcile would make to this tenant now (drift, or a
    /// reconcile that did not finish).
    pub pending: usize,
    /// The overrides set by hand on it (`pin`, `state`), in effect.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

/// `mvm tenant status --json`: the row, and what makes it up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantStatus {
    #[serde(flatten)]
    pub row: TenantRow,
    pub gid: Option<u32>,
    pub mac: Option<String>,
    pub spec: Option<SpecSummary>,
    /// The tenant's resources on the node: kind → present (as the plan
    /// observes them).
    pub resources: BTreeMap<&'static str, bool>,
    pub store_path: Option<String>,
    /// The pending changes: `<address>: <action>` (and why it is blocked).
    pub changes: Vec<String>,
    /// Why its record could not be used, if it could not.
    pub record_error: Option<String>,
    /// The overrides set by hand on it, as plans show them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub override_notes: Vec<String>,
    /// Its secrets: the generation its running VM has, and those staged.
    pub secrets: SecretsStatus,
}

/// A tenant's secrets generations (names, sizes, fingerprints; never a
/// value).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretsStatus {
    /// What its running VM has; `None`: no VM mvm launched runs, or it
    /// runs without secrets.
    pub live: Option<SecretsGeneration>,
    /// Generations on the tmpfs newer than the live one: the newest goes
    /// live at `secrets rotate` or the VM's next start.
    pub staged: Vec<SecretsGeneration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretsGeneration {
    pub generation: u64,
    pub fingerprint: String,
    /// By name and size (empty when the generation is gone from the tmpfs).
    pub files: Vec<crate::security::secrets::FileEntry>,
}

fn secrets_status(t: Option<&ObservedTenant>) -> SecretsStatus {
    let Some(t) = t else {
        return SecretsStatus {
            live: None,
            staged: Vec::new(),
        };
    };
    let view = |m: &crate::security::secrets::Manifest| SecretsGeneration {
        generation: m.generation,
        fingerprint: m.fingerprint.clone(),
        files: m.files.clone(),
    };
    let running = crate::agent::secrets::live_generation(t);
    let live = running.map(|g| {
        t.secrets_generation(g).map(view).unwrap_or_else(|| {
            let s = t
                .record
                .as_ref()
                .and_then(|r| r.vm.as_ref())
                .and_then(|v| v.secrets.as_ref());
            SecretsGeneration {
                generation: g,
                fingerprint: s.map(|s| s.fingerprint.clone()).unwrap_or_default(),
                files: Vec::new(),
            }
        })
    });
    let staged = t
        .secrets_generations
        .iter()
        .filter(|m| running.is_none_or(|g| m.generation > g))
        .map(view)
        .collect();
    SecretsStatus { live, staged }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecSummary {
    pub flake_ref: String,
    pub profile: &'static str,
    pub vcpus: u8,
    pub mem_mib: u32,
    pub seccomp: String,
    pub ssh_from_gateway: bool,
}

fn vm_state(t: Option<&ObservedTenant>) -> (&'static str, Option<u32>) {
    match t {
        Some(t) if t.vm.is_some() => ("running", t.vm.as_ref().map(|v| v.pid)),
        Some(t) if t.is_present() => ("stopped", None),
        _ => ("absent", None),
    }
}

/// Every tenant desired or on the node, by id.
pub fn list(desired: &DesiredState, obs: &Observed, plan: &Plan) -> Vec<TenantRow> {
    let ids: BTreeSet<&TenantId> = desired
        .tenants
        .iter()
        .map(|t| &t.tenant_id)
        .chain(obs.tenants.keys())
        .collect();
    let pending = pending_by_tenant(plan);
    ids.into_iter()
        .map(|id| {
            let mut r = row(id, desired, obs, &pending);
            r.overrides = overrides_of(plan, id).map(|o| o.kind.clone()).collect();
            r
        })
        .collect()
}

/// One tenant in detail; `None` when it is neither desired nor on the node.
pub fn status(
    node: &NodeConfig,
    id: &TenantId,
    desired: &DesiredState,
    obs: &Observed,
    plan: &Plan,
) -> Option<TenantStatus> {
    let spec = spec_of(desired, id);
    let at = obs.tenants.get(id);
    if spec.is_none() && at.is_none() {
        return None;
    }
    let pending = pending_by_tenant(plan);
    let rec = at.and_then(|t| t.record.as_ref());
    // What each tenant kind observes, so a new kind shows up by itself.
    let ctx = PlanCtx::new(node, obs);
    let resources = REGISTRY
        .iter()
        .filter(|k| k.scope() == Scope::Tenant)
        .map(|k| {
            let here = at.is_some_and(|t| k.observed(&ctx, At::Tenant(id, t)).is_some());
            (k.word(), here)
        })
        .collect();
    let changes = plan
        .resource_changes
        .iter()
        .filter(|c| c.is_change() && c.address.tenant() == Some(id))
        .map(|c| {
            let mut s = format!("{}: {}", c.address, c.actions.words().join(", then "));
            if let Some(b) = &c.blocked {
                s.push_str(&format!(" (blocked: {b})"));
            }
            s
        })
        .collect();
    let mut row = row(id, desired, obs, &pending);
    row.overrides = overrides_of(plan, id).map(|o| o.kind.clone()).collect();
    Some(TenantStatus {
        row,
        gid: rec.map(|r| r.gid),
        mac: rec.map(|r| r.mac.to_string()),
        spec: spec.map(|s| SpecSummary {
            flake_ref: s.flake_ref.clone(),
            profile: s.profile.as_str(),
            vcpus: s.vcpus,
            mem_mib: s.mem_mib,
            seccomp: s.seccomp.as_str().to_string(),
            ssh_from_gateway: s.ssh_from_gateway,
        }),
        resources,
        store_path: rec
            .and_then(|r| r.artifact.as_ref())
            .map(|a| a.store_path.clone()),
        changes,
        record_error: at.and_then(|t| t.record_error.clone()),
        override_notes: overrides_of(plan, id).map(|o| o.text.clone()).collect(),
        secrets: secrets_status(at),
    })
}

fn spec_of<'a>(desired: &'a DesiredState, id: &TenantId) -> Option<&'a TenantSpec> {
    desired.tenants.iter().find(|t| t.tenant_id == *id)
}

fn pending_by_tenant(plan: &Plan) -> BTreeMap<&TenantId, usize> {
    let mut out = BTreeMap::new();
    for c in plan.resource_changes.iter().filter(|c| c.is_change()) {
        if let Some(id) = c.address.tenant() {
            *out.entry(id).or_insert(0) += 1;
        }
    }
    out
}

fn row(
    id: &TenantId,
    desired: &DesiredState,
    obs: &Observed,
    pending: &BTreeMap<&TenantId, usize>,
) -> TenantRow {
    let spec = spec_of(desired, id);
    let at = obs.tenants.get(id);
    let rec = at.and_then(|t| t.record.as_ref());
    let (vm, pid) = vm_state(at);
    let built = rec.and_then(|r| {
        r.vm.as_ref()
            .map(|v| (v.flake_ref.clone(), v.lock.clone()))
            .or_else(|| {
                r.artifact
                    .as_ref()
                    .map(|a| (a.flake_ref.clone(), a.lock.clone()))
            })
    });
    TenantRow {
        tenant_id: id.clone(),
        vm,
        pid,
        ip: rec.map(|r| r.ip.to_string()),
        uid: rec.map(|r| r.uid),
        flake_ref: built.as_ref().map(|b| b.0.clone()),
        lock: built.map(|b| b.1),
        desired: spec.is_some(),
        desired_state: spec.map(|s| match s.state {
            crate::spec::RunState::Running => "running",
            crate::spec::RunState::Stopped => "stopped",
        }),
        metadata: spec.map(|s| s.metadata),
        pending: pending.get(id).copied().unwrap_or(0),
        overrides: Vec::new(),
    }
}

/// The overrides in effect on `id`, by kind, from the plan's notes.
fn overrides_of<'p>(
    plan: &'p Plan,
    id: &TenantId,
) -> impl Iterator<Item = &'p crate::spec::overrides::OverrideNote> {
    plan.overrides
        .iter()
        .filter(move |o| &o.tenant_id == id && o.in_effect)
}
