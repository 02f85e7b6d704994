//! The metadata service as root in throwaway network, mount and pid
//! namespaces (a service the script leaves running dies with it)
//! (`tests/host/metadata.sh`): identity from the packet mark and address,
//! tokens, refusals, rate limit. Skips with a reason when not root.

#[test]
fn the_metadata_service_answers_only_the_tenant_it_identifies() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: needs root for a network namespace and SO_MARK");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "bash",
            "tests/host/metadata.sh",
        ])
        .arg(env!("CARGO_BIN_EXE_mvm"))
        .arg(work.path())
        .arg(format!("mvm-test-md-{}", std::process::id()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok: ").count(), 7, "{stdout}");
}
