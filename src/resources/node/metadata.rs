//! `node.metadata`: the metadata endpoint guests reach at the metadata
//! address, redirected by nftables to a listener on the gateway. It exists
//! while some tenant enables metadata — a desired one, or one kept on the
//! node though absent from desired.json (kept tenants keep what they
//! depend on). The service is `mvm metadata serve`, a detached process of
//! this mvm's version, tracked by pid and start time in
//! `<state>/metadata.json`: a dead one, one of another version or one
//! listening elsewhere is drift, and is restarted.

use crate::host::HostResult;
use crate::host::ProcessRef;
use crate::observed::{Observed, ServiceObs};
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, PlanCtx, Provider, Resource, Scope, Subject,
};
use crate::security::metadata::Policy;
use crate::spec::TenantSpec;
use crate::spec::types::TenantId;
use serde::Deserialize;

pub struct Metadata;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataAttrs {
    pub listen: String,
    /// The mvm version the service runs.
    pub version: Option<String>,
    /// Known after apply.
    pub pid: Option<u32>,
    /// The per-tenant rate limit it enforces (node.toml).
    pub rate_per_sec: Option<u32>,
    pub burst: Option<u32>,
    /// Whether reads need a session token (node.toml).
    pub tokens: Option<crate::security::metadata::Tokens>,
}

/// The rate limit and token rule node.toml asks for.
fn policy(node: &crate::spec::NodeConfig) -> Policy {
    Policy {
        per_sec: node.metadata.rate_per_sec,
        burst: node.metadata.burst,
        tokens: node.metadata.tokens,
    }
}

pub fn listen(ctx: &PlanCtx) -> String {
    format!("{}:{}", ctx.node.bridge.gateway, ctx.node.metadata.port)
}

impl Resource for Metadata {
    type Attrs = MetadataAttrs;
    const WORD: &'static str = "metadata";
    /// Tenant networking (the metadata service is the far end of the nft
    /// redirect).
    const NETWORK: bool = true;
    const SCOPE: Scope = Scope::Node;
    const REPLACE_ON: &'static [&'static str] =
        &["listen", "version", "rate_per_sec", "burst", "tokens"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Node("bridge"), Dep::Node("nft")]
    }

    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Node(view) = s else { return None };
        let wanted = view.tenants.iter().any(|t| t.spec.metadata);
        // A kept tenant's metadata membership is what its nft elements say.
        let kept = view
            .kept
            .iter()
            .any(|t| t.nft.as_ref().is_some_and(|n| n.metadata));
        if !wanted && !kept {
            return None;
        }
        let mut d = Desired::default();
        d.set("listen", listen(ctx));
        d.set("version", env!("CARGO_PKG_VERSION"));
        d.unknown("pid");
        d.set("rate_per_sec", ctx.node.metadata.rate_per_sec);
        d.set("burst", ctx.node.metadata.burst);
        d.set("tokens", ctx.node.metadata.tokens.as_str());
        Some(d)
    }

    /// The service mvm started (recorded, alive, an mvm of the recorded
    /// start) while it listens where it was told to. Anything else on the
    /// port is not mvm's: never deleted, and it blocks a start.
    fn observed(&self, ctx: &PlanCtx, _: At) -> Option<Attrs> {
        let l = ctx.observed.metadata_listener.as_ref()?;
        let s = ctx
            .observed
            .metadata_service
            .as_ref()
            .filter(|s| s.listen == *l)?;
        let mut a = Attrs::new();
        a.insert("listen".into(), l.clone().into());
        a.insert("version".into(), s.version.clone().into());
        a.insert("pid".into(), s.pid.into());
        a.insert("rate_per_sec".into(), s.rate_per_sec.into());
        a.insert("burst".into(), s.burst.into());
        a.insert("tokens".into(), s.tokens.as_str().into());
        Some(a)
    }

    fn blocked(&self, ctx: &PlanCtx, _: Subject) -> Option<String> {
        let l = ctx.observed.metadata_listener.as_ref()?;
        let ours = ctx
            .observed
            .metadata_service
            .as_ref()
            .is_some_and(|s| s.listen == *l);
        (!ours).then(|| {
            format!(
                "something other than the service mvm started listens at {l}: stop it \
                 (`ss -ltnp 'sport = :{}'` names it), then reconcile again",
                ctx.node.metadata.port
            )
        })
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        _: Option<&TenantId>,
        after: Option<&MetadataAttrs>,
        _: &Documents,
    ) {
        obs.metadata_listener = after.map(|a| a.listen.clone());
        obs.metadata_service = after.map(|a| ServiceObs {
            pid: a.pid.unwrap_or(4200),
            start_time: 42,
            version: a.version.clone().unwrap_or_default(),
            listen: a.listen.clone(),
            rate_per_sec: a.rate_per_sec.unwrap_or_default(),
            burst: a.burst.unwrap_or_default(),
            tokens: a.tokens.unwrap_or_default(),
        });
    }

    fn check(&self, ctx: &PlanCtx, _: Option<&TenantId>, a: &MetadataAttrs) -> Result<(), String> {
        let want = policy(ctx.node);
        if a.listen != listen(ctx)
            || a.version.as_deref() != Some(env!("CARGO_PKG_VERSION"))
            || a.rate_per_sec != Some(want.per_sec)
            || a.burst != Some(want.burst)
            || a.tokens != Some(want.tokens)
        {
            return Err(format!(
                "listen, version, rate limit and tokens are always {}, this mvm's, and node.toml's {}/s burst {} tokens {}",
                listen(ctx),
                want.per_sec,
                want.burst,
                want.tokens.as_str()
            ));
        }
        Ok(())
    }
}

/// The service `<state>/metadata.json` names, as recorded.
fn recorded(ctx: &ApplyCtx) -> Option<ServiceObs> {
    let bytes = ctx
        .host
        .files
        .read(&ctx.layout.metadata_service(), 4096)
        .ok()??;
    crate::spec::json::from_slice(&bytes).ok()
}

impl Provider<MetadataAttrs> for Metadata {
    /// Stops the service mvm started before, if it still runs, starts one
    /// of this version, and records its pid and start time.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        _: Option<&TenantId>,
        _: Option<&MetadataAttrs>,
        after: &MetadataAttrs,
        _: &Documents,
    ) -> HostResult {
        if let Some(old) = recorded(ctx) {
            ctx.host.services.stop_service(ProcessRef {
                pid: old.pid,
                start_time: old.start_time,
            })?;
        }
        // Recorded as soon as it exists, so mvm dying before it listens
        // leaves a record the next run stops, never an orphan.
        let mut record = |r: ProcessRef| {
            let rec = ServiceObs {
                pid: r.pid,
                start_time: r.start_time,
                version: env!("CARGO_PKG_VERSION").to_string(),
                listen: after.listen.clone(),
                rate_per_sec: ctx.node.metadata.rate_per_sec,
                burst: ctx.node.metadata.burst,
                tokens: ctx.node.metadata.tokens,
            };
            let text = crate::spec::json::file_text(&rec);
            ctx.host
                .files
                .write_file(&ctx.layout.metadata_service(), &text, 0o600)
        };
        let started = ctx.host.services.start_metadata(
            &after.listen,
            policy(&ctx.node),
            ctx.layout.root(),
            &mut record,
        );
        if started.is_err() {
            // The process is gone; so goes its record.
            let _ = ctx.host.files.remove_tree(&ctx.layout.metadata_service());
        }
        started.map(|_| ())
    }

    /// Stops the service (only the process mvm recorded) and forgets it.
    fn delete(
        &self,
        ctx: &ApplyCtx,
        _: Option<&TenantId>,
        _: Option<&MetadataAttrs>,
    ) -> HostResult {
        if let Some(old) = recorded(ctx) {
            ctx.host.services.stop_service(ProcessRef {
                pid: old.pid,
                start_time: old.start_time,
            })?;
        }
        ctx.host.files.remove_tree(&ctx.layout.metadata_service())
    }
}
