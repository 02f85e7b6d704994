//! Plans: what would change on the node, as plain data.
//!
//! A `Plan` is a pure function of (desired, node config, observed). It lists
//! an action per resource with before/after attributes and the reason for
//! every replace and delete, plus each resource's dependencies so apply can
//! walk it without re-deriving anything from the config.

pub mod check;
pub mod planner;
pub mod render;
pub mod resolve;
pub mod simulate;
pub mod target;

pub use planner::{PlanOptions, plan};

use crate::resources::{AttrName, Attrs, Documents, ResourceAddr};
use crate::spec::types::TenantId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The JSON plan's format. Minor bumps only add fields; consumers must
/// ignore unknown fields and reject an unknown major version.
pub const FORMAT_VERSION: &str = "1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    NoOp,
    Create,
    Update,
    /// Delete, then create.
    Replace,
    Delete,
}

impl Action {
    pub fn words(self) -> &'static [&'static str] {
        match self {
            Action::NoOp => &["no-op"],
            Action::Create => &["create"],
            Action::Update => &["update"],
            Action::Replace => &["delete", "create"],
            Action::Delete => &["delete"],
        }
    }

    fn from_words(w: &[String]) -> Option<Self> {
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        [
            Action::NoOp,
            Action::Create,
            Action::Update,
            Action::Replace,
            Action::Delete,
        ]
        .into_iter()
        .find(|a| a.words() == w.as_slice())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.words().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Vec::<String>::deserialize(d)?;
        Action::from_words(&w)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown actions {w:?}")))
    }
}

/// Why a resource is replaced or deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionReason {
    /// An attribute that cannot change in place differs (`replace_paths`).
    ReplaceBecauseCannotUpdate,
    /// Something it is built on is replaced.
    ReplaceBecauseDependencyReplaced { dependency: ResourceAddr },
    /// Something the running VM holds open (its tap, jail or cgroup) is
    /// missing and will be created anew; the VM cannot adopt the new one.
    ReplaceBecauseDependencyCreated { dependency: ResourceAddr },
    /// The tenant is not in desired.json and `--prune` was given.
    DeleteBecauseNotInDesired,
    /// The tenant's state is `stopped`.
    DeleteBecauseStopped,
    /// No tenant needs this node resource any more.
    DeleteBecauseUnused,
}

/// One resource's change. Unknown fields are not refused here only because
/// `documents` is flattened (serde cannot combine the two); every flattened
/// key must still be a `{before, after}` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub address: ResourceAddr,
    pub actions: Action,
    pub before: Option<Attrs>,
    pub after: Option<Attrs>,
    /// Attributes of `after` that only apply can know.
    pub after_unknown: Vec<AttrName>,
    /// Attributes whose change forces the replacement.
    pub replace_paths: Vec<AttrName>,
    pub action_reason: Option<ActionReason>,
    pub depends_on: Vec<ResourceAddr>,
    /// Why this change cannot be applied on this node, if it cannot.
    pub blocked: Option<String>,
    /// Documents a reviewer sees diffed, by name (`firecracker_config`),
    /// as the kind provides them; only on changes.
    #[serde(flatten)]
    pub documents: Documents,
}

impl ResourceChange {
    pub fn is_change(&self) -> bool {
        self.actions != Action::NoOp
    }
}

/// A tenant found on the node but not in desired.json, left as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptTenant {
    pub tenant_id: TenantId,
    pub resources: Vec<ResourceAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub blocked: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format_version: String,
    pub mvm_version: String,
    /// Digest of the observed state the plan was made against.
    pub observed_fingerprint: String,
    pub prune: bool,
    /// The `--target`s the plan was limited to (empty: the whole node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// False when some change is blocked on this node.
    pub applyable: bool,
    pub warnings: Vec<String>,
    pub summary: Summary,
    /// Every resource, including no-ops, in apply order for creates.
    pub resource_changes: Vec<ResourceChange>,
    pub kept_tenants: Vec<KeptTenant>,
    /// The operator's overrides the desired state was merged with (shown
    /// above the changes), and those ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<crate::spec::overrides::OverrideNote>,
    /// What apply needs besides the changes: the node config the plan was
    /// made with, and where cgroup2 was found. Apply reads nothing else.
    pub apply_context: MadeAgainst,
}

/// What a plan was made against and is applied with: the node config and
/// the cgroup2 mount (serialized as the plan's `apply_context`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MadeAgainst {
    pub node: crate::spec::NodeConfig,
    pub cgroup_mount: Option<std::path::PathBuf>,
}

impl Plan {
    /// Blocks every change of the tenants in `why` (a conflict between the
    /// control plane and an operator's override, say), with its reason.
    pub fn block_tenants(
        &mut self,
        why: &std::collections::BTreeMap<crate::spec::types::TenantId, String>,
    ) {
        for c in &mut self.resource_changes {
            if let Some(reason) = c.address.tenant().and_then(|id| why.get(id))
                && c.is_change()
                && c.blocked.is_none()
            {
                c.blocked = Some(reason.clone());
                self.summary.blocked += 1;
            }
        }
        self.applyable = self.summary.blocked == 0;
    }

    pub fn has_changes(&self) -> bool {
        self.resource_changes.iter().any(ResourceChange::is_change)
    }
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot use the record of {}", list(.0.iter().map(|(id, e)| format!("tenant {id}: {e}"))))]
    CorruptRecords(Vec<(TenantId, String)>),
    #[error("tenant {tenant} asks for IP {ip}, which tenant {holder} on this node holds")]
    AddressInUse {
        tenant: TenantId,
        ip: std::net::Ipv4Addr,
        holder: TenantId,
    },
    #[error("tenant {tenant} would get MAC {mac}, which tenant {holder} already uses")]
    MacInUse {
        tenant: TenantId,
        mac: String,
        holder: TenantId,
    },
    #[error("no free IP address left in {subnet} for tenant {tenant}")]
    SubnetFull { subnet: String, tenant: TenantId },
    #[error("no free uid left in {lo}..={hi} for tenant {tenant}")]
    UidRangeFull { lo: u32, hi: u32, tenant: TenantId },
    #[error("{}", .0.join("\n"))]
    UnmatchedTargets(Vec<String>),
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join("; ")
}

impl PlanError {
    /// What the operator can do about it.
    pub fn hint(&self) -> String {
        match self {
            PlanError::CorruptRecords(_) => "mvm never resets a record it cannot read: restore the file from a backup, or move it aside if the tenant's resources should be rebuilt".into(),
            PlanError::AddressInUse { .. } | PlanError::MacInUse { .. } => {
                "pick a free address in desired.json, or leave ip/mac out to have one allocated"
                    .into()
            }
            PlanError::SubnetFull { .. } => {
                "widen bridge.subnet in node.toml or run fewer tenants on this node".into()
            }
            PlanError::UidRangeFull { .. } => "widen tenants.uid_min..uid_max in node.toml".into(),
            PlanError::UnmatchedTargets(_) => format!(
                "check the tenant id (`mvm tenant list` shows the node's); targets take the forms {}",
                crate::plan::target::FORMS
            ),
        }
    }
}
