//! What a VM's metrics cost: the log pump summing one line Firecracker
//! wrote (a real one, from the Firecracker build the tests use), and
//! `mvm node metrics` rendering a node of 1,000 running VMs.

use criterion::{Criterion, criterion_group, criterion_main};
use mvm::agent::metrics::{NodeMetrics, VmMetrics, prometheus};
use mvm::spec::types::TenantId;
use mvm::state::logs::RunMetrics;

const LINE: &[u8] = include_bytes!("../fixtures/firecracker/metrics-line.json");

fn bench(c: &mut Criterion) {
    c.bench_function("sum one Firecracker metrics line", |b| {
        let mut m = RunMetrics::default();
        b.iter(|| m.add_line(std::hint::black_box(LINE)))
    });
    let mut run = RunMetrics::default();
    run.add_line(LINE);
    let vms = (0..1000)
        .map(|i| VmMetrics {
            tenant: TenantId::parse(&format!("t{i}")).unwrap(),
            running: true,
            pid: Some(1000 + i),
            vcpus: Some(2),
            mem_mib: Some(512),
            starts: 1,
            started_at: None,
            uptime_secs: Some(60),
            flushed: false,
            firecracker: Some(run.clone()),
        })
        .collect();
    let node = NodeMetrics {
        version: "0".into(),
        vms,
        last_reconcile: None,
        metadata_up: true,
        metadata: None,
    };
    c.bench_function("render node metrics of 1,000 VMs", |b| {
        b.iter(|| prometheus(std::hint::black_box(&node)).len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
