//! A tenant's cgroup limits, derived from its spec.
//!
//! `memory.max` covers the guest's RAM plus the VMM's own overhead
//! (Firecracker's process, its page tables, virtio queues and I/O buffers):
//! 64 MiB plus 1/32 of guest memory. A tenant that exceeds it is OOM-killed
//! inside its own cgroup instead of pressuring the node.
//!
//! CPU: without a cpuset, `cpu.max` grants `vcpus` full CPUs per 100 ms
//! period. With a pinned cpuset, the tenant owns those CPUs: `cpuset.cpus`
//! confines it and `cpu.max` stays `max`.

use crate::spec::TenantSpec;
use serde::{Deserialize, Serialize};

pub const CPU_PERIOD_US: u64 = 100_000;
pub const VMM_OVERHEAD_BASE_MIB: u64 = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// `memory.max` in bytes.
    pub memory_max: u64,
    /// `cpu.max` as the kernel prints it: `<quota> <period>` or `max <period>`.
    pub cpu_max: String,
    /// `cpuset.cpus`, when the tenant pins CPUs.
    pub cpuset_cpus: Option<String>,
    /// `pids.max`.
    pub pids_max: u32,
}

/// `memory.max` in bytes for a guest of `mem_mib`: its RAM plus the VMM's
/// overhead. The one place this formula is written.
pub fn memory_max_bytes(mem_mib: u64) -> u64 {
    (mem_mib + VMM_OVERHEAD_BASE_MIB + mem_mib.div_ceil(32)) << 20
}

impl CgroupLimits {
    pub fn for_tenant(t: &TenantSpec) -> Self {
        let memory_max = memory_max_bytes(u64::from(t.mem_mib));
        let cpu_max = match &t.cpuset {
            Some(_) => format!("max {CPU_PERIOD_US}"),
            None => format!("{} {CPU_PERIOD_US}", u64::from(t.vcpus) * CPU_PERIOD_US),
        };
        Self {
            memory_max,
            cpu_max,
            cpuset_cpus: t.cpuset.as_ref().map(|c| c.to_string()),
            pids_max: t.pids_max,
        }
    }

    /// The cgroup v2 controllers these limits need.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut c = vec!["cpu", "memory", "pids"];
        if self.cpuset_cpus.is_some() {
            c.insert(1, "cpuset");
        }
        c
    }
}
