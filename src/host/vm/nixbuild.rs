//! Building tenant artifacts with Nix.
//!
//! The artifact contract: a tenant's flake has an output
//! `packages.<system>.mvm-<profile>` (`mvm-minimal`, `mvm-standard`) whose
//! store path holds `vmlinux` (the kernel), `rootfs.ext4` (the root file
//! system) and `config.json` (the base Firecracker settings the VM's
//! config starts from). mvm records the flake's lock hash (the `narHash` of
//! its locked source, from `nix flake metadata --json`), the three files'
//! store paths and their sha256.
//!
//! Builds never run as root: the `local` builder uses this node's Nix with
//! its unprivileged build users (`build-users-group = nixbld`, sandboxed);
//! the `container` builder runs Nix in an ephemeral container whose command
//! line is checked before it runs (`check_container_args`): no privileged
//! mode, no host PID, IPC or network namespace, no added capabilities, no
//! writable host mount. The build's result leaves the container as a
//! `nix-store --export` stream on stdout, imported on the host.

use crate::spec::node::NixConfig;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The files of the contract, in the order they are recorded.
pub const CONTRACT_FILES: &[&str] = &["vmlinux", "rootfs.ext4", "config.json"];
/// The system mvm builds for.
pub const SYSTEM: &str = "x86_64-linux";
/// The largest artifact file hashed.
const FILE_CAP: u64 = 64 << 30;

pub use crate::host::Built;

/// The installable of a profile.
pub fn installable(flake_ref: &str, profile: &str) -> String {
    format!("{flake_ref}#mvm-{profile}")
}

fn nix_base(nix: &NixConfig) -> Vec<String> {
    let mut args = vec![
        "--extra-experimental-features".to_string(),
        "nix-command flakes".to_string(),
        "--option".to_string(),
        "substituters".to_string(),
        nix.substituters.join(" "),
    ];
    args.extend(
        [
            "--option",
            "build-users-group",
            "nixbld",
            "--option",
            "sandbox",
            "true",
        ]
        .map(String::from),
    );
    args
}

/// `nix … flake metadata --json <flake>` for the local builder.
pub fn metadata_args(nix: &NixConfig, flake_ref: &str) -> Vec<String> {
    let mut a = nix_base(nix);
    a.extend(["flake", "metadata", "--json", flake_ref].map(String::from));
    a
}

/// `nix … build --no-link --json <flake>#mvm-<profile>` for the local
/// builder.
pub fn build_args(nix: &NixConfig, flake_ref: &str, profile: &str) -> Vec<String> {
    let mut a = nix_base(nix);
    a.extend(["build", "--no-link", "--json", "-L"].map(String::from));
    a.push(installable(flake_ref, profile));
    a
}

/// The container builder's command line: Nix inside an ephemeral,
/// hardened container; the result leaves as an export stream on stdout.
pub fn container_args(
    nix: &NixConfig,
    flake_ref: &str,
    profile: &str,
) -> Result<Vec<String>, String> {
    let mut a: Vec<String> = [
        "run",
        "--rm",
        "--interactive=false",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--pids-limit=4096",
        "--read-only=false",
        "--userns=auto",
    ]
    .map(String::from)
    .to_vec();
    // A local flake is read from the host, read-only.
    if let Some(path) = flake_ref.strip_prefix("path:") {
        let dir = path.split(['?', '#']).next().unwrap_or(path);
        a.push(format!("--volume={}:{dir}:ro", volume_path(dir)?));
    }
    a.push(nix.container_image.clone());
    let build = build_args(nix, flake_ref, profile)
        .into_iter()
        .map(|s| shell_quote(&s))
        .collect::<Vec<_>>()
        .join(" ");
    a.extend([
        "sh".to_string(),
        "-c".to_string(),
        // The closure, dependencies first and the output last (what
        // `nix-store -qR` prints): the host takes the output from what it
        // imports, never from what the container says.
        format!(
            "out=$(nix {build} | sed -n 's/.*\"out\":\"\\([^\"]*\\)\".*/\\1/p') && nix-store --export $(nix-store -qR \"$out\")"
        ),
    ]);
    Ok(a)
}

/// A local flake's directory as a container volume source: absolute,
/// plain, and free of what the runtime's volume syntax parses (`:`
/// separates source, target and options, `,` options), so it mounts
/// exactly that directory read-only and nothing else.
fn volume_path(dir: &str) -> Result<&str, String> {
    let plain = dir.starts_with('/')
        && !dir.split('/').any(|c| c == ".." || c == ".")
        && dir
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-@".contains(&b));
    if plain {
        Ok(dir)
    } else {
        Err(format!(
            "refusing to mount the flake directory {dir:?} into the build container: it must be an absolute path of letters, digits and / . _ + - @ only (the runtime's volume syntax treats ':' and ',' as separators)"
        ))
    }
}

/// The store path a build produced, from the paths `nix-store --import`
/// printed (one per line, the closure in the order it was exported,
/// dependencies first): the last one, and the import must have been
/// exactly its closure (`closure` is `nix-store -qR` of it) — a build
/// cannot name an unrelated path that happens to be in the store.
pub fn imported_root(
    imported: &str,
    closure: impl Fn(&Path) -> Result<String, String>,
) -> Result<PathBuf, String> {
    let paths: Vec<&str> = imported
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    for p in &paths {
        if !is_store_path(Path::new(p)) {
            return Err(format!(
                "nix-store --import reported {p:?}, which is not a store path"
            ));
        }
    }
    let root = paths.last().ok_or("the build container exported nothing")?;
    let root = PathBuf::from(root);
    let closure = closure(&root)?;
    let mut want: Vec<&str> = closure
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut have = paths.clone();
    want.sort_unstable();
    want.dedup();
    have.sort_unstable();
    have.dedup();
    if want != have {
        return Err(format!(
            "the build container's export is not the closure of {} ({} paths imported, the closure has {})",
            root.display(),
            have.len(),
            want.len()
        ));
    }
    Ok(root)
}

/// `/nix/store/<name>`, nothing below it.
fn is_store_path(p: &Path) -> bool {
    p.starts_with("/nix/store/") && p.components().count() == 4
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Refuses a container command line that would weaken the host: a
/// privileged container, the host's PID, IPC, network or user namespace,
/// added capabilities, or a host mount that is not read-only.
pub fn check_container_args(args: &[String]) -> Result<(), String> {
    for a in args {
        let (flag, value) = a.split_once('=').map_or((a.as_str(), ""), |(f, v)| (f, v));
        let refuse = |why: &str| {
            Err(format!(
                "refusing to run the build container with {a}: {why}"
            ))
        };
        match flag {
            "--privileged" => {
                return refuse("a privileged container has the host's devices and capabilities");
            }
            "--pid" | "--ipc" | "--network" | "--net" | "--uts" | "--userns" if value == "host" => {
                return refuse("it would share the host's namespace");
            }
            "--cap-add" => return refuse("builds get no capabilities"),
            "--volume" | "-v" | "--mount" => {
                let read_only = value.ends_with(":ro")
                    || value
                        .split(',')
                        .any(|o| o == "ro" || o == "readonly" || o == "ro=true");
                if !read_only {
                    return refuse("a host mount must be read-only");
                }
            }
            "--security-opt" if value.contains("unconfined") => {
                return refuse("the container keeps its seccomp and LSM confinement");
            }
            "--device" => return refuse("builds get no host devices"),
            _ => {}
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let out = cmd
        .stdin(Stdio::null())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/root")
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            tail.join("\n")
        ));
    }
    Ok((out.stdout, out.stderr))
}

/// The flake's lock hash: the `narHash` of its locked source.
pub fn flake_lock(nix: &NixConfig, flake_ref: &str) -> Result<String, String> {
    let (stdout, _) = if nix.builder == "container" {
        let mut a = container_args(nix, flake_ref, "")?;
        let image_at = a
            .iter()
            .position(|x| *x == nix.container_image)
            .unwrap_or(a.len());
        a.truncate(image_at + 1);
        a.push("nix".into());
        a.extend(metadata_args(nix, flake_ref));
        check_container_args(&a)?;
        run(
            Command::new(&nix.container_runtime).args(&a),
            "the build container",
        )?
    } else {
        run(
            Command::new(&nix.binary).args(metadata_args(nix, flake_ref)),
            "nix flake metadata",
        )?
    };
    let v: serde_json::Value = serde_json::from_slice(&stdout)
        .map_err(|e| format!("nix flake metadata printed invalid JSON: {e}"))?;
    v.pointer("/locked/narHash")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "nix flake metadata gave no locked narHash".to_string())
}

/// Builds the profile's artifact and hashes its files.
pub fn build(nix: &NixConfig, flake_ref: &str, profile: &str) -> Result<Built, String> {
    let (out, log) = if nix.builder == "container" {
        let args = container_args(nix, flake_ref, profile)?;
        check_container_args(&args)?;
        let (export, log) = run(
            Command::new(&nix.container_runtime).args(&args),
            "the build container",
        )?;
        let store = nix.binary.with_file_name("nix-store");
        let imported = import(&store, &export)?;
        let root = imported_root(&imported, |root| {
            run(Command::new(&store).arg("-qR").arg(root), "nix-store -qR")
                .map(|(out, _)| String::from_utf8_lossy(&out).into_owned())
        })?;
        (root, log)
    } else {
        let (stdout, log) = run(
            Command::new(&nix.binary).args(build_args(nix, flake_ref, profile)),
            "nix build",
        )?;
        let v: serde_json::Value = serde_json::from_slice(&stdout)
            .map_err(|e| format!("nix build printed invalid JSON: {e}"))?;
        let out = v
            .pointer("/0/outputs/out")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| "nix build named no output".to_string())?;
        (PathBuf::from(out), log)
    };
    if !is_store_path(&out) {
        return Err(format!(
            "the build's output {} is not a store path",
            out.display()
        ));
    }
    let mut files = Vec::new();
    for name in CONTRACT_FILES {
        let path = out.join(name);
        let sha = hash_file(&path).map_err(|e| {
            format!(
                "the artifact {} has no {name} ({e}); the contract is vmlinux, rootfs.ext4 and config.json in packages.{SYSTEM}.mvm-{profile}",
                out.display()
            )
        })?;
        files.push((name.to_string(), path, sha));
    }
    Ok(Built { out, files, log })
}

/// Imports an export stream; what `nix-store --import` printed (the
/// imported paths).
fn import(store: &Path, export: &[u8]) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(store)
        .arg("--import")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", store.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(export)
            .map_err(|e| format!("cannot import the build: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "nix-store --import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The sha256 of a regular file in the store (a link or anything else is
/// refused).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut f = std::fs::File::open(path)?.take(FILE_CAP);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::digest::hex(&h.finalize()))
}

/// Whether a recorded store path is still in the store.
pub fn in_store(path: &Path) -> bool {
    path.starts_with("/nix/store/") && std::fs::symlink_metadata(path).is_ok()
}

impl crate::host::Builds for crate::host::linux::LinuxHost {
    fn flake_lock(
        &self,
        nix: &crate::spec::node::NixConfig,
        flake_ref: &str,
    ) -> crate::host::HostResult<String> {
        crate::host::vm::nixbuild::flake_lock(nix, flake_ref)
            .map_err(|e| crate::host::HostError::other_on("lock", flake_ref, e))
    }
    fn build(
        &self,
        nix: &crate::spec::node::NixConfig,
        flake_ref: &str,
        profile: &str,
    ) -> crate::host::HostResult<crate::host::Built> {
        let what = crate::host::vm::nixbuild::installable(flake_ref, profile);
        crate::host::vm::nixbuild::build(nix, flake_ref, profile)
            .map_err(|e| crate::host::HostError::other_on("build", &what, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nix() -> NixConfig {
        crate::spec::NodeConfig::default_config().nix
    }

    #[test]
    fn the_container_command_is_hardened_and_passes_its_own_check() {
        let a = container_args(&nix(), "path:/srv/flakes/app", "minimal").unwrap();
        check_container_args(&a).unwrap();
        for must in [
            "--rm",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--volume=/srv/flakes/app:/srv/flakes/app:ro",
        ] {
            assert!(a.contains(&must.to_string()), "{must}: {a:?}");
        }
        assert!(
            !a.iter()
                .any(|x| x.contains("privileged") || x.contains("=host"))
        );
    }

    /// Each way a container could weaken the host is refused on the
    /// constructed command line, naming the flag.
    #[test]
    fn the_container_check_refuses_every_weakening_flag() {
        let base = container_args(&nix(), "github:o/r", "minimal").unwrap();
        for bad in [
            "--privileged",
            "--pid=host",
            "--ipc=host",
            "--network=host",
            "--net=host",
            "--userns=host",
            "--cap-add=SYS_ADMIN",
            "--volume=/:/host",
            "--volume=/nix:/nix:rw",
            "--mount=type=bind,src=/etc,dst=/etc",
            "--security-opt=seccomp=unconfined",
            "--device=/dev/kvm",
        ] {
            let mut a = base.clone();
            a.insert(2, bad.to_string());
            let e = check_container_args(&a).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        let mut ok = base.clone();
        ok.insert(2, "--mount=type=bind,src=/srv,dst=/srv,ro".into());
        check_container_args(&ok).unwrap();
    }

    /// A bug fixed: a `path:` flake's directory reached the runtime's
    /// volume parser as is, so `:` or `,` in it could add a target or
    /// options (`:rw`, another mount).
    #[test]
    fn a_flake_path_the_volume_syntax_would_parse_is_refused() {
        for bad in [
            "path:/srv/a:/etc:rw",
            "path:/srv/a,rw",
            "path:/srv/a b",
            "path:relative/dir",
            "path:/srv/../etc",
            "path:/srv/a\nb",
        ] {
            let e = container_args(&nix(), bad, "minimal").unwrap_err();
            assert!(
                e.contains("refusing to mount the flake directory"),
                "{bad}: {e}"
            );
        }
        let ok = container_args(&nix(), "path:/srv/flakes/app-1.2?dir=x", "minimal").unwrap();
        assert!(ok.contains(&"--volume=/srv/flakes/app-1.2:/srv/flakes/app-1.2:ro".to_string()));
    }

    /// A bug fixed: the store path was what the container printed last on
    /// stderr, so a build could claim any path already in the store. It is
    /// now the last path the import reported, and the import must be
    /// exactly that path's closure.
    #[test]
    fn the_build_output_is_what_the_import_reports() {
        let dep = "/nix/store/aaaa-glibc";
        let out = "/nix/store/bbbb-mvm-minimal";
        let closure = |_: &Path| Ok(format!("{dep}\n{out}\n"));
        let root = imported_root(&format!("{dep}\n{out}\n"), closure).unwrap();
        assert_eq!(root, PathBuf::from(out));
        // Something else smuggled in beside the closure.
        let e =
            imported_root(&format!("{dep}\n/nix/store/cccc-other\n{out}\n"), closure).unwrap_err();
        assert!(e.contains("not the closure"), "{e}");
        // The output's closure is not what came: the root is wrong.
        let e = imported_root(&format!("{out}\n{dep}\n"), |p: &Path| {
            Ok(format!("{}\n", p.display()))
        })
        .unwrap_err();
        assert!(e.contains("not the closure"), "{e}");
        for bad in ["", "/etc/passwd\n", "/nix/store/x/y\n"] {
            assert!(imported_root(bad, closure).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_builds_are_sandboxed_as_build_users() {
        let a = build_args(
            &nix(),
            "github:o/r?rev=1356a192b7913b04c54574d18c28d46e6395428a",
            "standard",
        );
        let joined = a.join(" ");
        assert!(joined.contains("build-users-group nixbld"), "{joined}");
        assert!(joined.contains("sandbox true"), "{joined}");
        assert_eq!(
            a.last().unwrap(),
            "github:o/r?rev=1356a192b7913b04c54574d18c28d46e6395428a#mvm-standard"
        );
    }
}
