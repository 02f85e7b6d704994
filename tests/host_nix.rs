//! Artifacts built by a real Nix (Debian's nix-bin) from an offline
//! fixture flake (`fixtures/flake/`: no inputs; its builder is a static
//! busybox copied in from the host), in the artifact contract's shape:
//! recorded with lock hash, store paths and sha256s; not rebuilt by the
//! next reconcile; a pinned lock that differs is refused naming both.
//! Skips, saying why, without root, Nix, its build users or busybox.

mod common;

use std::path::{Path, PathBuf};

/// The fixture flake in a temporary directory, with its tools.
fn fixture(dir: &Path, kernel: &str) -> PathBuf {
    let flake = dir.join("flake");
    std::fs::create_dir_all(flake.join("tools")).unwrap();
    std::fs::copy("fixtures/flake/flake.nix", flake.join("flake.nix")).unwrap();
    std::fs::copy("/bin/busybox", flake.join("tools/busybox")).unwrap();
    std::fs::write(flake.join("vmlinux"), kernel).unwrap();
    flake
}

fn mvm(config: &Path, args: &[&str]) -> common::Run {
    common::run_cmd(common::mvm().arg("--config").arg(config).args(args))
}

#[test]
fn a_real_nix_build_is_recorded_not_repeated_and_its_lock_checked() {
    if !common::host::require(
        "a_real_nix_build_is_recorded_not_repeated_and_its_lock_checked",
        &[common::host::Need::Root, common::host::Need::Nix],
    ) {
        return;
    }
    let dir = common::scratch();
    let kernel = format!("kernel {}", std::process::id());
    let flake = fixture(dir.path(), &kernel);
    let state = dir.path().join("state");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[nix]\nsubstituters = []\n",
            state.display()
        ),
    )
    .unwrap();
    let desired = |lock: Option<&str>| {
        let mut t = serde_json::json!({"tenant_id": "fa", "flake_ref": format!("path:{}", flake.display()),
            "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"});
        if let Some(l) = lock {
            t["lock"] = l.into();
        }
        let p = dir.path().join("desired.json");
        std::fs::write(&p, serde_json::json!({"tenants": [t]}).to_string()).unwrap();
        p
    };
    let d = desired(None);
    let args = [
        "agent",
        "reconcile",
        "--desired",
        d.to_str().unwrap(),
        "--target",
        "tenant.*.artifact",
    ];
    let r = mvm(&config, &args);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // The record names the lock Nix reports, the store paths, and hashes
    // that match the files.
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("tenants/fa/tenant.json")).unwrap(),
    )
    .unwrap();
    let a = &rec["artifact"];
    let meta = std::process::Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command flakes",
            "flake",
            "metadata",
            "--json",
        ])
        .arg(format!("path:{}", flake.display()))
        .output()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    assert_eq!(a["lock"], meta["locked"]["narHash"], "{rec}");
    let out = a["store_path"].as_str().unwrap().to_string();
    assert!(
        out.starts_with("/nix/store/") && Path::new(&out).is_dir(),
        "{out}"
    );
    let files = a["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["vmlinux", "rootfs.ext4", "config.json"]);
    assert_eq!(
        files[0]["sha256"].as_str().unwrap(),
        mvm::digest::sha256(kernel.as_bytes())
    );
    assert!(state.join("tenants/fa/logs/build.log").exists());

    // Built once: the next reconcile has nothing to do.
    let r = mvm(&config, &args);
    assert!(r.stdout.contains("No changes."), "{}", r.stdout);

    // A pinned lock that is not the flake's is refused, naming both.
    let wrong = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let d = desired(Some(wrong));
    let args = [
        "agent",
        "reconcile",
        "--desired",
        d.to_str().unwrap(),
        "--target",
        "tenant.*.artifact",
    ];
    let r = mvm(&config, &args);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let lock = meta["locked"]["narHash"].as_str().unwrap();
    assert!(
        r.stdout.contains(wrong) && r.stdout.contains(lock),
        "{}",
        r.stdout
    );

    // Leave the store as it was.
    let _ = std::process::Command::new("nix-store")
        .args(["--delete", &out])
        .output();
}
