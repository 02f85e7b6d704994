//! Runs the real `mvm` binary and renders what it did — exit code, stdout,
//! stderr — as one text for snapshots, with a clean environment so the
//! developer's MVM_CONFIG or NO_COLOR cannot change the result.

#![allow(dead_code)]

pub mod etcd;
pub mod host;
pub mod operator;

use std::path::Path;
use std::process::Command;

pub fn mvm() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mvm"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("MVM_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_BACKTRACE");
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Run {
    run_cmd(mvm().args(args))
}

pub fn run_cmd(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("mvm runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

impl Run {
    /// The text a snapshot stores.
    pub fn snapshot(&self, args: &[&str]) -> String {
        format!(
            "$ mvm {}\nexit: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// insta settings that store snapshots in the top-level `snapshots/`.
pub fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

/// A temporary directory that is always removed: mvm marks audit logs
/// append-only (`chattr +a`), which the directory's own removal cannot
/// undo, so the flag is cleared first (chattr, from e2fsprogs, which
/// scripts/test.sh installs).
pub struct Scratch(pub tempfile::TempDir);

impl Scratch {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-a")
            .arg(self.0.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

pub fn scratch() -> Scratch {
    Scratch(tempfile::tempdir().expect("a temporary directory"))
}

/// A scratch dir with a node.toml whose state dir is inside it (limits the
/// hybrid host cannot enforce allowed to go): `(dir, node.toml)`.
pub fn scratch_node() -> (Scratch, std::path::PathBuf) {
    let dir = scratch();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[cgroup]\nallow_missing_controllers = true\n",
            dir.path().join("state").display()
        ),
    )
    .expect("node.toml written");
    (dir, config)
}
