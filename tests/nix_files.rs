//! The Nix side of shipping, checked offline: every `.nix` file of the
//! project parses, and the NixOS module's option defaults
//! (`nix/node-defaults.nix`) are exactly mvm's built-in node.toml and
//! render a node.toml mvm accepts. (A nixpkgs build and a booted guest are
//! not exercised here: there is no nixpkgs offline.)

mod common;

use common::host::{Need, require};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        if p.is_dir() {
            nix_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "nix") {
            out.push(p);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    if !require("every_nix_file_parses", &[Need::Nix]) {
        return;
    }
    let mut files = Vec::new();
    nix_files(Path::new(ROOT), &mut files);
    for must in [
        "flake.nix",
        "nix/module.nix",
        "nix/guest.nix",
        "nix/node-defaults.nix",
    ] {
        assert!(
            files.contains(&Path::new(ROOT).join(must)),
            "{must} is missing"
        );
    }
    for f in &files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `nix-instantiate --eval --strict --json` of `what` (a file, or `-E`
/// and an expression), as JSON.
fn nix_eval<I: AsRef<std::ffi::OsStr>>(what: impl IntoIterator<Item = I>) -> serde_json::Value {
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .args(what)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn module_defaults() -> serde_json::Value {
    nix_eval([Path::new(ROOT).join("nix/node-defaults.nix")])
}

#[test]
fn the_modules_defaults_are_mvms_and_render_a_node_toml_it_accepts() {
    if !require(
        "the_modules_defaults_are_mvms_and_render_a_node_toml_it_accepts",
        &[Need::Nix],
    ) {
        return;
    }
    let nix = module_defaults();
    // mvm's own defaults, key by key.
    let r = common::run(&["config", "show", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mine: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut keys = 0;
    for v in mine["values"].as_array().unwrap() {
        let key = v["key"].as_str().unwrap();
        let mut at = &nix;
        for part in key.split('.') {
            at = &at[part];
        }
        assert_eq!(at, &v["value"], "nix/node-defaults.nix {key}");
        keys += 1;
    }
    let count = |v: &serde_json::Value| -> usize {
        v.as_object()
            .unwrap()
            .values()
            .map(|x| x.as_object().map_or(1, |o| o.len()))
            .sum()
    };
    assert_eq!(
        count(&nix),
        keys,
        "nix/node-defaults.nix has keys mvm does not read"
    );
    // Rendered as the module renders it (TOML), mvm accepts it.
    let toml_value: toml::Value = serde_json::from_value(nix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("node.toml");
    std::fs::write(&f, toml::to_string(&toml_value).unwrap()).unwrap();
    let r = common::run(&["--config", f.to_str().unwrap(), "config", "show"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// flake.lock pins exactly flake.nix's inputs: each input's URL is the
/// lock's `original`, with a locked revision and content hash (what a
/// build fetches and verifies; the hash itself can only be checked online).
#[test]
fn the_lock_file_pins_every_input_of_the_flake() {
    if !require("the_lock_file_pins_every_input_of_the_flake", &[Need::Nix]) {
        return;
    }
    let inputs = nix_eval([
        "-E".to_string(),
        format!("(import {ROOT}/flake.nix).inputs"),
    ]);
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(ROOT).join("flake.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["version"], 7);
    let root = &lock["nodes"][lock["root"].as_str().unwrap()]["inputs"];
    let names: Vec<&String> = inputs.as_object().unwrap().keys().collect();
    assert_eq!(names, root.as_object().unwrap().keys().collect::<Vec<_>>());
    for (name, input) in inputs.as_object().unwrap() {
        let node = &lock["nodes"][root[name].as_str().unwrap()];
        let o = &node["original"];
        let url = input["url"].as_str().unwrap();
        assert_eq!(
            url,
            format!(
                "github:{}/{}/{}",
                o["owner"].as_str().unwrap(),
                o["repo"].as_str().unwrap(),
                o["ref"].as_str().unwrap()
            ),
            "{name}: flake.nix and flake.lock disagree"
        );
        let l = &node["locked"];
        assert_eq!(
            (&l["owner"], &l["repo"], &l["type"]),
            (&o["owner"], &o["repo"], &o["type"])
        );
        let rev = l["rev"].as_str().unwrap();
        assert!(
            rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
            "{rev}"
        );
        let nar = l["narHash"].as_str().unwrap();
        assert!(nar.starts_with("sha256-") && nar.len() == 51, "{nar}");
    }
}
