//! `mvm net verify`: checks, item by item, that a node's network is what
//! the desired state renders — mvm's nftables rules, sets and elements, the
//! bridge, every tenant's tap, the sysctls, the metadata service while a
//! tenant enables it, and that nothing else hangs off the bridge. Pure: it compares the network kinds' desired attributes with
//! what the probe observed, so it runs on a captured observation as well
//! as on the node.

use crate::observed::Observed;
use crate::observed::fact;
use crate::plan::PlanError;
use crate::resources::{At, KindId, NodeView, PlanCtx, ResourceAddr, Scope, Subject};
use crate::spec::{DesiredState, NodeConfig};
use serde::Serialize;
use serde_json::Value;

/// One item of the checklist.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `node.bridge: up`, `node.nft: rule inet mvm forward: …`.
    pub check: String,
    pub ok: bool,
    /// Why it failed (or what was found), when there is more to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The result: every check, and whether all passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub ok: bool,
    pub passed: usize,
    pub failed: usize,
    pub checks: Vec<Check>,
}

fn pass(check: impl Into<String>, detail: Option<String>) -> Check {
    Check {
        check: check.into(),
        ok: true,
        detail,
    }
}

fn fail(check: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        ok: false,
        detail: Some(detail.into()),
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "absent".into(),
        Some(v) => v.to_string(),
    }
}

/// Compares one resource's desired and observed attributes, attribute by
/// attribute; lists and maps element by element.
fn compare(
    addr: &ResourceAddr,
    want: &crate::resources::Attrs,
    have: Option<&crate::resources::Attrs>,
    out: &mut Vec<Check>,
) {
    let Some(have) = have else {
        out.push(fail(addr.to_string(), "missing"));
        return;
    };
    for (name, w) in want {
        let h = have.get(name);
        match (w, h) {
            (Value::Array(ws), Some(Value::Array(hs))) => {
                let what = name.trim_end_matches('s');
                let missing: Vec<&Value> = ws.iter().filter(|x| !hs.contains(x)).collect();
                let extra: Vec<&Value> = hs.iter().filter(|x| !ws.contains(x)).collect();
                for m in &missing {
                    out.push(fail(
                        format!("{addr}: {what} {}", m.as_str().unwrap_or(&m.to_string())),
                        "missing",
                    ));
                }
                for e in &extra {
                    out.push(fail(
                        format!("{addr}: {what} {}", e.as_str().unwrap_or(&e.to_string())),
                        "not rendered by the desired state (added or altered by hand?)",
                    ));
                }
                if missing.is_empty() && extra.is_empty() {
                    if ws == hs {
                        out.push(pass(
                            format!("{addr}: {name}"),
                            Some(format!("{} as rendered", ws.len())),
                        ));
                    } else {
                        out.push(fail(
                            format!("{addr}: {name}"),
                            "in another order than rendered",
                        ));
                    }
                }
            }
            (Value::Object(ws), Some(Value::Object(hs))) => {
                for (k, v) in ws {
                    let check = format!("{addr}: {} {k}", name.trim_end_matches('s'));
                    match hs.get(k) {
                        Some(x) if x == v => out.push(pass(check, Some(format!("= {v}")))),
                        x => out.push(fail(check, format!("want {v}, have {}", show(x)))),
                    }
                }
            }
            (w, h) if Some(w) == h => out.push(pass(format!("{addr}: {name}"), None)),
            (w, h) => out.push(fail(
                format!("{addr}: {name}"),
                format!("want {w}, have {}", show(h)),
            )),
        }
    }
}

/// Checks the node's network against `desired`.
pub fn verify(
    node: &NodeConfig,
    desired: &DesiredState,
    observed: &Observed,
) -> Result<Verification, PlanError> {
    let tenants = crate::plan::resolve::resolve(desired, node, observed)?;
    let ctx = PlanCtx::new(node, observed);
    let view = NodeView {
        tenants: &tenants,
        kept: Vec::new(),
    };
    let mut checks = Vec::new();
    let net = |scope: Scope| KindId::all(scope).filter(|k| k.get().network());
    for kind in net(Scope::Node) {
        let k = kind.get();
        let addr = ResourceAddr::node(kind);
        if let Some(want) = k.desired(&ctx, Subject::Node(&view)) {
            compare(
                &addr,
                &want.attrs,
                k.observed(&ctx, At::Node).as_ref(),
                &mut checks,
            );
        }
    }
    // Nothing but the tenants' taps on the bridge.
    if let Some(b) = &observed.bridge {
        let taps: Vec<String> = tenants.iter().map(|t| t.id().tap_name()).collect();
        let foreign: Vec<&String> = b.ports.iter().filter(|p| !taps.contains(p)).collect();
        let check = format!(
            "node.bridge: ports ({} is only for tenant taps)",
            node.bridge.name
        );
        if foreign.is_empty() {
            checks.push(pass(check, Some(format!("{} taps", b.ports.len()))));
        } else {
            let names: Vec<&str> = foreign.iter().map(|s| s.as_str()).collect();
            checks.push(fail(check, format!("unexpected: {}", names.join(", "))));
        }
    }
    let empty = crate::observed::ObservedTenant::default();
    for t in &tenants {
        let obs = observed.tenant(t.id()).unwrap_or(&empty);
        for kind in net(Scope::Tenant) {
            let k = kind.get();
            let addr = ResourceAddr::tenant_kind(t.id().clone(), kind);
            if let Some(want) = k.desired(&ctx, Subject::Tenant(t)) {
                let have = k.observed(&ctx, At::Tenant(t.id(), obs));
                compare(&addr, &want.attrs, have.as_ref(), &mut checks);
            }
        }
    }
    for (fact, why) in &observed.facts {
        if [fact::NETLINK, fact::NFT, fact::FDB].contains(&fact.as_str()) {
            checks.push(fail(
                format!("probe: {fact}"),
                format!("could not be read: {why}"),
            ));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    Ok(Verification {
        ok: failed == 0,
        passed: checks.len() - failed,
        failed,
        checks,
    })
}
