//! What the use-case tests on the recording host share: an operator who
//! approves every plan (remembering the last one shown), quiet progress,
//! and the observation of a capable node for what the recording host does
//! not model (installed binaries, cgroup2 controllers, IPv6).

#![allow(dead_code)]

use mvm::apply::progress::Progress;
use mvm::apply::{Phase, StepResult};
use mvm::observed::{CgroupMount, Observed};
use mvm::plan::{Action, Plan};
use mvm::resources::ResourceAddr;
use std::sync::{Arc, Mutex};

pub struct Quiet;

impl Progress for Quiet {
    fn started(&self, _: &ResourceAddr, _: Phase, _: Action) {}
    fn finished(&self, _: &StepResult) {}
}

/// Approves every plan; keeps the last one shown.
#[derive(Default)]
pub struct Approve(pub Mutex<Option<Plan>>);

impl Approve {
    pub fn shown(&self) -> Plan {
        self.0.lock().unwrap().clone().expect("a plan was shown")
    }
}

impl mvm::agent::reconcile::Ui for Approve {
    fn waiting_for_lock(&self, _: &str) {}
    fn show_plan(&self, plan: &Plan) {
        *self.0.lock().unwrap() = Some(plan.clone());
    }
    fn confirm(&self, _: &Plan) -> Result<bool, mvm::agent::AgentError> {
        Ok(true)
    }
    fn progress(&self) -> Arc<dyn Progress> {
        Arc::new(Quiet)
    }
    fn interrupted(&self) {}
}

/// A node with Firecracker (the jailer when `jailer`), Nix, the strict
/// seccomp filter, mkfs.ext4, every cgroup controller and IPv6.
pub fn capable_node(jailer: bool) -> Observed {
    let mut o = Observed::empty();
    let b = &mut o.binaries;
    (b.firecracker, b.jailer, b.nix) = (true, jailer, true);
    (b.strict_seccomp_filter, b.nix_build_users, b.mkfs_ext4) = (true, true, true);
    o.cgroup = Some(CgroupMount {
        mount: "/sys/fs/cgroup".into(),
        controllers: ["cpu", "cpuset", "io", "memory", "pids"]
            .map(String::from)
            .into(),
    });
    o.cpus_online = Some("0-7".into());
    o.sysctls
        .insert("net.ipv6.conf.default.accept_ra".into(), "1".into());
    o
}
