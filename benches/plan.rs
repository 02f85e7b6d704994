//! Planning cost at fleet scale: 1,000 and 10,000 tenants, against a fresh
//! host (everything to create) and a converged one (no changes), from an
//! observed file on disk (parse + plan) and from memory (plan only).
//!
//! `cargo bench --bench plan`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mvm::agent::load_observed;
use mvm::observed::Observed;
use mvm::plan::{PlanOptions, plan, simulate};
use mvm::spec::{self, DesiredState, NodeConfig};
use std::hint::black_box;
use std::path::Path;

fn node() -> NodeConfig {
    spec::parse_node(
        Path::new("bench.toml"),
        "[bridge]\nsubnet = \"10.200.0.0/16\"\ngateway = \"10.200.0.1\"\n",
    )
    .unwrap()
}

fn desired(n: usize, node: &NodeConfig) -> DesiredState {
    let tenants: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"tenant_id": format!("t{i}"), "flake_ref": format!("github:org/app{}?rev=1356a192b7913b04c54574d18c28d46e6395428a", i % 7),
                "profile": "minimal", "vcpus": 1 + i % 4, "mem_mib": 512, "state": if i % 10 == 0 { "stopped" } else { "running" },
                "metadata": i % 3 == 0})
        })
        .collect();
    let text = serde_json::json!({ "tenants": tenants }).to_string();
    spec::parse_desired(Path::new("bench.json"), &text, node).unwrap()
}

fn fresh() -> Observed {
    let mut o = Observed::empty();
    o.binaries.firecracker = true;
    o.binaries.jailer = true;
    o.nft = Some(Default::default());
    o.cgroup = Some(mvm::observed::CgroupMount {
        mount: "/sys/fs/cgroup".into(),
        controllers: ["cpu", "cpuset", "memory", "pids"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    });
    o
}

fn bench(c: &mut Criterion) {
    let node = node();
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    for n in [1_000usize, 10_000] {
        let d = desired(n, &node);
        let fresh = fresh();
        let p = plan(&d, &node, &fresh, PlanOptions::default()).unwrap();
        let converged = simulate::apply_to(&p, &fresh).unwrap();
        let file = dir.path().join(format!("observed-{n}.json"));
        std::fs::write(&file, serde_json::to_vec(&converged).unwrap()).unwrap();

        g.bench_with_input(BenchmarkId::new("fresh_host", n), &n, |b, _| {
            b.iter(|| {
                plan(
                    black_box(&d),
                    &node,
                    black_box(&fresh),
                    PlanOptions::default(),
                )
                .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("converged", n), &n, |b, _| {
            b.iter(|| {
                plan(
                    black_box(&d),
                    &node,
                    black_box(&converged),
                    PlanOptions::default(),
                )
                .unwrap()
            })
        });
        g.bench_with_input(
            BenchmarkId::new("observed_file_then_plan", n),
            &n,
            |b, _| {
                b.iter(|| {
                    let obs = load_observed(black_box(&file)).unwrap();
                    plan(&d, &node, &obs, PlanOptions::default()).unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
