//! The operator's overrides (`<state>/overrides.json`): what an operator
//! set by hand on this node, which holds against the control plane's
//! desired state until it is undone. The node's desired state is the
//! control plane's document with these merged in (`merge`); nothing after
//! the merge knows there were two sources.
//!
//! A tenant's overrides: a **pin** (its flake ref, and with a lock hash
//! only a build of that lock) and a **state** (stopped or running). An
//! override of a tenant the control plane no longer desires is reported
//! and ignored, never applied.

use super::desired::{DesiredState, RunState};
use super::types::{TenantId, check_flake_ref, check_lock_hash};
use super::{NodeConfig, SpecError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The format this mvm writes and reads.
pub const OVERRIDES_VERSION: u32 = 1;

/// The largest `overrides.json` read: an override is a few hundred bytes.
pub const OVERRIDES_CAP: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub format_version: u32,
    #[serde(default)]
    pub tenants: BTreeMap<TenantId, TenantOverrides>,
}

impl Default for Overrides {
    fn default() -> Self {
        Self {
            format_version: OVERRIDES_VERSION,
            tenants: BTreeMap::new(),
        }
    }
}

/// What is overridden of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOverrides {
    /// A tenant of this node alone (`mvm tenant create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Local>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Pin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateOverride>,
}

impl TenantOverrides {
    pub fn is_empty(&self) -> bool {
        self.local.is_none() && self.pin.is_none() && self.state.is_none()
    }
}

/// Who set an override, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Set {
    /// `2026-12-01T10:00:00Z`.
    pub since: String,
    /// `uid 0` (and `SUDO_USER alice` when set).
    pub by: String,
}

/// `mvm tenant create ID …`: the tenant as desired.json would give it,
/// validated by the same code whenever it is merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Local {
    pub spec: serde_json::Value,
    #[serde(flatten)]
    pub set: Set,
}

/// `mvm tenant pin ID --flake REF [--lock HASH]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub flake_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Set by `tenant rollback`: when the revision rolled back to started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
    /// Set by `tenant rollback`: the profile that revision ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<super::desired::Profile>,
    /// Set by `tenant rollback`: the store path that revision ran; a build
    /// that does not produce exactly it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_path: Option<String>,
    #[serde(flatten)]
    pub set: Set,
}

/// `mvm tenant stop|start ID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateOverride {
    pub state: RunState,
    #[serde(flatten)]
    pub set: Set,
}

impl Overrides {
    /// Checks what a hand-edited file could hold wrong: its version, and
    /// each pin's flake ref and lock as desired.json's are checked.
    pub fn check(&self) -> Result<(), String> {
        if self.format_version != OVERRIDES_VERSION {
            return Err(format!(
                "format_version {}; this mvm reads {OVERRIDES_VERSION}",
                self.format_version
            ));
        }
        for (id, o) in &self.tenants {
            if let Some(p) = &o.pin {
                check_flake_ref(&p.flake_ref).map_err(|e| format!("{id}: pin flake_ref {e}"))?;
                if let Some(l) = &p.lock {
                    check_lock_hash(l).map_err(|e| format!("{id}: pin lock {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// One override in effect (or ignored), as plans and `tenant status` show
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideNote {
    pub tenant_id: TenantId,
    /// `pin`, `state`.
    pub kind: String,
    /// `pinned by hand to github:acme/app?rev=… since 2026-12-01T10:00:00Z
    /// (mvm tenant unpin acme)`.
    pub text: String,
    /// In effect, or ignored (the control plane no longer desires the
    /// tenant).
    pub in_effect: bool,
}

/// The node's desired state: the control plane's document with the
/// overrides merged in; what each override did; and the tenants whose
/// changes are blocked because both sources claim them, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub desired: DesiredState,
    pub notes: Vec<OverrideNote>,
    pub conflicts: BTreeMap<TenantId, String>,
}

/// Merges `overrides` (read from `path`) into the control plane's `doc`.
/// Local tenants are validated with the document by the desired-state
/// validator (a duplicate IP or MAC among them is refused like one in
/// desired.json).
pub fn merge(
    doc: &DesiredState,
    overrides: &Overrides,
    node: &NodeConfig,
    path: &Path,
) -> Result<Merged, SpecError> {
    let mut notes = Vec::new();
    let mut conflicts = BTreeMap::new();
    let mut locals = Vec::new();
    for (id, o) in &overrides.tenants {
        let Some(l) = &o.local else { continue };
        if doc.tenants.iter().any(|t| &t.tenant_id == id) {
            let why = format!(
                "tenant {id} is both in the control plane's desired state and created by hand on this node (since {}, by {}): remove it upstream, or `mvm tenant destroy {id}`",
                l.set.since, l.set.by
            );
            notes.push(OverrideNote {
                tenant_id: id.clone(),
                kind: "local".into(),
                text: format!("{id}: conflict: {why}"),
                in_effect: false,
            });
            conflicts.insert(id.clone(), why);
        } else {
            notes.push(OverrideNote {
                tenant_id: id.clone(),
                kind: "local".into(),
                text: format!(
                    "{id}: created by hand since {}, by {} (mvm tenant destroy {id})",
                    l.set.since, l.set.by
                ),
                in_effect: true,
            });
            locals.push(l.spec.clone());
        }
    }
    let mut merged = if locals.is_empty() {
        doc.clone()
    } else {
        let mut all = serde_json::to_value(doc).expect("desired state serializes");
        all["tenants"]
            .as_array_mut()
            .expect("tenants is an array")
            .extend(locals);
        super::parse_desired(path, &all.to_string(), node)?
    };
    for (id, o) in &overrides.tenants {
        let t = merged.tenants.iter_mut().find(|t| &t.tenant_id == id);
        let in_effect = t.is_some();
        let ignored = if in_effect {
            String::new()
        } else {
            "; ignored: the control plane no longer desires it".to_string()
        };
        if let Some(p) = &o.pin {
            let lock = p
                .lock
                .as_ref()
                .map(|l| format!(" (lock {l})"))
                .unwrap_or_default();
            notes.push(OverrideNote {
                tenant_id: id.clone(),
                kind: "pin".into(),
                text: format!(
                    "{id}: {} {}{lock} since {}, by {} (mvm tenant unpin {id}){ignored}",
                    match &p.rollback_to {
                        Some(at) => format!("rolled back by hand to its revision of {at},"),
                        None => "pinned by hand to".to_string(),
                    },
                    p.flake_ref,
                    p.set.since,
                    p.set.by
                ),
                in_effect,
            });
        }
        if let Some(s) = &o.state {
            let word = match s.state {
                RunState::Stopped => "stopped",
                RunState::Running => "started",
            };
            notes.push(OverrideNote {
                tenant_id: id.clone(),
                kind: "state".into(),
                text: format!(
                    "{id}: {word} by hand since {}, by {} (mvm tenant release {id}){ignored}",
                    s.set.since, s.set.by
                ),
                in_effect,
            });
        }
        if let Some(t) = t {
            if let Some(p) = &o.pin {
                t.flake_ref = p.flake_ref.clone();
                t.lock = p.lock.clone();
                t.store_path = p.store_path.clone();
                if let Some(profile) = p.profile {
                    t.profile = profile;
                }
            }
            if let Some(s) = &o.state {
                t.state = s.state;
            }
        }
    }
    Ok(Merged {
        desired: merged,
        notes,
        conflicts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredState {
        let node = crate::spec::NodeConfig::default_config();
        crate::spec::parse_desired(
            Path::new("d.json"),
            r#"{"tenants": [
                {"tenant_id": "acme", "flake_ref": "github:acme/app", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"},
                {"tenant_id": "beta", "flake_ref": "github:beta/app", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}]}"#,
            &node,
        )
        .unwrap()
    }

    fn set() -> Set {
        Set {
            since: "2026-12-01T10:00:00Z".into(),
            by: "uid 0".into(),
        }
    }

    #[test]
    fn a_pin_and_a_state_change_only_their_tenant_and_say_so() {
        let mut o = Overrides::default();
        let id = TenantId::parse("acme").unwrap();
        o.tenants.insert(
            id.clone(),
            TenantOverrides {
                local: None,
                pin: Some(Pin {
                    flake_ref: "github:acme/app?rev=0123456789abcdef0123456789abcdef01234567"
                        .into(),
                    lock: Some(format!("sha256-{}=", "A".repeat(43))),
                    rollback_to: None,
                    store_path: None,
                    profile: None,
                    set: set(),
                }),
                state: Some(StateOverride {
                    state: RunState::Stopped,
                    set: set(),
                }),
            },
        );
        let node = crate::spec::NodeConfig::default_config();
        let Merged {
            desired: m, notes, ..
        } = merge(&desired(), &o, &node, Path::new("o.json")).unwrap();
        let acme = &m.tenants[0];
        assert!(acme.flake_ref.ends_with("01234567"));
        assert!(acme.lock.is_some());
        assert_eq!(acme.state, RunState::Stopped);
        assert_eq!(m.tenants[1], desired().tenants[1], "beta untouched");
        assert_eq!(notes.len(), 2);
        assert!(notes.iter().all(|n| n.in_effect));
        assert!(
            notes[0].text.contains("mvm tenant unpin acme"),
            "{}",
            notes[0].text
        );
        assert!(
            notes[1].text.contains("stopped by hand"),
            "{}",
            notes[1].text
        );
    }

    #[test]
    fn an_override_of_a_tenant_no_longer_desired_is_reported_and_ignored() {
        let mut o = Overrides::default();
        o.tenants.insert(
            TenantId::parse("gone").unwrap(),
            TenantOverrides {
                local: None,
                pin: None,
                state: Some(StateOverride {
                    state: RunState::Stopped,
                    set: set(),
                }),
            },
        );
        let node = crate::spec::NodeConfig::default_config();
        let Merged {
            desired: m, notes, ..
        } = merge(&desired(), &o, &node, Path::new("o.json")).unwrap();
        assert_eq!(m, desired());
        assert!(!notes[0].in_effect);
        assert!(notes[0].text.contains("ignored"), "{}", notes[0].text);
    }

    #[test]
    fn a_hand_edited_pin_is_checked_like_desired_json() {
        let mut o = Overrides::default();
        o.tenants.insert(
            TenantId::parse("acme").unwrap(),
            TenantOverrides {
                local: None,
                pin: Some(Pin {
                    flake_ref: "file:///etc/passwd".into(),
                    lock: None,
                    rollback_to: None,
                    store_path: None,
                    profile: None,
                    set: set(),
                }),
                state: None,
            },
        );
        assert!(o.check().unwrap_err().contains("acme: pin flake_ref"));
        let future = Overrides {
            format_version: 9,
            ..Overrides::default()
        };
        assert!(future.check().unwrap_err().contains("format_version 9"));
    }
}
