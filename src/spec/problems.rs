//! Validation that reports every problem at once.
//!
//! Inputs are parsed to a generic tree (JSON for desired.json; TOML converted
//! to the same tree for node.toml) and then walked by hand, so one pass can
//! collect every unknown field, wrong type and bad value together, each with
//! its location. serde's derive would stop at the first error.

use serde_json::{Map, Value};
use std::fmt;

/// One thing wrong with an input, located by its path (`tenants[2].ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "top level: {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The problems found so far in one input.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a value sits in a document: `tenants[2].ip`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A short rendering of a value for error messages; long strings are cut so
/// a hostile input cannot flood the terminal.
pub fn show(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields of one object, checked against the names it may have.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// Checks that `v` is an object and reports any key not in `allowed`,
    /// with a suggestion when a known key is one typo away.
    pub fn new(
        v: &'a Value,
        path: &str,
        allowed: &[&str],
        problems: &mut Problems,
    ) -> Option<Self> {
        let Some(map) = v.as_object() else {
            problems.push(path, format!("expected an object, found {}", type_name(v)));
            return None;
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = match closest(key, allowed) {
                    Some(near) => format!("; did you mean {near:?}?"),
                    None => format!("; allowed fields: {}", allowed.join(", ")),
                };
                problems.push(join(path, key), format!("unknown field{hint}"));
            }
        }
        Some(Self {
            map,
            path: path.to_string(),
        })
    }

    pub fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A present, non-null field.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn required(&self, key: &str, problems: &mut Problems) -> Option<&'a Value> {
        let v = self.get(key);
        if v.is_none() {
            problems.push(self.path(key), "missing required field");
        }
        v
    }

    pub fn str(&self, key: &str, problems: &mut Problems) -> Option<&'a str> {
        let v = self.get(key)?;
        expect_str(v, &self.path(key), problems)
    }

    pub fn req_str(&self, key: &str, problems: &mut Problems) -> Option<&'a str> {
        let v = self.required(key, problems)?;
        expect_str(v, &self.path(key), problems)
    }

    pub fn bool(&self, key: &str, problems: &mut Problems) -> Option<bool> {
        let v = self.get(key)?;
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                problems.push(
                    self.path(key),
                    format!("expected true or false, found {}", show(other)),
                );
                None
            }
        }
    }

    /// An integer within `lo..=hi`.
    pub fn int(&self, key: &str, lo: u64, hi: u64, problems: &mut Problems) -> Option<u64> {
        let v = self.get(key)?;
        expect_int(v, &self.path(key), lo, hi, problems)
    }

    pub fn req_int(&self, key: &str, lo: u64, hi: u64, problems: &mut Problems) -> Option<u64> {
        let v = self.required(key, problems)?;
        expect_int(v, &self.path(key), lo, hi, problems)
    }

    /// An optional string turned into a value by `parse`; its error is
    /// reported after the quoted input, e.g. `"10.0.0.300" is not an IPv4
    /// address`.
    pub fn parse<T>(
        &self,
        key: &str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.str(key, problems)?;
        self.parsed(key, s, problems, parse)
    }

    /// Like `parse`, for a required field.
    pub fn req_parse<T>(
        &self,
        key: &str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.req_str(key, problems)?;
        self.parsed(key, s, problems, parse)
    }

    fn parsed<T>(
        &self,
        key: &str,
        s: &str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(s) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(
                    self.path(key),
                    format!("{} {e}", show(&Value::String(s.to_string()))),
                );
                None
            }
        }
    }

    /// A required string that must be one of `choices`.
    pub fn req_choice(
        &self,
        key: &str,
        choices: &[&'static str],
        problems: &mut Problems,
    ) -> Option<&'static str> {
        self.required(key, problems)?;
        self.choice(key, choices, problems)
    }

    /// A string that must be one of `choices`.
    pub fn choice(
        &self,
        key: &str,
        choices: &[&'static str],
        problems: &mut Problems,
    ) -> Option<&'static str> {
        let s = self.str(key, problems)?;
        match choices.iter().find(|c| **c == s) {
            Some(c) => Some(c),
            None => {
                problems.push(
                    self.path(key),
                    format!(
                        "{s:?} is not allowed; expected one of {}",
                        quoted_list(choices)
                    ),
                );
                None
            }
        }
    }
}

pub fn expect_str<'v>(v: &'v Value, path: &str, problems: &mut Problems) -> Option<&'v str> {
    match v {
        Value::String(s) => Some(s),
        other => {
            problems.push(path, format!("expected a string, found {}", show(other)));
            None
        }
    }
}

pub fn expect_int(v: &Value, path: &str, lo: u64, hi: u64, problems: &mut Problems) -> Option<u64> {
    match v.as_u64() {
        Some(n) if (lo..=hi).contains(&n) => Some(n),
        Some(n) => {
            problems.push(path, format!("{n} is out of range; allowed {lo}..={hi}"));
            None
        }
        None => {
            problems.push(
                path,
                format!("expected a whole number in {lo}..={hi}, found {}", show(v)),
            );
            None
        }
    }
}

pub fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The allowed name closest to `key` by edit distance, if it is close enough
/// to be a plausible typo.
pub fn closest<'s>(key: &str, allowed: &[&'s str]) -> Option<&'s str> {
    allowed
        .iter()
        .map(|a| (levenshtein(key, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min()
        .map(|(_, a)| a)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_field_names() {
        assert_eq!(closest("vcpu", &["vcpus", "mem_mib"]), Some("vcpus"));
        assert_eq!(closest("zzzzzz", &["vcpus", "mem_mib"]), None);
    }

    #[test]
    fn show_cuts_long_values() {
        let long = Value::String("x".repeat(500));
        assert!(show(&long).len() < 90);
    }
}
