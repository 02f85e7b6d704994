//! The crate's architecture, checked: only `host/` touches the host
//! (files, processes, syscalls through nix, the clock, sleeping), only
//! `settings.rs` reads the environment, and no top-level module imports
//! one that imports it back. Code under `#[cfg(test)]` is exempt (tests
//! prepare trees and read results directly).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// (path relative to src/, the file's text before its first `#[cfg(test)]`)
fn library_code() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, code)
        })
        .collect()
}

#[test]
fn only_host_touches_the_host() {
    const FORBIDDEN: &[&str] = &[
        "std::fs",
        "std::os::unix::fs",
        "File::open",
        "OpenOptions",
        "std::process::Command",
        "std::process::id",
        "std::process::exit",
        "nix::",
        "Timestamp::now",
        "SystemTime",
        "Instant::now",
        "thread::sleep",
    ];
    let mut found = Vec::new();
    for (file, code) in library_code() {
        let allowed_host = file.starts_with("host/");
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if !allowed_host {
                for f in FORBIDDEN {
                    let at_word = line.match_indices(f).any(|(i, _)| {
                        line[..i]
                            .chars()
                            .next_back()
                            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
                    });
                    if at_word {
                        found.push(format!("src/{file}:{}: {f}: {}", n + 1, line.trim()));
                    }
                }
            }
            if file != "settings.rs" && line.contains("std::env::") {
                found.push(format!(
                    "src/{file}:{}: reads the environment: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "host effects outside host/ (or env reads outside settings.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn top_level_modules_have_no_cycles() {
    let modules: BTreeSet<String> = library_code()
        .iter()
        .map(|(f, _)| module_of(f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in library_code() {
        let from = module_of(&file);
        for m in &modules {
            if *m != from && uses(&code, m) {
                edges.entry(from.clone()).or_default().insert(m.clone());
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in &modules {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}\nedges: {edges:#?}", cycle.join(" -> "));
        }
    }
}

/// `host/contract.rs` → `host`; `settings.rs` → `settings`.
fn module_of(file: &str) -> String {
    let first = file.split('/').next().unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// Whether code refers to `crate::<m>` (in a path or a `use crate::{…}`).
fn uses(code: &str, m: &str) -> bool {
    let direct = format!("crate::{m}");
    let hit = |i: usize, s: &str| {
        s[i + direct.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
    };
    if code.match_indices(&direct).any(|(i, _)| hit(i, code)) {
        return true;
    }
    // `use crate::{a, b::c}` groups.
    code.match_indices("crate::{").any(|(i, _)| {
        let rest = &code[i + 8..];
        let group = &rest[..rest.find('}').unwrap_or(rest.len())];
        group
            .split(',')
            .any(|item| item.trim().split("::").next() == Some(m))
    })
}
