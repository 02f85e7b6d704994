//! JSON parsing that refuses duplicate keys. serde_json (like most
//! parsers) keeps the last of two equal keys, so
//! `{"tenants":[…acme…],"tenants":[]}` would read as no tenants at all —
//! and with `--prune`, destroy acme. Every JSON file mvm reads (desired
//! state, observed state, saved plans, records, audit records) goes
//! through `parse`, which fails on the second key, naming it and where it
//! is.

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses `text` as JSON, refusing duplicate keys at any depth.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict { at: &At::Root }.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// `parse` for bytes, which must be UTF-8.
pub fn parse_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict { at: &At::Root }.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Parses and converts to `T`, refusing duplicate keys. Two passes over
/// the text — a check that builds nothing, then serde_json straight into
/// `T` — which is faster than building a `Value` and keeps serde_json's
/// line and column in errors of shape.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    check(text)?;
    serde_json::from_str(text)
}

/// Fails on the first duplicate key in `text`, building nothing.
pub fn check(text: &str) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Check { at: &At::Root }.deserialize(&mut de)?;
    de.end()
}

/// An object key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_string()))
    }
}

/// Where a value is, as a chain rendered only for a message.
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            At::Root => Ok(()),
            At::Key(At::Root, k) => write!(f, "{k}"),
            At::Key(p, k) => write!(f, "{p}.{k}"),
            At::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

struct Check<'a> {
    at: &'a At<'a>,
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Check {
                at: &At::Index(self.at, i),
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if seen.contains(&key) {
                return Err(A::Error::custom(duplicate(&key, &self.at.to_string())));
            }
            map.next_value_seed(Check {
                at: &At::Key(self.at, &key),
            })?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// `from_str` for bytes, which must be UTF-8.
pub fn from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        <serde_json::Error as Error>::custom(format!("not UTF-8 text (byte {})", e.valid_up_to()))
    })?;
    from_str(text)
}

/// The refusal of a duplicate `key` in the object at `path`.
fn duplicate(key: &str, path: &str) -> String {
    let at = if path.is_empty() {
        "the top-level object"
    } else {
        path
    };
    format!("duplicate key {key:?} in {at}; a key may appear only once")
}

/// A value at `at` (`tenants[0].cpuset`, rendered only for a message:
/// a path made for every value was most of the parse's time).
struct Strict<'a> {
    at: &'a At<'a>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            at: &At::Index(self.at, out.len()),
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(duplicate(&key, &self.at.to_string())));
            }
            let v = map.next_value_seed(Strict {
                at: &At::Key(self.at, &key),
            })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Where to point at a syntax error: serde_json's line and column, except
/// for a trailing comma, which it reports at the bracket after it (often
/// the next line): there, the comma itself.
pub fn error_position(text: &str, e: &serde_json::Error) -> (usize, usize) {
    let (line, column) = (e.line(), e.column().max(1));
    if !e.to_string().starts_with("trailing comma") {
        return (line, column);
    }
    // The byte offset of (line, column), then back over white space.
    let offset = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + column.saturating_sub(1);
    let before = &text[..offset.min(text.len())];
    match before.trim_end().strip_suffix(',') {
        Some(rest) => {
            let at = rest.len();
            let line = text[..at].matches('\n').count() + 1;
            let column = at - text[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
            (line, column)
        }
        None => (line, column),
    }
}

/// The bytes of a file mvm writes as JSON: pretty-printed, one trailing
/// newline. Only for values whose serialization cannot fail (mvm's own
/// types: no maps with non-string keys).
pub fn file_text<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(v).expect("mvm's own values serialize");
    text.push(b'\n');
    text
}

#[cfg(test)]
mod tests {
    /// A bug fixed: a trailing comma was reported at the next line's
    /// bracket; it is reported where the comma is.
    #[test]
    fn a_trailing_comma_is_pointed_at() {
        let text = "{\"tenants\": [\n  {\"tenant_id\": \"a\"},\n]\n}\n";
        let e = parse(text).unwrap_err();
        assert_eq!((e.line(), e.column()), (3, 1));
        assert_eq!(error_position(text, &e), (2, 21));
        let other = "{\"a\": }";
        let e = parse(other).unwrap_err();
        assert_eq!(error_position(other, &e), (e.line(), e.column()));
    }

    use super::*;

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let e = parse(r#"{"tenants":[{"a":1}],"tenants":[]}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("duplicate key \"tenants\" in the top-level object"),
            "{e}"
        );
        let e = parse(r#"{"tenants":[{"id":1,"x":{"k":1,"k":2}}]}"#).unwrap_err();
        assert!(e.to_string().contains("in tenants[0].x"), "{e}");
        assert_eq!(e.line(), 1);
    }

    #[test]
    fn the_check_finds_what_parse_finds() {
        for text in [
            r#"{"tenants":[{"a":1}],"tenants":[]}"#,
            r#"{"tenants":[{"id":1,"x":{"k":1,"k":2}}]}"#,
            r#"[{"a":{"b":[1,{"c":1,"c":1}]}}]"#,
        ] {
            let (a, b) = (parse(text).unwrap_err(), check(text).unwrap_err());
            assert_eq!(a.to_string(), b.to_string());
        }
        check(r#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}"#).unwrap();
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"{"a":[1,-2,3.5,"s",null,true,{"b":{}}],"c":18446744073709551615}"#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert!(parse("{} x").is_err());
    }
}
