//! The crate's architecture, checked on its source:
//!
//! - only `host/` touches the host: files, processes, sockets, syscalls
//!   (nix, libc), the clock, sleeping, tokio's effects; only `settings.rs`
//!   reads the environment; only `cli/` draws on the terminal. Matched as
//!   paths after comments and strings are removed and `use` groups are
//!   expanded, so `use std::process::{Command, Stdio}` is caught like
//!   `std::process::Command::new`;
//! - no file imports a file that imports it back, through any chain: the
//!   import graph of the files (`crate::`, `super::`, `self::` and child
//!   module paths, with `pub use` re-exports followed to the file that
//!   defines the item) has no cycle; and so neither has the graph of the
//!   top-level modules.
//!
//! Code under `#[cfg(test)]` is exempt (tests prepare trees and read
//! results directly).

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

/// Every library file: its path below src/ and its code before its first
/// `#[cfg(test)]`, comments, strings and chars blanked.
fn library_code() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        // A `#[cfg(test)] mod tests;` file is test code.
        .filter(|p| p.file_name().is_none_or(|n| n != "tests.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, strip(code))
        })
        .collect()
}

/// `code` with comments, string and char literals replaced by spaces
/// (newlines kept, so line numbers stay).
fn strip(code: &str) -> String {
    let b: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        match b[i] {
            '/' if b.get(i + 1) == Some(&'/') => {
                while i < b.len() && b[i] != '\n' {
                    out.push(' ');
                    i += 1;
                }
            }
            '/' if b.get(i + 1) == Some(&'*') => {
                while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                    out.push(blank(b[i]));
                    i += 1;
                }
                out.push_str("  ");
                i += 2;
            }
            'r' if (b.get(i + 1) == Some(&'#') || b.get(i + 1) == Some(&'"'))
                && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&'"') {
                    out.push(b[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == '"' && (0..hashes).all(|h| b.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                for c in &b[i..j.min(b.len())] {
                    out.push(blank(*c));
                }
                i = j;
            }
            '"' => {
                out.push(' ');
                i += 1;
                while i < b.len() && b[i] != '"' {
                    if b[i] == '\\' {
                        out.push(' ');
                        i += 1;
                    }
                    if i < b.len() {
                        out.push(blank(b[i]));
                        i += 1;
                    }
                }
                out.push(' ');
                i += 1;
            }
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            '\'' if b.get(i + 2) == Some(&'\'') || b.get(i + 1) == Some(&'\\') => {
                let mut j = i + 1;
                if b.get(j) == Some(&'\\') {
                    j += 2;
                }
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                for _ in i..=j.min(b.len() - 1) {
                    out.push(' ');
                }
                i = j + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The paths a file's code names, with `use` trees expanded
/// (`use a::{b, c::{d}}` names `a::b` and `a::c::d`), each with its line.
fn paths(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // `use` declarations, possibly spanning lines: expanded, then blanked
    // so the scan below does not see their fragments.
    let mut code = code.to_string();
    let mut from = 0;
    while let Some(at) = find_word(&code[from..], "use") {
        let start = from + at;
        let end = code[start..]
            .find(';')
            .map_or(code.len(), |e| start + e + 1);
        let line = code[..start].matches('\n').count() + 1;
        let tree = code[start + 3..end]
            .trim_end_matches(';')
            .trim()
            .to_string();
        for p in expand(&tree) {
            out.push((line, p));
        }
        let blank: String = code[start..end]
            .chars()
            .map(|c| if c == '\n' { c } else { ' ' })
            .collect();
        code.replace_range(start..end, &blank);
        from = end;
    }
    // Paths in code: identifiers joined by `::`.
    for (n, l) in code.lines().enumerate() {
        let chars: Vec<char> = l.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let ident = |c: char| c.is_alphanumeric() || c == '_';
            if ident(chars[i]) && (i == 0 || !ident(chars[i - 1]) && chars[i - 1] != ':') {
                let mut j = i;
                while j < chars.len()
                    && (ident(chars[j]) || (chars[j] == ':' && chars.get(j + 1) == Some(&':')))
                {
                    j += if chars[j] == ':' { 2 } else { 1 };
                }
                let p: String = chars[i..j].iter().collect();
                if p.contains("::") {
                    out.push((n + 1, p.trim_end_matches("::").to_string()));
                }
                i = j.max(i + 1);
            } else {
                i += 1;
            }
        }
    }
    out
}

fn find_word(s: &str, w: &str) -> Option<usize> {
    s.match_indices(w).map(|(i, _)| i).find(|&i| {
        let before = s[..i].chars().next_back();
        let after = s[i + w.len()..].chars().next();
        before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            && after.is_some_and(char::is_whitespace)
    })
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`; `a as b` → `a`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        let p = tree.split(" as ").next().unwrap_or("").trim().to_string();
        return vec![p];
    };
    let prefix = tree[..open].trim().trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut items = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[from..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .flat_map(expand)
        .map(|p| match (prefix.is_empty(), p.as_str()) {
            (true, _) => p,
            (false, "self") => prefix.to_string(),
            (false, _) => format!("{prefix}::{p}"),
        })
        .collect()
}

#[test]
fn only_host_touches_the_host() {
    // Paths (matched at `::` boundaries) that reach the host.
    const FORBIDDEN: &[&str] = &[
        "std::fs",
        "std::os::unix::fs",
        "std::os::fd",
        "std::process::Command",
        "std::process::Stdio",
        "std::process::id",
        "std::process::exit",
        "std::net::TcpListener",
        "std::net::TcpStream",
        "std::net::UdpSocket",
        "std::os::unix::net",
        "std::time::SystemTime",
        "std::time::Instant",
        "std::thread::sleep",
        "std::env",
        "nix",
        "libc",
        "tokio::fs",
        "tokio::process",
        "tokio::time",
        "tokio::net",
        "tokio::signal",
        "jiff::Timestamp::now",
        "indicatif",
        "console::Term",
    ];
    // Names that are host effects wherever they come from (a glob import,
    // a rename).
    const FORBIDDEN_NAMES: &[&str] = &[
        "File::open",
        "File::create",
        "OpenOptions",
        "Command::new",
        "TcpListener",
        "Timestamp::now",
        "Instant::now",
        "ProgressDrawTarget",
    ];
    let allowed = |file: &str, path: &str| {
        file.starts_with("host/")
            || (file == "settings.rs" && (path.starts_with("std::env") || path.starts_with("console::Term")))
            // The terminal: progress bars and the operator's prompt.
            || (file.starts_with("cli/") && (path.starts_with("indicatif") || path.starts_with("ProgressDrawTarget")))
            || (file == "main.rs" && path.starts_with("std::process::exit"))
    };
    let mut found = Vec::new();
    for (file, code) in library_code() {
        for (line, p) in paths(&code) {
            let p = p.trim_start_matches("::").to_string();
            let hit = FORBIDDEN
                .iter()
                .any(|f| p == *f || p.starts_with(&format!("{f}::")))
                || FORBIDDEN_NAMES.iter().any(|n| {
                    p == *n || p.ends_with(&format!("::{n}")) || p.starts_with(&format!("{n}::"))
                });
            if hit && !allowed(&file, &p) {
                found.push(format!("src/{file}:{line}: {p}"));
            }
        }
    }
    found.sort();
    found.dedup();
    assert!(
        found.is_empty(),
        "host effects outside host/ (the environment outside settings.rs, the terminal outside cli/):\n{}",
        found.join("\n")
    );
}

/// The module path of a file: `host/linux/files.rs` → `host::linux::files`,
/// `host/mod.rs` → `host`, `lib.rs` → ``.
fn module_path(file: &str) -> String {
    let f = file.trim_end_matches(".rs");
    let f = f.strip_suffix("/mod").unwrap_or(f);
    match f {
        "lib" | "main" => String::new(),
        f => f.replace('/', "::"),
    }
}

/// The import graph of the files: module → modules it names.
fn file_graph() -> BTreeMap<String, BTreeSet<String>> {
    file_graph_why().0
}

/// Module → the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;
/// (from, to) → a path that makes the edge (`file:line: path`).
type Why = BTreeMap<(String, String), String>;

/// The graph, and for each edge a path that makes it.
fn file_graph_why() -> (Graph, Why) {
    let code = library_code();
    let modules: BTreeSet<String> = code.iter().map(|(f, _)| module_path(f)).collect();
    // `pub use x::{a, b}` in module m: m::a → the module `x` resolves to.
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    for (file, text) in &code {
        let m = module_path(file);
        let mut rest = text.as_str();
        while let Some(at) = [rest.find("pub use "), rest.find("pub(crate) use ")]
            .into_iter()
            .flatten()
            .min()
        {
            let tail = &rest[at..];
            let tail = &tail[tail.find("use ").unwrap() + 4..];
            let end = tail.find(';').unwrap_or(tail.len());
            for p in expand(tail[..end].trim()) {
                let target = absolute(&m, &p, &modules);
                let name = p.rsplit("::").next().unwrap_or("").to_string();
                if let Some(t) = target {
                    reexports.insert(join(&m, &name), t);
                }
            }
            rest = &tail[end..];
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut why: BTreeMap<(String, String), String> = BTreeMap::new();
    for (file, text) in &code {
        let from = module_path(file);
        // A `pub use` makes a module a facade, not a dependent: imports
        // through it are followed to the defining file instead.
        let text = without_reexports(text);
        for (line, p) in paths(&text) {
            let Some(full) = absolute_path(&from, &p, &modules) else {
                continue;
            };
            let to = resolve(&full, &modules, &reexports);
            if let Some(to) = to
                && to != from
                && !to.is_empty()
            {
                why.entry((from.clone(), to.clone()))
                    .or_insert_with(|| format!("src/{file}:{line}: {p}"));
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    (edges, why)
}

fn without_reexports(code: &str) -> String {
    let mut out = code.to_string();
    for prefix in ["pub use ", "pub(crate) use "] {
        while let Some(at) = out.find(prefix) {
            let end = out[at..].find(';').map_or(out.len(), |e| at + e + 1);
            let blank: String = out[at..end]
                .chars()
                .map(|c| if c == '\n' { c } else { ' ' })
                .collect();
            out.replace_range(at..end, &blank);
        }
    }
    out
}

fn join(m: &str, name: &str) -> String {
    if m.is_empty() {
        name.to_string()
    } else {
        format!("{m}::{name}")
    }
}

/// `p` as named in module `m`, as a crate-absolute path (`None`: not a
/// path into this crate).
fn absolute_path(m: &str, p: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = if m.is_empty() {
        Vec::new()
    } else {
        m.split("::").map(String::from).collect()
    };
    match parts.first().copied() {
        Some("crate") => {
            parts.remove(0);
            base.clear();
        }
        Some("self") => {
            parts.remove(0);
        }
        Some("super") => {
            while parts.first() == Some(&"super") {
                parts.remove(0);
                base.pop();
            }
        }
        // A child module of `m` named directly (`tenant::vm::Vm` in
        // `resources`).
        Some(first) if modules.contains(&join(m, first)) => {}
        _ => return None,
    }
    let mut all = base;
    all.extend(parts.iter().map(|s| s.to_string()));
    Some(all.join("::"))
}

fn absolute(m: &str, p: &str, modules: &BTreeSet<String>) -> Option<String> {
    absolute_path(m, p, modules).map(|full| deepest(&full, modules))
}

/// The deepest module `full` lies in.
fn deepest(full: &str, modules: &BTreeSet<String>) -> String {
    let parts: Vec<&str> = full.split("::").collect();
    (0..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|c| modules.contains(c))
        .unwrap_or_default()
}

/// The module that defines what `full` names, following re-exports.
fn resolve(
    full: &str,
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<String, String>,
) -> Option<String> {
    let m = deepest(full, modules);
    let item = full
        .strip_prefix(&m)
        .map(|r| r.trim_start_matches("::"))
        .and_then(|r| r.split("::").next())
        .filter(|r| !r.is_empty());
    let child = item.is_some_and(|i| modules.contains(&join(&m, i)));
    match item.and_then(|i| reexports.get(&join(&m, i))) {
        Some(t) if *t != m => Some(t.clone()),
        // `pub use x::*`: what `m` does not define itself comes from `x`.
        _ if !child && item.is_some() => match reexports.get(&join(&m, "*")) {
            Some(t) => Some(t.clone()),
            None => Some(m),
        },
        _ => Some(m),
    }
}

fn cycle_in(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
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
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let (edges, why) = file_graph_why();
    assert!(edges.len() > 60, "the graph was not read: {edges:#?}");
    // Every circle, one per strongly connected set of files.
    let mut found = Vec::new();
    let mut left = edges.clone();
    while let Some(cycle) = cycle_in(&left) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                format!(
                    "{} -> {} ({})",
                    w[0],
                    w[1],
                    why[&(w[0].clone(), w[1].clone())]
                )
            })
            .collect();
        found.push(steps.join("; "));
        // Cut the circle's first edge and look again.
        left.get_mut(&cycle[0]).unwrap().remove(&cycle[1]);
    }
    if !found.is_empty() {
        eprintln!("{} import circles:\n{}", found.len(), found.join("\n"));
    }
    if let Some(cycle) = cycle_in(&edges) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                format!(
                    "  {} -> {} ({})",
                    w[0],
                    w[1],
                    why[&(w[0].clone(), w[1].clone())]
                )
            })
            .collect();
        panic!("import cycle between files:\n{}", steps.join("\n"));
    }
}

#[test]
fn top_level_modules_have_no_cycles() {
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in file_graph() {
        let f = from.split("::").next().unwrap_or("").to_string();
        for to in tos {
            let t = to.split("::").next().unwrap_or("").to_string();
            if f != t {
                top.entry(f.clone()).or_default().insert(t);
            }
        }
    }
    if let Some(cycle) = cycle_in(&top) {
        panic!("module cycle: {}\nedges: {top:#?}", cycle.join(" -> "));
    }
}

/// The checker itself catches what it must: a brace group, a glob-free
/// rename, a string that only mentions a path does not count, and a
/// two-file circle is found.
#[test]
fn the_checks_catch_what_they_are_for() {
    let code =
        strip("use std::process::{Command, Stdio};\nlet s = \"std::fs::read\"; // std::fs\n");
    let p: Vec<String> = paths(&code).into_iter().map(|(_, p)| p).collect();
    assert!(p.contains(&"std::process::Command".to_string()), "{p:?}");
    assert!(!p.iter().any(|p| p.starts_with("std::fs")), "{p:?}");
    assert_eq!(
        expand("a::{b, c::{d, e as f}, self}"),
        ["a::b", "a::c::d", "a::c::e", "a"]
    );
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(cycle_in(&edges).is_some());
}
