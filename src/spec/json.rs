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
    let v = Strict {
        path: String::new(),
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// `parse` for bytes, which must be UTF-8.
pub fn parse_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict {
        path: String::new(),
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Parses and converts to `T`, refusing duplicate keys.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_value(parse(text)?)
}

/// Parses and converts to `T`, refusing duplicate keys.
pub fn from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_value(parse_slice(bytes)?)
}

/// A value at `path` (`tenants[0].cpuset`), for messages.
struct Strict {
    path: String,
}

impl Strict {
    fn child(&self, key: &str) -> Strict {
        Strict {
            path: if self.path.is_empty() {
                key.to_string()
            } else {
                format!("{}.{key}", self.path)
            },
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
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
            path: format!("{}[{}]", self.path, out.len()),
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let at = if self.path.is_empty() {
                    "the top-level object".to_string()
                } else {
                    self.path.clone()
                };
                return Err(A::Error::custom(format!(
                    "duplicate key {key:?} in {at}; a key may appear only once"
                )));
            }
            let v = map.next_value_seed(self.child(&key))?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
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
    fn values_read_as_serde_json_reads_them() {
        let text = r#"{"a":[1,-2,3.5,"s",null,true,{"b":{}}],"c":18446744073709551615}"#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert!(parse("{} x").is_err());
    }
}
