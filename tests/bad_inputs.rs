//! The catalogue of bad inputs in `fixtures/bad/`: each must fail with a
//! located, readable error and exit 1 — never a panic or a backtrace.
//! `desired-*` files are passed as --desired, `node-*` as --config,
//! `observed-*` as --observed.

mod common;

use common::{run, settings};
use std::path::Path;

fn args_for(path: &Path) -> Vec<String> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let rel = format!("fixtures/bad/{name}");
    let mut args: Vec<String> = vec!["agent".into(), "plan".into()];
    let desired = "fixtures/desired/example.json".to_string();
    let observed = "fixtures/observed/fresh.json".to_string();
    if name.starts_with("desired-") {
        args.extend(["--desired".into(), rel, "--observed".into(), observed]);
    } else if name.starts_with("node-") {
        args.extend([
            "--config".into(),
            rel,
            "--desired".into(),
            desired,
            "--observed".into(),
            observed,
        ]);
    } else if name.starts_with("observed-") {
        args.extend(["--desired".into(), desired, "--observed".into(), rel]);
    } else {
        panic!("{name}: bad fixtures are named desired-*, node-* or observed-*");
    }
    args
}

#[test]
fn every_bad_input_fails_clearly() {
    settings().bind(|| {
        insta::glob!("../fixtures/bad", "*.*", |path| {
            let args = args_for(path);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = run(&argv);
            assert_eq!(r.code, 1, "{}: {}", path.display(), r.stderr);
            assert!(r.stdout.is_empty(), "{}: nothing on stdout", path.display());
            assert!(
                r.stderr.starts_with("error: "),
                "{}: {}",
                path.display(),
                r.stderr
            );
            assert!(
                !r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"),
                "{}",
                r.stderr
            );
            insta::assert_snapshot!(r.snapshot(&argv));
        });
    });
}

#[test]
fn catalogue_is_large_enough() {
    let n = std::fs::read_dir("fixtures/bad").unwrap().count();
    assert!(
        n >= 25,
        "the issue asks for at least 25 bad inputs, found {n}"
    );
}
