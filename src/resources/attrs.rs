//! What a kind's resources are made of in a plan: attributes as a JSON
//! map (`Attrs`), documents to diff, what is desired of a resource and
//! why one is not.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

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

/// Why a resource the host has is no longer wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwanted {
    /// Nothing in desired.json (or a kept tenant) needs it.
    Unused,
    /// The tenant's state is `stopped`.
    Stopped,
}
