//! nftables for the recording host: a transaction of `nft -j -f -`
//! commands carried out on a ruleset kept as `nft -j list ruleset` lists
//! it, so the probe reads it back through the real parser. Like nft, a
//! transaction that fails part way changes nothing (the caller applies it
//! to a copy), and what nft refuses is refused: adding to a table or chain
//! that does not exist, deleting what is not there (adding what is there
//! is a no-op, as it is for nft).

use serde_json::{Value, json};

/// One listed object: its kind (`table`, `chain`, `set`, `map`, `rule`)
/// and body.
fn kind_of(item: &Value) -> Option<(&str, &Value)> {
    item.as_object()?
        .iter()
        .next()
        .map(|(k, v)| (k.as_str(), v))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The table an object belongs to: `(family, table)`.
fn table_of<'a>(kind: &str, v: &'a Value) -> (&'a str, &'a str) {
    match kind {
        "table" => (s(v, "family"), s(v, "name")),
        _ => (s(v, "family"), s(v, "table")),
    }
}

fn has(rs: &[Value], kind: &str, family: &str, table: &str, name: &str) -> bool {
    rs.iter().any(|i| {
        kind_of(i).is_some_and(|(k, v)| {
            k == kind && table_of(k, v) == (family, table) && s(v, "name") == name
        })
    })
}

fn has_table(rs: &[Value], family: &str, table: &str) -> bool {
    rs.iter()
        .any(|i| kind_of(i).is_some_and(|(k, v)| k == "table" && table_of(k, v) == (family, table)))
}

/// Carries out `{"nftables": [...]}` on `rs`, in order.
pub(super) fn transact(rs: &mut Vec<Value>, commands: &Value) -> Result<(), String> {
    let cmds = commands
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("not an nftables document")?;
    for cmd in cmds {
        let (verb, object) = kind_of(cmd).ok_or("an empty command")?;
        let (kind, body) = kind_of(object).ok_or("a command without an object")?;
        let (f, t) = table_of(kind, body);
        let name = s(body, "name");
        if kind != "table" && !has_table(rs, f, t) {
            return Err(format!("{verb} {kind}: no table {f} {t}"));
        }
        match (verb, kind) {
            ("add", "table") => {
                if !has_table(rs, f, t) {
                    rs.push(json!({"table": {"family": f, "name": t}}));
                }
            }
            ("delete", "table") => {
                rs.retain(|i| kind_of(i).is_none_or(|(k, v)| table_of(k, v) != (f, t)));
            }
            ("add", "chain") => {
                if !has(rs, "chain", f, t, name) {
                    rs.push(json!({ "chain": body }));
                }
            }
            ("flush", "chain") => {
                if !has(rs, "chain", f, t, name) {
                    return Err(format!("flush chain {f} {t} {name}: no such chain"));
                }
                rs.retain(|i| {
                    kind_of(i).is_none_or(|(k, v)| {
                        !(k == "rule" && table_of(k, v) == (f, t) && s(v, "chain") == name)
                    })
                });
            }
            ("delete", "chain") => {
                let rules = rs.iter().any(|i| {
                    kind_of(i).is_some_and(|(k, v)| {
                        k == "rule" && table_of(k, v) == (f, t) && s(v, "chain") == name
                    })
                });
                if !has(rs, "chain", f, t, name) || rules {
                    return Err(format!(
                        "delete chain {f} {t} {name}: no such chain, or not empty"
                    ));
                }
                rs.retain(|i| {
                    kind_of(i).is_none_or(|(k, v)| {
                        !(k == "chain" && table_of(k, v) == (f, t) && s(v, "name") == name)
                    })
                });
            }
            ("add", "set" | "map") => {
                if !has(rs, kind, f, t, name) {
                    let mut set = body.clone();
                    set.as_object_mut()
                        .map(|o| o.entry("elem").or_insert(json!([])));
                    rs.push(json!({ kind: set }));
                }
            }
            ("delete", "set") => {
                let before = rs.len();
                rs.retain(|i| {
                    kind_of(i).is_none_or(|(k, v)| {
                        !((k == "set" || k == "map")
                            && table_of(k, v) == (f, t)
                            && s(v, "name") == name)
                    })
                });
                if rs.len() == before {
                    return Err(format!("delete set {f} {t} {name}: no such set"));
                }
            }
            ("add", "rule") => {
                let chain = s(body, "chain");
                if !has(rs, "chain", f, t, chain) {
                    return Err(format!("add rule: no chain {f} {t} {chain}"));
                }
                rs.push(json!({ "rule": body }));
            }
            ("add" | "delete", "element") => element(rs, verb == "add", f, t, name, body)?,
            _ => return Err(format!("{verb} {kind}: not a command mvm sends")),
        }
    }
    Ok(())
}

/// Adds or deletes set elements; a map element is deleted by its key.
fn element(
    rs: &mut [Value],
    add: bool,
    f: &str,
    t: &str,
    name: &str,
    body: &Value,
) -> Result<(), String> {
    let set = rs
        .iter_mut()
        .filter_map(|i| {
            let o = i.as_object_mut()?;
            let (k, v) = o.iter_mut().next()?;
            let ours = (k == "set" || k == "map")
                && s(v, "family") == f
                && s(v, "table") == t
                && s(v, "name") == name;
            ours.then_some(v)
        })
        .next()
        .ok_or_else(|| format!("element: no set {f} {t} {name}"))?;
    let elems = set
        .as_object_mut()
        .map(|o| o.entry("elem").or_insert(json!([])))
        .and_then(Value::as_array_mut)
        .ok_or("a set without elements")?;
    for e in body
        .get("elem")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = |x: &Value| match x {
            Value::Array(kv) => kv.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        let at = elems.iter().position(|x| key(x) == key(e));
        match (add, at) {
            (true, None) => elems.push(e.clone()),
            // `add` of an element that is there is a no-op, as in nft
            // (only `create` refuses it).
            (true, Some(_)) => {}
            (false, Some(i)) => {
                elems.remove(i);
            }
            (false, None) => return Err(format!("delete element {name}: no such element")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_command_is_an_error_and_a_rule_needs_its_chain() {
        let mut rs = Vec::new();
        let ok = json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": "mvm"}}},
            {"add": {"chain": {"family": "inet", "table": "mvm", "name": "input"}}},
            {"add": {"rule": {"family": "inet", "table": "mvm", "chain": "input", "expr": []}}},
            {"add": {"set": {"family": "inet", "table": "mvm", "name": "ssh_v4", "type": "ipv4_addr"}}},
            {"add": {"element": {"family": "inet", "table": "mvm", "name": "ssh_v4", "elem": ["10.0.0.2"]}}},
        ]});
        transact(&mut rs, &ok).unwrap();
        assert_eq!(rs.len(), 4);
        let bad = json!({"nftables": [
            {"add": {"rule": {"family": "inet", "table": "mvm", "chain": "nope", "expr": []}}},
        ]});
        assert!(transact(&mut rs, &bad).is_err());
        let again = json!({"nftables": [
            {"add": {"element": {"family": "inet", "table": "mvm", "name": "ssh_v4", "elem": ["10.0.0.2"]}}},
        ]});
        transact(&mut rs, &again).unwrap();
        assert_eq!(
            rs.len(),
            4,
            "adding an element that is there changes nothing"
        );
        let flush = json!({"nftables": [
            {"flush": {"chain": {"family": "inet", "table": "mvm", "name": "input"}}},
            {"delete": {"chain": {"family": "inet", "table": "mvm", "name": "input"}}},
            {"delete": {"element": {"family": "inet", "table": "mvm", "name": "ssh_v4", "elem": ["10.0.0.2"]}}},
        ]});
        transact(&mut rs, &flush).unwrap();
        assert_eq!(rs.len(), 2, "{rs:?}");
    }
}
