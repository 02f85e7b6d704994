//! The planner: compares what the spec asks for with what the probes found
//! and decides an action per resource. Pure and linear in the number of
//! resources. It iterates the kind registry and never names a kind: what
//! differs between kinds (dependencies, replace rules, adoption, what a
//! running resource holds open, blocking, warnings, documents) each kind
//! says for itself.

use super::{
    Action, ActionReason, FORMAT_VERSION, KeptTenant, Plan, PlanError, ResourceChange, Summary,
};
use crate::observed::{Observed, ObservedTenant};
use crate::resources::{
    At, AttrName, Attrs, Desired, Documents, KindId, NodeView, PlanCtx, ResolvedTenant,
    ResourceAddr, Scope, Subject, Unwanted,
};
use crate::spec::types::TenantId;
use crate::spec::{DesiredState, NodeConfig};
use std::collections::{BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Delete tenants that are on the node but not in desired.json.
    pub prune: bool,
    /// When not empty, plan only the resources matching one of these and
    /// what they depend on.
    pub targets: Vec<super::target::Target>,
    /// Tenants whose VM moves to its newest staged secrets generation
    /// (`mvm tenant secrets rotate`); any other running VM keeps its own.
    pub rotate_secrets: BTreeSet<TenantId>,
    /// How many threads may plan tenants at once (0 and 1: only the
    /// caller's). The plan is the same whatever the number: tenants are
    /// planned in chunks, and the chunks joined in order.
    pub threads: usize,
}

/// Tenants a planning thread takes at least: below that, a thread costs
/// more than it saves.
const TENANTS_PER_THREAD: usize = 256;

/// One resource while planning: the change, what was wanted of it, and
/// the tenant it belongs to (for documents and blocking, computed only for
/// resources that change).
struct Draft<'a> {
    change: ResourceChange,
    unknown: Vec<AttrName>,
    want: Option<&'a ResolvedTenant>,
}

pub fn plan(
    desired: &DesiredState,
    node: &NodeConfig,
    observed: &Observed,
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    check_records(node, observed)?;

    let mut ctx = PlanCtx::new(node, observed);
    ctx.rotate_secrets = opts.rotate_secrets.clone();
    let tenants = super::resolve::resolve(desired, node, observed)?;
    let wanted: HashSet<&TenantId> = tenants.iter().map(|t| t.id()).collect();
    let absent: Vec<(&TenantId, &ObservedTenant)> = observed
        .tenants
        .iter()
        .filter(|(id, _)| !wanted.contains(id))
        .collect();
    let view = NodeView {
        tenants: &tenants,
        kept: if opts.prune {
            Vec::new()
        } else {
            absent.iter().map(|(_, t)| *t).collect()
        },
    };
    let node_kinds: Vec<KindId> = KindId::all(Scope::Node).collect();
    let tenant_kinds: Vec<KindId> = KindId::all(Scope::Tenant).collect();
    let make_drafts = |only: Option<&[super::target::Target]>| {
        let mut drafts: Vec<Draft> =
            Vec::with_capacity(node_kinds.len() + tenants.len() * tenant_kinds.len());
        let kinds = Kinds {
            all: &tenant_kinds,
            only,
        };
        draft_wanted(&ctx, &view, &node_kinds, kinds, opts.threads, &mut drafts);
        let kept = draft_absent(&ctx, &absent, &tenant_kinds, opts.prune, &mut drafts);
        (drafts, kept)
    };
    // A targeted plan drafts only what its targets can keep; should a
    // target match nothing, everything is drafted, so that its "did you
    // mean" is chosen among every address, as without the shortcut.
    let targeted_only = (!opts.targets.is_empty()).then_some(opts.targets.as_slice());
    let (mut drafts, mut kept) = make_drafts(targeted_only);
    if targeted_only.is_some() && !unmatched_targets(&drafts, &opts.targets).is_empty() {
        (drafts, kept) = make_drafts(None);
    }

    let mut warnings: Vec<String> = Vec::new();
    if !opts.targets.is_empty() {
        // A target naming a tenant neither desired nor on the node is a
        // typo (a kind word is checked when parsed): an error, not a
        // converged node. A known tenant's kind with nothing to do is
        // simply converged; a wildcard or node kind matching nothing is
        // said.
        let known: HashSet<&TenantId> = wanted
            .iter()
            .copied()
            .chain(observed.tenants.keys())
            .collect();
        let (named, other): (Vec<_>, Vec<_>) = unmatched_targets(&drafts, &opts.targets)
            .into_iter()
            .filter(|(t, _)| t.tenant().is_none_or(|id| !known.contains(id)))
            .partition(|(t, _)| t.names_a_tenant());
        if !named.is_empty() {
            return Err(PlanError::UnmatchedTargets(
                named.into_iter().map(|(_, m)| m).collect(),
            ));
        }
        warnings.extend(other.into_iter().map(|(_, m)| m));
        drafts = targeted(drafts, &opts.targets);
    }
    drafts.sort_by(|a, b| a.change.address.cmp(&b.change.address));
    propagate_replacements(&mut drafts);

    let changes = finish_all(&ctx, &view, drafts, opts.threads);
    let mut all_warnings: Vec<String> = KindId::all(Scope::Node)
        .chain(KindId::all(Scope::Tenant))
        .flat_map(|k| k.get().warnings(&ctx, &view))
        .collect();
    if !opts.targets.is_empty() {
        let list: Vec<String> = opts.targets.iter().map(ToString::to_string).collect();
        all_warnings.push(format!(
            "resource targeting is in effect: this plan covers only {} and what they depend on; other changes may be pending",
            list.join(", ")
        ));
    }
    all_warnings.append(&mut warnings);

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
        targets: opts.targets.iter().map(|t| t.to_string()).collect(),
        applyable: summary.blocked == 0,
        warnings: all_warnings,
        summary,
        resource_changes: changes,
        kept_tenants: kept,
        overrides: Vec::new(),
        apply_context: super::MadeAgainst {
            node: node.clone(),
            cgroup_mount: observed.cgroup.as_ref().map(|c| c.mount.clone()),
        },
    })
}

/// Records that cannot be trusted stop the plan: unreadable ones, and
/// identities node.toml does not allow or two records share.
fn check_records(node: &NodeConfig, observed: &Observed) -> Result<(), PlanError> {
    let mut corrupt: Vec<(TenantId, String)> = observed
        .tenants
        .iter()
        .filter_map(|(id, t)| t.record_error.as_ref().map(|e| (id.clone(), e.clone())))
        .collect();
    corrupt.extend(crate::state::record::identity_problems(
        node,
        observed
            .tenants
            .iter()
            .filter_map(|(id, t)| Some((id, t.record.as_ref()?))),
    ));
    if corrupt.is_empty() {
        Ok(())
    } else {
        Err(PlanError::CorruptRecords(corrupt))
    }
}

/// The node's resources and every desired tenant's: what is wanted
/// against what the host has. Tenants are planned on up to `threads`
/// threads, each a contiguous chunk, joined in order.
fn draft_wanted<'a>(
    ctx: &PlanCtx,
    view: &NodeView<'a>,
    node_kinds: &[KindId],
    tenant_kinds: Kinds,
    threads: usize,
    drafts: &mut Vec<Draft<'a>>,
) {
    let observed = ctx.observed;
    for &kind in node_kinds {
        let k = kind.get();
        let subject = Subject::Node(view);
        let addr = ResourceAddr::node(kind);
        let deps = ResourceAddr::deps_of(None, k.depends_on(None));
        let want = k.desired(ctx, subject);
        let have = k.observed(ctx, At::Node);
        let reason = delete_reason(k.unwanted(subject));
        drafts.extend(diff(addr, want, have, deps, reason, None));
    }

    let tenants: &'a [ResolvedTenant] = view.tenants;
    let per = chunk_size(tenants.len(), threads);
    let mut chunks = tenants.chunks(per);
    let draft = |chunk: &'a [ResolvedTenant]| {
        let mut out = Vec::with_capacity(chunk.len() * tenant_kinds.all.len());
        for t in chunk {
            let obs = observed.tenant(t.id());
            for &kind in tenant_kinds.of(t).iter() {
                let k = kind.get();
                let subject = Subject::Tenant(t);
                let addr = ResourceAddr::tenant_kind(t.id().clone(), kind);
                let deps = ResourceAddr::deps_of(Some(t.id()), k.depends_on(Some(&t.spec)));
                let want = k.desired(ctx, subject);
                let have = obs.and_then(|o| k.observed(ctx, At::Tenant(t.id(), o)));
                let reason = delete_reason(k.unwanted(subject));
                out.extend(diff(addr, want, have, deps, reason, Some(t)));
            }
        }
        out
    };
    let first = chunks.next();
    std::thread::scope(|s| {
        let others: Vec<_> = chunks.map(|c| s.spawn(move || draft(c))).collect();
        if let Some(c) = first {
            drafts.extend(draft(c));
        }
        for h in others {
            drafts.extend(joined(h));
        }
    });
}

/// The tenant kinds to draft: all of them, or, for a targeted plan, those
/// of a tenant that a target names and, transitively, what they depend
/// on — the rest would be planned only to be dropped by `targeted`.
#[derive(Clone, Copy)]
struct Kinds<'k> {
    all: &'k [KindId],
    only: Option<&'k [super::target::Target]>,
}

impl Kinds<'_> {
    fn of(&self, t: &ResolvedTenant) -> std::borrow::Cow<'_, [KindId]> {
        let Some(targets) = self.only else {
            return self.all.into();
        };
        let named = |k: KindId| {
            let addr = ResourceAddr::tenant_kind(t.id().clone(), k);
            targets.iter().any(|x| x.matches(&addr))
        };
        let mut keep: Vec<KindId> = self.all.iter().copied().filter(|&k| named(k)).collect();
        let mut i = 0;
        while i < keep.len() {
            let deps = ResourceAddr::deps_of(Some(t.id()), keep[i].get().depends_on(Some(&t.spec)));
            for d in deps.iter().filter(|d| d.tenant().is_some()) {
                if !keep.contains(&d.kind()) {
                    keep.push(d.kind());
                }
            }
            i += 1;
        }
        // In registry order, as without targets.
        self.all
            .iter()
            .copied()
            .filter(|k| keep.contains(k))
            .collect::<Vec<_>>()
            .into()
    }
}

/// How many of `n` items each of at most `threads` threads takes.
fn chunk_size(n: usize, threads: usize) -> usize {
    n.div_ceil(threads.max(1)).max(TENANTS_PER_THREAD)
}

/// A planning thread's result; its panic, the caller's.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Every draft finished (`finish`) where it lies, on up to `threads`
/// threads each taking a contiguous part; then the changes, in order, in
/// the drafts' own memory.
fn finish_all(
    ctx: &PlanCtx,
    view: &NodeView,
    mut drafts: Vec<Draft>,
    threads: usize,
) -> Vec<ResourceChange> {
    // A tenant has a handful of resources (eight, as the registry stands).
    let per = drafts
        .len()
        .div_ceil(threads.max(1))
        .max(TENANTS_PER_THREAD * 8);
    let finish_part = |part: &mut [Draft]| part.iter_mut().for_each(|d| finish(ctx, view, d));
    std::thread::scope(|s| {
        let mut parts = drafts.chunks_mut(per);
        let first = parts.next();
        let others: Vec<_> = parts.map(|p| s.spawn(move || finish_part(p))).collect();
        if let Some(p) = first {
            finish_part(p);
        }
        others.into_iter().for_each(joined);
    });
    drafts.into_iter().map(|d| d.change).collect()
}

/// The tenants on the node but not desired: deleted with `prune`, else
/// kept (and listed).
fn draft_absent<'a>(
    ctx: &PlanCtx,
    absent: &[(&TenantId, &ObservedTenant)],
    tenant_kinds: &[KindId],
    prune: bool,
    drafts: &mut Vec<Draft<'a>>,
) -> Vec<KeptTenant> {
    let mut kept = Vec::new();
    for (id, obs) in absent {
        let present: Vec<(KindId, Attrs)> = tenant_kinds
            .iter()
            .filter_map(|&k| k.get().observed(ctx, At::Tenant(id, obs)).map(|a| (k, a)))
            .collect();
        if prune {
            for (kind, attrs) in present {
                let addr = ResourceAddr::tenant_kind((*id).clone(), kind);
                let deps = ResourceAddr::deps_of(Some(id), kind.get().depends_on(None));
                drafts.extend(diff(
                    addr,
                    None,
                    Some(attrs),
                    deps,
                    ActionReason::DeleteBecauseNotInDesired,
                    None,
                ));
            }
        } else if obs.is_present() {
            kept.push(KeptTenant {
                tenant_id: (*id).clone(),
                resources: present
                    .into_iter()
                    .map(|(k, _)| ResourceAddr::tenant_kind((*id).clone(), k))
                    .collect(),
            });
        }
    }
    kept
}

fn delete_reason(u: Unwanted) -> ActionReason {
    match u {
        Unwanted::Unused => ActionReason::DeleteBecauseUnused,
        Unwanted::Stopped => ActionReason::DeleteBecauseStopped,
    }
}

/// A warning for each target that matches no resource on this node or in
/// desired.json, with the closest address when one is a plausible typo.
fn unmatched_targets<'t>(
    drafts: &[Draft],
    targets: &'t [super::target::Target],
) -> Vec<(&'t super::target::Target, String)> {
    let unmatched: Vec<&super::target::Target> = targets
        .iter()
        .filter(|t| !drafts.iter().any(|d| t.matches(&d.change.address)))
        .collect();
    if unmatched.is_empty() {
        return Vec::new();
    }
    // The names to suggest, made only when a target matched nothing.
    let mut names: BTreeSet<String> = BTreeSet::new();
    for d in drafts {
        names.insert(d.change.address.to_string());
        if let Some(id) = d.change.address.tenant() {
            names.insert(format!("tenant.{id}"));
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    unmatched
        .into_iter()
        .map(|t| {
            let near = crate::spec::problems::closest(&t.to_string(), &names)
                .map(|n| format!("; did you mean {n}?"))
                .unwrap_or_default();
            (
                t,
                format!("--target {t} matches no resource in desired.json or on this node{near}"),
            )
        })
        .collect()
}

/// Keeps the drafts matching a target and, transitively, their
/// dependencies.
fn targeted<'a>(drafts: Vec<Draft<'a>>, targets: &[super::target::Target]) -> Vec<Draft<'a>> {
    let index: HashMap<ResourceAddr, usize> = drafts
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
        // A delete needs nothing created or changed first (stopping a VM
        // builds no artifact); it takes along only dependencies that are
        // going too (the last tap's delete, the bridge's).
        let deleting = drafts[i].change.actions == Action::Delete;
        stack.extend(
            drafts[i]
                .change
                .depends_on
                .iter()
                .filter_map(|d| index.get(d).copied())
                .filter(|&j| !deleting || drafts[j].change.actions == Action::Delete),
        );
    }
    drafts
        .into_iter()
        .zip(keep)
        .filter_map(|(d, k)| k.then_some(d))
        .collect()
}

/// Decides the action for one resource from what is wanted and what is.
fn diff<'a>(
    address: ResourceAddr,
    want: Option<Desired>,
    have: Option<Attrs>,
    depends_on: Vec<ResourceAddr>,
    delete_reason: ActionReason,
    tenant: Option<&'a ResolvedTenant>,
) -> Option<Draft<'a>> {
    let kind = address.kind().get();
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
        documents: Documents::new(),
    };
    let wanted = want.is_some();
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
            Vec::new()
        }
        (Some(d), Some(b)) => {
            let keys: BTreeSet<&AttrName> = d.attrs.keys().chain(b.keys()).collect();
            let changed: Vec<AttrName> = keys
                .into_iter()
                .filter(|k| !d.unknown.contains(*k) && d.attrs.get(*k) != b.get(*k))
                .cloned()
                .collect();
            // A kind that adopts an unknown prior is only replaced by a
            // known value that differs; others cannot adopt what they do
            // not know (a VM mvm did not launch must be replaced).
            let replace_on = kind.replace_on();
            let adopts = kind.adopts_unknown_prior();
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
        want: tenant.filter(|_| wanted),
    })
}

/// A replaced resource takes down what is built on it: a dependent that
/// would otherwise be kept or updated is replaced too. A resource that
/// holds a dependency open (a VM its tap, jail and cgroup) is replaced when
/// that dependency is missing and gets created anew.
///
/// The drafts are in address order, and that is a dependency order: node
/// resources come first, a tenant's resources are together, and the
/// registry lists each kind after what it depends on (a test holds it to
/// that). So one walk forwards sees every dependency's final action before
/// its dependents, and replacement spreads transitively; the reason named
/// is the first dependency, in that order, that forces it.
fn propagate_replacements(drafts: &mut [Draft]) {
    let forces = |a: Action| matches!(a, Action::Replace | Action::Create);
    // Whether anything before could force a replacement: a converged
    // node's plan looks up no dependency at all.
    let mut forcing = false;
    for i in 0..drafts.len() {
        let (before, rest) = drafts.split_at_mut(i);
        let c = &mut rest[0].change;
        if !forcing || !matches!(c.actions, Action::NoOp | Action::Update) {
            forcing |= forces(c.actions);
            continue;
        }
        let holds = c.address.kind().get().holds();
        let mut cause: Option<(usize, bool)> = None;
        for dep in &c.depends_on {
            let Some(j) = position(before, dep) else {
                continue;
            };
            let replaced = match before[j].change.actions {
                Action::Replace => true,
                Action::Create if holds.contains(&dep.kind_word()) => false,
                _ => continue,
            };
            if cause.is_none_or(|(k, _)| j < k) {
                cause = Some((j, replaced));
            }
        }
        if let Some((j, replaced)) = cause {
            let dependency = before[j].change.address.clone();
            c.actions = Action::Replace;
            c.action_reason = Some(if replaced {
                ActionReason::ReplaceBecauseDependencyReplaced { dependency }
            } else {
                ActionReason::ReplaceBecauseDependencyCreated { dependency }
            });
            forcing = true;
        }
    }
}

/// Where `dep` is among `before`, which is sorted by address: a tenant's
/// own kinds lie just before its resource, the node's at the start. `None`
/// for a dependency with nothing planned (there and unchanged, or not part
/// of this plan).
fn position(before: &[Draft], dep: &ResourceAddr) -> Option<usize> {
    let find = |s: &[Draft]| s.binary_search_by(|d| d.change.address.cmp(dep)).ok();
    let near = before
        .len()
        .saturating_sub(crate::resources::REGISTRY.len());
    find(&before[near..])
        .map(|k| near + k)
        .or_else(|| find(&before[..near]))
}

/// Fills `after` for values that stay as they are, lists the unknowns,
/// and, for a change, adds its documents and why it is blocked here.
fn finish(ctx: &PlanCtx, view: &NodeView, d: &mut Draft) {
    let c = &mut d.change;
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
    if c.actions == Action::NoOp {
        return;
    }
    let kind = c.address.kind().get();
    let at = c.address.tenant().and_then(|id| ctx.observed.tenant(id));
    let want = d.want.filter(|_| c.actions != Action::Delete);
    c.documents = kind.documents(ctx, at, want);
    c.blocked = if c.actions == Action::Delete {
        None
    } else {
        match (c.address.tenant(), d.want) {
            (None, _) => kind.blocked(ctx, Subject::Node(view)),
            (Some(_), Some(t)) => kind.blocked(ctx, Subject::Tenant(t)),
            (Some(_), None) => None,
        }
    };
}
