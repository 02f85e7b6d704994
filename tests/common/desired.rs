//! Generated desired states for the property tests: up to `n` tenants
//! with unique ids, IPs and MACs, covering every spec field, validated
//! against the default node config like a file would be.

use mvm::spec::{self, DesiredState, NodeConfig};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;

pub fn tenant() -> impl Strategy<Value = Value> {
    ((
        "[a-z][a-z0-9]{0,5}",
        prop::sample::select(vec!["github:org/app?rev=1356a192b7913b04c54574d18c28d46e6395428a", "github:org/app?rev=2da4b9237bacccdf19c0760cab7aec4a8359010b", "git+https://git.example/x.git"]),
        prop::sample::select(vec!["minimal", "standard"]),
        1u8..=4,
        prop::sample::select(vec![256u32, 512, 1024]),
        prop::sample::select(vec!["running", "running", "stopped"]),
    ), (
        prop::option::of(2u8..250),
        prop::option::of(any::<u8>()),
        any::<(bool, bool, bool)>(),
        prop::option::of(prop::sample::select(vec!["0-3", "4-7"])),
        prop::option::of(prop::sample::select(vec![64u32, 512])),
        prop::option::of(Just(4096u32)),
        any::<bool>(),
    ))
        .prop_map(|((id, flake, profile, vcpus, mem, state), (ip, mac, (strict, metadata, ssh), cpuset, pids, data, lock))| {
            let mut t = json!({"tenant_id": id, "flake_ref": flake, "profile": profile, "vcpus": vcpus,
                "mem_mib": mem, "state": state, "metadata": metadata, "ssh_from_gateway": ssh});
            let o = t.as_object_mut().unwrap();
            if let Some(ip) = ip {
                o.insert("ip".into(), format!("10.200.0.{ip}").into());
            }
            if let Some(m) = mac {
                o.insert("mac".into(), format!("02:01:00:00:00:{m:02x}").into());
            }
            if strict {
                o.insert("seccomp".into(), "strict".into());
            }
            if let Some(c) = cpuset {
                o.insert("cpuset".into(), c.into());
            }
            if let Some(p) = pids {
                o.insert("pids_max".into(), p.into());
            }
            if let Some(d) = data {
                o.insert("data_mib".into(), d.into());
            }
            if lock {
                o.insert("lock".into(), "a".repeat(64).into());
            }
            t
        })
}

/// Up to `n` tenants with unique ids, IPs and MACs, validated like a file.
pub fn desired(n: usize) -> impl Strategy<Value = DesiredState> {
    prop::collection::vec(tenant(), 0..n).prop_map(|ts| {
        let (mut ids, mut ips, mut macs) = (Vec::new(), Vec::new(), Vec::new());
        let mut kept = Vec::new();
        for mut t in ts {
            let id = t["tenant_id"].clone();
            if ids.contains(&id) {
                continue;
            }
            ids.push(id);
            let o = t.as_object_mut().unwrap();
            for (key, seen) in [("ip", &mut ips), ("mac", &mut macs)] {
                if let Some(v) = o.get(key).cloned() {
                    if seen.contains(&v) {
                        o.remove(key);
                    } else {
                        seen.push(v);
                    }
                }
            }
            kept.push(t);
        }
        let node = NodeConfig::default_config();
        let text = json!({ "tenants": kept }).to_string();
        spec::parse_desired(Path::new("generated.json"), &text, &node)
            .expect("generated desired state is valid")
    })
}
