//! The planner: compares what the spec asks for with what the probes found
//! and decides an action per resource. Pure and linear in the number of
//! resources.

use super::graph::ResourceGraph;
use super::{
    Action, ActionReason, ConfigChange, FORMAT_VERSION, KeptTenant, Plan, PlanError,
    ResourceChange, Summary,
};
use crate::observed::Observed;
use crate::resources::{
    self, AttrName, Attrs, Ctx, Desired, NodeKind, ResolvedTenant, ResourceAddr, TenantKind,
};
use crate::spec::desired::RunState;
use crate::spec::types::TenantId;
use crate::spec::{DesiredState, NodeConfig};
use std::collections::{BTreeSet, HashSet};

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Delete tenants that are on the node but not in desired.json.
    pub prune: bool,
    /// When not empty, plan only the resources matching one of these and
    /// what they depend on.
    pub targets: Vec<super::target::Target>,
}

/// One resource while planning: the change plus what was wanted of it.
struct Draft<'a> {
    change: ResourceChange,
    unknown: BTreeSet<AttrName>,
    /// A VM's Firecracker config before and after; turned into the plan's
    /// `firecracker_config` only if the VM changes, since most do not.
    config: Option<(
        Option<&'a serde_json::Value>,
        Option<&'a resources::vm::FcConfig>,
    )>,
}

pub fn plan(
    desired: &DesiredState,
    node: &NodeConfig,
    observed: &Observed,
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    let corrupt: Vec<(TenantId, String)> = observed
        .tenants
        .iter()
        .filter_map(|(id, t)| t.record_error.as_ref().map(|e| (id.clone(), e.clone())))
        .collect();
    if !corrupt.is_empty() {
        return Err(PlanError::CorruptRecords(corrupt));
    }

    let ctx = Ctx::new(node, observed);
    let tenants = super::resolve::resolve(desired, node, observed)?;
    let mut drafts: Vec<Draft> = Vec::with_capacity(3 + tenants.len() * TenantKind::ALL.len());

    for kind in NodeKind::ALL {
        let addr = ResourceAddr::Node(kind);
        let deps: Vec<ResourceAddr> = kind
            .node_deps()
            .iter()
            .map(|k| ResourceAddr::Node(*k))
            .collect();
        let want = resources::desired_node(&ctx, kind, &tenants);
        let have = resources::observed_node(&ctx, kind);
        if let Some(d) = diff(addr, want, have, deps, ActionReason::DeleteBecauseUnused) {
            drafts.push(d);
        }
    }

    for t in &tenants {
        plan_tenant(&ctx, t, &mut drafts);
    }

    let wanted: HashSet<&TenantId> = tenants.iter().map(|t| t.id()).collect();
    let mut kept = Vec::new();
    for (id, obs) in &observed.tenants {
        if wanted.contains(id) {
            continue;
        }
        let present: Vec<(TenantKind, Attrs)> = TenantKind::ALL
            .into_iter()
            .filter_map(|k| resources::observed_tenant(&ctx, k, id, obs).map(|a| (k, a)))
            .collect();
        if opts.prune {
            for (kind, attrs) in present {
                let addr = ResourceAddr::Tenant(id.clone(), kind);
                let deps = tenant_deps(id, kind, false);
                drafts.extend(diff(
                    addr,
                    None,
                    Some(attrs),
                    deps,
                    ActionReason::DeleteBecauseNotInDesired,
                ));
            }
        } else if obs.is_present() {
            kept.push(KeptTenant {
                tenant_id: id.clone(),
                resources: present
                    .into_iter()
                    .map(|(k, _)| ResourceAddr::Tenant(id.clone(), k))
                    .collect(),
            });
        }
    }

    if !opts.targets.is_empty() {
        drafts = targeted(drafts, &opts.targets);
    }
    drafts.sort_by(|a, b| a.change.address.cmp(&b.change.address));
    let graph = ResourceGraph::new(
        drafts
            .iter()
            .map(|d| (&d.change.address, d.change.depends_on.as_slice())),
    );
    let order = graph.topo_order()?;
    propagate_replacements(&mut drafts, &graph, &order);

    let mut changes: Vec<ResourceChange> = drafts.into_iter().map(finish).collect();
    mark_blocked(&ctx, &tenants, &mut changes);
    let mut warnings = warnings(&ctx, &tenants);
    if !opts.targets.is_empty() {
        let list: Vec<String> = opts.targets.iter().map(ToString::to_string).collect();
        warnings.push(format!(
            "resource targeting is in effect: this plan covers only {} and what they depend on; other changes may be pending",
            list.join(", ")
        ));
    }

    let mut summary = Summary::default();
    for c in &changes {
        match c.actions {
            Action::Create => summary.add += 1,
            Action::Update => summary.change += 1,
            Action::Replace => {
                summary.add += 1;
                summary.destroy += 1
            }
            Action::Delete => summary.destroy += 1,
            Action::NoOp => {}
        }
        if c.blocked.is_some() {
            summary.blocked += 1;
        }
    }

    Ok(Plan {
        format_version: FORMAT_VERSION.to_string(),
        mvm_version: env!("CARGO_PKG_VERSION").to_string(),
        observed_fingerprint: observed.fingerprint(),
        prune: opts.prune,
        applyable: summary.blocked == 0,
        warnings,
        summary,
        resource_changes: changes,
        kept_tenants: kept,
        apply_context: super::ApplyContext {
            node: node.clone(),
            cgroup_mount: observed.cgroup.as_ref().map(|c| c.mount.clone()),
        },
    })
}

/// Keeps the drafts matching a target and, transitively, their
/// dependencies.
fn targeted<'a>(drafts: Vec<Draft<'a>>, targets: &[super::target::Target]) -> Vec<Draft<'a>> {
    let index: std::collections::HashMap<ResourceAddr, usize> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| (d.change.address.clone(), i))
        .collect();
    let mut keep = vec![false; drafts.len()];
    let mut stack: Vec<usize> = (0..drafts.len())
        .filter(|&i| targets.iter().any(|t| t.matches(&drafts[i].change.address)))
        .collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut keep[i], true) {
            continue;
        }
        stack.extend(
            drafts[i]
                .change
                .depends_on
                .iter()
                .filter_map(|d| index.get(d).copied()),
        );
    }
    drafts
        .into_iter()
        .zip(keep)
        .filter_map(|(d, k)| k.then_some(d))
        .collect()
}

fn tenant_deps(id: &TenantId, kind: TenantKind, metadata: bool) -> Vec<ResourceAddr> {
    kind.node_deps(metadata)
        .iter()
        .map(|k| ResourceAddr::Node(*k))
        .chain(
            kind.tenant_deps()
                .iter()
                .map(|k| ResourceAddr::Tenant(id.clone(), *k)),
        )
        .collect()
}

fn plan_tenant<'a>(ctx: &Ctx<'a>, t: &'a ResolvedTenant, drafts: &mut Vec<Draft<'a>>) {
    let obs = ctx.observed.tenant(t.id());
    for kind in TenantKind::ALL {
        let addr = ResourceAddr::Tenant(t.id().clone(), kind);
        let want = resources::desired_tenant(ctx, kind, t);
        let have = obs.and_then(|o| resources::observed_tenant(ctx, kind, t.id(), o));
        let reason = if kind == TenantKind::Vm && t.spec.state == RunState::Stopped {
            ActionReason::DeleteBecauseStopped
        } else {
            ActionReason::DeleteBecauseUnused
        };
        let deps = tenant_deps(t.id(), kind, t.spec.metadata);
        let Some(mut d) = diff(addr, want, have, deps, reason) else {
            continue;
        };
        if kind == TenantKind::Vm {
            let before = obs.and_then(resources::vm::observed_config);
            let after = (d.change.actions != Action::Delete).then_some(&t.fc_config);
            d.config = Some((before, after));
        }
        drafts.push(d);
    }
}

/// Decides the action for one resource from what is wanted and what is.
fn diff(
    address: ResourceAddr,
    want: Option<Desired>,
    have: Option<Attrs>,
    depends_on: Vec<ResourceAddr>,
    delete_reason: ActionReason,
) -> Option<Draft<'static>> {
    let mut change = ResourceChange {
        address,
        actions: Action::NoOp,
        before: None,
        after: None,
        after_unknown: Vec::new(),
        replace_paths: Vec::new(),
        action_reason: None,
        depends_on,
        blocked: None,
        firecracker_config: None,
    };
    let unknown = match (want, have) {
        (None, None) => return None,
        (Some(d), None) => {
            change.actions = Action::Create;
            change.after = Some(d.attrs);
            d.unknown
        }
        (None, Some(b)) => {
            change.actions = Action::Delete;
            change.action_reason = Some(delete_reason);
            change.before = Some(b);
            BTreeSet::new()
        }
        (Some(d), Some(b)) => {
            let keys: BTreeSet<&AttrName> = d.attrs.keys().chain(b.keys()).collect();
            let changed: Vec<AttrName> = keys
                .into_iter()
                .filter(|k| !d.unknown.contains(*k) && d.attrs.get(*k) != b.get(*k))
                .cloned()
                .collect();
            // A tenant tree whose record is lost adopts the planned
            // identity in place: only a known uid that differs replaces it,
            // so a missing record never destroys a tenant's files. Other
            // kinds cannot adopt an unknown prior (a VM mvm did not launch
            // must be replaced).
            let replace_on = change.address.replace_on();
            let adopts = matches!(change.address, ResourceAddr::Tenant(_, TenantKind::Dirs));
            change.replace_paths = changed
                .iter()
                .filter(|k| replace_on.contains(&k.as_ref()))
                .filter(|k| !adopts || b.get(k.as_ref()).is_some_and(|v| !v.is_null()))
                .cloned()
                .collect();
            change.actions = if changed.is_empty() {
                Action::NoOp
            } else if !change.replace_paths.is_empty() {
                change.action_reason = Some(ActionReason::ReplaceBecauseCannotUpdate);
                Action::Replace
            } else {
                Action::Update
            };
            change.after = Some(d.attrs);
            change.before = Some(b);
            d.unknown
        }
    };
    Some(Draft {
        change,
        unknown,
        config: None,
    })
}

/// A replaced resource takes down what is built on it: a dependent that
/// would otherwise be kept or updated is replaced too. A VM also holds its
/// tap, jail and cgroup open, so if one of them is missing and gets created
/// anew, the running VM is replaced to use it. Walks in dependency order so
/// replacement spreads transitively.
fn propagate_replacements(drafts: &mut [Draft], graph: &ResourceGraph, order: &[ResourceAddr]) {
    for addr in order {
        let node = graph.index(addr).expect("every draft is in the graph");
        let action = drafts[node.index()].change.actions;
        let held_by_vm = matches!(
            addr,
            ResourceAddr::Tenant(_, TenantKind::Tap | TenantKind::Jail | TenantKind::Cgroup)
        );
        if action != Action::Replace && !(action == Action::Create && held_by_vm) {
            continue;
        }
        for dep in graph
            .graph
            .neighbors_directed(node, petgraph::Direction::Outgoing)
        {
            let c = &mut drafts[dep.index()].change;
            if !matches!(c.actions, Action::NoOp | Action::Update) {
                continue;
            }
            if action == Action::Replace {
                c.actions = Action::Replace;
                c.action_reason = Some(ActionReason::ReplaceBecauseDependencyReplaced {
                    dependency: addr.clone(),
                });
            } else if matches!(c.address, ResourceAddr::Tenant(_, TenantKind::Vm)) {
                c.actions = Action::Replace;
                c.action_reason = Some(ActionReason::ReplaceBecauseDependencyCreated {
                    dependency: addr.clone(),
                });
            }
        }
    }
}

/// Fills `after` for values that stay as they are and lists the unknowns.
fn finish(d: Draft) -> ResourceChange {
    let config = d.config;
    let mut c = d.change;
    if let Some(after) = c.after.as_mut() {
        for k in &d.unknown {
            let keep = matches!(c.actions, Action::NoOp | Action::Update);
            match c.before.as_ref().and_then(|b| b.get(k)).filter(|_| keep) {
                Some(v) => {
                    after.insert(k.clone(), v.clone());
                }
                None => {
                    after.remove(k);
                    c.after_unknown.push(k.clone());
                }
            }
        }
    }
    if c.actions != Action::NoOp
        && let Some((before, after)) = config
    {
        c.firecracker_config = Some(ConfigChange {
            before: before.cloned(),
            after: after.map(resources::vm::config_value),
        });
    }
    c
}

fn mark_blocked(ctx: &Ctx, tenants: &[ResolvedTenant], changes: &mut [ResourceChange]) {
    let by_id: std::collections::HashMap<&TenantId, &ResolvedTenant> =
        tenants.iter().map(|t| (t.id(), t)).collect();
    for c in changes.iter_mut() {
        if c.actions == Action::NoOp {
            continue;
        }
        if !resources::has_provider(&c.address) {
            c.blocked = Some(format!(
                "this mvm build has no provider for {} resources yet",
                c.address.kind_word()
            ));
            continue;
        }
        if c.actions == Action::Delete {
            continue;
        }
        let ResourceAddr::Tenant(id, kind) = &c.address else {
            continue;
        };
        let Some(t) = by_id.get(id) else { continue };
        c.blocked = match kind {
            TenantKind::Cgroup => resources::cgroup::blocked(ctx, t),
            TenantKind::Vm if !ctx.observed.binaries.firecracker => Some(format!(
                "no Firecracker binary at {}",
                ctx.node.firecracker.binary.display()
            )),
            _ => None,
        };
    }
}

fn warnings(ctx: &Ctx, tenants: &[ResolvedTenant]) -> Vec<String> {
    let mut w = Vec::new();
    let obs = ctx.observed;
    let running = tenants.iter().any(|t| t.spec.state == RunState::Running);
    if running && !obs.binaries.jailer {
        w.push(format!(
            "no jailer at {}: VMs will run Firecracker directly, without its chroot, uid/gid drop or cgroup placement",
            ctx.node.firecracker.jailer.display()
        ));
    }
    if let Some(reason) = obs.facts.get("nft") {
        w.push(format!("nftables could not be read ({reason}): node.nft and tenant.*.nft are planned as if absent"));
    }
    if let Some(reason) = obs.facts.get("netlink") {
        w.push(format!("network links could not be read ({reason}): node.bridge and tenant.*.tap are planned as if absent"));
    }
    if ctx.node.cgroup.allow_missing_controllers && !tenants.is_empty() {
        let all: BTreeSet<&str> = tenants
            .iter()
            .flat_map(|t| {
                resources::cgroup::missing_controllers(
                    ctx,
                    &crate::security::cgroups::CgroupLimits::for_tenant(&t.spec),
                )
            })
            .collect();
        if !all.is_empty() {
            w.push(format!(
                "cgroup controllers {} are missing and cgroup.allow_missing_controllers is set: those tenant limits are NOT enforced",
                all.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    w
}
