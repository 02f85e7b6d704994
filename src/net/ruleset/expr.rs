//! Builders of nft's JSON expressions, as `nft -j list ruleset` prints
//! them.

use ipnet::Ipv4Net;
use serde_json::{Value, json};

pub(super) fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}
pub(super) fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}
pub(super) fn is(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}
pub(super) fn is_not(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}
pub(super) fn ct_state(states: &[&str]) -> Value {
    let right = match states {
        [one] => json!(one),
        many => json!(many),
    };
    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": right}})
}
pub(super) fn counter() -> Value {
    json!({"counter": {"packets": 0, "bytes": 0}})
}
pub(super) fn verdict(v: &str) -> Value {
    json!({ v: null })
}
pub(super) fn jump(target: &str) -> Value {
    json!({"jump": {"target": target}})
}
/// An anonymous set as nft lists it: one element stands alone.
pub(super) fn anon(mut items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.pop().unwrap_or(Value::Null)
    } else {
        json!({ "set": items })
    }
}
pub(super) fn addr(net: &Ipv4Net) -> Value {
    if net.prefix_len() == 32 {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
    }
}

pub(super) fn text_list(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}
