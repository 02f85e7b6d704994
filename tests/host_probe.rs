//! The probes against a real kernel: a bridge, taps with port flags and
//! owners, nft tables with tenant elements, a tmpfs mount, a cgroup dir, a
//! Firecracker-named process, and junk in the state dir — built inside
//! throwaway network and mount namespaces by `tests/host/probe/node.sh`, then read
//! by `mvm agent observe --json`. Needs root; skips with a reason otherwise.

use mvm::observed::Observed;
use mvm::spec::types::TenantId;
use std::path::Path;
use std::process::Command;

mod common;

use common::host::{CgroupCleanup, Need, cgroup2, require};

fn require_tools() {
    for tool in ["unshare", "ip", "bridge", "nft", "mount"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(tool).exists();
        assert!(
            found,
            "host tests need `{tool}` (the README's test command installs it)"
        );
    }
}

#[test]
fn probes_read_a_real_node() {
    if !require("probes_read_a_real_node", &[Need::Root]) {
        return;
    }
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let parent = format!("mvm-test-{}", std::process::id());
    let _guard = CgroupCleanup(cgroup2().join(&parent));
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[cgroup]\nparent = \"{parent}\"\n[firecracker]\nbinary = \"{}/firecracker\"\n",
            state.display(),
            state.display()
        ),
    )
    .unwrap();

    let out = Command::new("unshare")
        .args(["--net", "--mount", "--", "sh", "tests/host/probe/node.sh"])
        .arg(env!("CARGO_BIN_EXE_mvm"))
        .arg(&state)
        .arg(&parent)
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "probe.sh failed: {stderr}");
    let obs: Observed =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));

    let id = |s: &str| TenantId::parse(s).unwrap();
    // One netlink dump: the bridge with its address, the taps with master,
    // flags and owner.
    let bridge = obs.bridge.as_ref().expect("bridge found");
    assert!(bridge.up);
    assert_eq!(bridge.addresses, ["10.200.0.1/24"]);
    let acme = &obs.tenants[&id("acme")];
    let tap = acme.tap.as_ref().expect("tap-acme found");
    assert_eq!(tap.master.as_deref(), Some("mvmbr0"));
    assert_eq!((tap.isolated, tap.learning), (Some(true), Some(false)));
    assert_eq!((tap.owner, tap.group), (Some(100000), Some(100001)));
    let globex_tap = obs.tenants[&id("globex")]
        .tap
        .as_ref()
        .expect("tap-globex found");
    assert_eq!(globex_tap.master, None);
    assert_eq!(globex_tap.owner, Some(100002));
    assert!(
        obs.ignored.iter().any(|i| i.contains("tap-fake")),
        "{:?}",
        obs.ignored
    );

    // One nft dump: mvm's tables only, tenant elements filed under tenants.
    let tables = obs.nft.as_ref().expect("nft readable as root");
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        ["bridge mvm_l2", "inet mvm"]
    );
    assert!(tables["bridge mvm_l2"].chains.contains("guest_ingress"));
    let nft = acme.nft.as_ref().expect("acme's nft elements");
    assert_eq!(nft.ip, Some("10.200.0.10".parse().unwrap()));
    assert_eq!(
        nft.mac.map(|m| m.to_string()).as_deref(),
        Some("02:00:0a:c8:00:0a")
    );
    assert_eq!(nft.mark, Some(100000));
    assert!(nft.metadata && !nft.ssh_from_gateway);

    // One mountinfo read: the secrets tmpfs with its flags and options.
    let secrets = acme.secrets.as_ref().expect("secrets mount found");
    assert_eq!(secrets.fstype, "tmpfs");
    for flag in ["nodev", "noexec", "nosuid"] {
        assert!(
            secrets.options.iter().any(|o| o == flag),
            "{flag} in {:?}",
            secrets.options
        );
    }
    assert!(
        secrets.super_options.iter().any(|o| o == "mode=700"),
        "{:?}",
        secrets.super_options
    );
    assert!(
        secrets.super_options.iter().any(|o| o == "size=16384k"),
        "{:?}",
        secrets.super_options
    );

    // The state dir: the record, the dirs, a corrupt record as an error,
    // junk reported and never followed.
    let rec = acme.record.as_ref().expect("acme's record");
    assert_eq!((rec.uid, rec.gid), (100000, 100001));
    assert_eq!(acme.dir.as_ref().unwrap().mode, "0700");
    assert!(acme.jail_dir.is_some());
    let broken = &obs.tenants[&id("broken")];
    assert!(broken.record.is_none());
    assert!(
        broken
            .record_error
            .as_deref()
            .unwrap()
            .contains("not valid JSON"),
        "{:?}",
        broken.record_error
    );
    // What the probe reported and left out: `what` named, for `why`.
    let reported = |what: &str, why: &str| {
        obs.ignored
            .iter()
            .any(|i| i.contains(what) && i.contains(why))
    };
    assert!(
        reported("Not_Valid", "not a valid tenant id"),
        "{:?}",
        obs.ignored
    );
    assert!(reported("evil", "not a directory"), "{:?}", obs.ignored);
    assert!(!obs.tenants.contains_key(&id("evil")));
    assert!(
        reported("plainfile", "not a directory"),
        "{:?}",
        obs.ignored
    );
    assert!(
        reported("tenants/mounted", "a filesystem is mounted here"),
        "{:?}",
        obs.ignored
    );
    assert!(!obs.tenants.contains_key(&id("mounted")));

    // cgroup2 found from mountinfo; the tenant's cgroup dir seen. This host
    // may lack the limit controllers in cgroup2 (hybrid mode): then the
    // limit files are absent, which is what the probe must report.
    let cg = obs.cgroup.as_ref().expect("cgroup2 mount found");
    assert_eq!(cg.mount, cgroup2());
    let acme_cg = acme.cgroup.as_ref().expect("acme's cgroup dir");
    if !cg.controllers.contains("memory") {
        assert!(!acme_cg.files.contains_key("memory.max"));
    }

    // One /proc scan: the Firecracker-named process with --id acme in
    // acme's cgroup; the one outside it is reported, not taken for acme's.
    let vm = acme.vm.as_ref().expect("acme's VM process");
    assert!(vm.pid > 0 && vm.start_time > 0);
    assert!(
        obs.ignored
            .iter()
            .any(|i| i.contains("names tenant acme but is not in cgroup")),
        "{:?}",
        obs.ignored
    );

    // A plan against this node reports the corrupt record instead of
    // resetting it.
    let desired = tmp.path().join("desired.json");
    std::fs::write(&desired, r#"{"tenants": []}"#).unwrap();
    let observed = tmp.path().join("observed.json");
    std::fs::write(&observed, &out.stdout).unwrap();
    let plan = Command::new(env!("CARGO_BIN_EXE_mvm"))
        .args(["agent", "plan", "--config"])
        .arg(&config)
        .arg("--desired")
        .arg(&desired)
        .arg("--observed")
        .arg(&observed)
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&plan.stderr).contains("cannot use the record of tenant broken")
    );
}

#[test]
fn observe_never_fails_on_this_host() {
    // On any host, observing never fails: what cannot be read is a fact.
    let out = Command::new(env!("CARGO_BIN_EXE_mvm"))
        .args(["agent", "observe", "--json"])
        .env_remove("MVM_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let obs: Observed = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(obs.format_version, mvm::observed::OBSERVED_VERSION);
}
