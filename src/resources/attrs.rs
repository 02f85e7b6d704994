//! What a kind's resources are made of in a plan: attributes as a JSON
//! map (`Attrs`), documents to diff, what is desired of a resource and
//! why one is not.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// An attribute name: a static string when the planner makes it (no
/// allocation per resource), owned when read back from a saved plan.
pub type AttrName = std::borrow::Cow<'static, str>;

/// A resource's attributes as plans carry them, sorted by name.
pub type Attrs = BTreeMap<AttrName, Value>;

/// Named documents of a change, before and after (`firecracker_config`),
/// shown to reviewers as a unified diff; in name order, serialized as a
/// map. A short sorted list rather than a map: a change has one document
/// or none, and a map's first node alone is a kilobyte.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Documents(Vec<(String, DocumentChange)>);

impl Documents {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&DocumentChange> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// Adds `name`, or replaces the document of that name.
    pub fn insert(&mut self, name: String, doc: DocumentChange) {
        match self.0.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(at) => self.0[at].1 = doc,
            Err(at) => self.0.insert(at, (name, doc)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &DocumentChange)> {
        self.0.iter().map(|(n, d)| (n.as_str(), d))
    }
}

impl<const N: usize> From<[(String, DocumentChange); N]> for Documents {
    fn from(docs: [(String, DocumentChange); N]) -> Self {
        let mut out = Self(Vec::with_capacity(N));
        for (name, doc) in docs {
            out.insert(name, doc);
        }
        out
    }
}

impl Serialize for Documents {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Documents {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // As a map reads them: a name given twice keeps its last document.
        let docs = BTreeMap::<String, DocumentChange>::deserialize(d)?;
        Ok(Self(docs.into_iter().collect()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentChange {
    pub before: Option<Document>,
    pub after: Option<Document>,
}

/// A document as a plan holds it: its JSON as canonical compact text
/// (keys sorted, as a `Value` orders them) — a Firecracker config is about
/// 1 KiB so, against 7 KiB as a tree of maps, and a plan of 10,000 VMs
/// holds 10,000 of them. Serialized as the JSON value itself, so a plan
/// reads the same; `value` reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document(Box<str>);

impl Document {
    pub fn new(v: &Value) -> Self {
        Document(v.to_string().into_boxed_str())
    }

    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).expect("a document is the text of a JSON value")
    }
}

impl Serialize for Document {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Document::new(&v))
    }
}

/// What the spec asks of one resource: its attributes, and which of them
/// only apply can know (`(known after apply)`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    pub attrs: Attrs,
    /// Sorted, without duplicates (a plan of 10,000 tenants holds 20,000
    /// of these: a set's node would be six times the size).
    pub unknown: Vec<AttrName>,
}

impl Desired {
    pub fn set(&mut self, key: &'static str, v: impl Into<Value>) {
        self.attrs.insert(AttrName::Borrowed(key), v.into());
    }
    pub fn unknown(&mut self, key: &'static str) {
        if let Err(at) = self.unknown.binary_search_by(|k| k.as_ref().cmp(key)) {
            self.unknown.insert(at, AttrName::Borrowed(key));
        }
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
