//! `mvm config show`: the effective node configuration — the built-in
//! defaults merged with node.toml — and where each value came from.

use super::{ConfigShowArgs, output};
use crate::agent::AgentError;
use crate::settings::{ConfigSource, Settings};
use std::process::ExitCode;

/// Every leaf of the effective config as (`section.key`, value, from).
fn values(s: &Settings) -> Result<Vec<(String, toml::Value, String)>, AgentError> {
    let config = s.config.load()?;
    let effective = toml::Value::try_from(&config).expect("the config serializes");
    let (user, from) = match &s.config {
        ConfigSource::Flag(p) | ConfigSource::Env(p) | ConfigSource::System(p) => {
            let text = crate::host::fs::input::read_text(p, crate::spec::Input::NodeConfig)
                .map_err(|source| crate::spec::SpecError::Read {
                    path: p.clone(),
                    source,
                })?;
            let tree = crate::spec::node::toml_tree(&text).expect("it parsed when loaded");
            (Some(tree), p.display().to_string())
        }
        ConfigSource::Builtin => (None, String::new()),
    };
    let set_in_file = |path: &[&str]| {
        let mut v = user.as_ref();
        for p in path {
            v = v.and_then(|t| t.get(p));
        }
        v.is_some()
    };
    let mut out = Vec::new();
    let toml::Value::Table(top) = effective else {
        unreachable!("a config is a table")
    };
    let mut push = |path: Vec<&str>, v: &toml::Value| {
        let origin = if set_in_file(&path) {
            from.clone()
        } else {
            "default".to_string()
        };
        out.push((path.join("."), v.clone(), origin));
    };
    for (k, v) in &top {
        if !v.is_table() {
            push(vec![k], v);
        }
    }
    for (k, v) in &top {
        if let toml::Value::Table(t) = v {
            for (kk, vv) in t {
                push(vec![k, kk], vv);
            }
        }
    }
    Ok(out)
}

pub fn show(s: &Settings, args: &ConfigShowArgs) -> Result<ExitCode, AgentError> {
    let values = values(s)?;
    if args.json {
        let doc = serde_json::json!({
            "source": s.config.to_string(),
            "values": values.iter().map(|(k, v, from)| serde_json::json!({
                "key": k, "value": v, "from": from,
            })).collect::<Vec<_>>(),
        });
        output::write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).expect("json")
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "# mvm's effective node configuration: the built-in defaults{}.\n",
        match s.config {
            ConfigSource::Builtin => " (no node.toml)".to_string(),
            _ => format!(", overridden by {}", s.config),
        }
    );
    let lines: Vec<(String, String)> = {
        let mut section = "";
        let mut lines = Vec::new();
        for (k, v, from) in &values {
            let (sec, key) = k.split_once('.').unwrap_or(("", k));
            if sec != section {
                lines.push((format!("\n[{sec}]"), String::new()));
                section = sec;
            }
            lines.push((format!("{key} = {v}"), format!("# {from}")));
        }
        lines
    };
    let width = lines
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .map(|(l, _)| l.chars().count())
        .filter(|w| *w <= 48)
        .max()
        .unwrap_or(0);
    for (l, c) in lines {
        if c.is_empty() {
            out.push_str(&format!("{l}\n"));
        } else {
            out.push_str(&format!("{l:<width$}  {c}\n"));
        }
    }
    output::write_stdout(&out);
    Ok(ExitCode::SUCCESS)
}
