//! What the appliers need while changing the host: the host itself, the
//! state layout, the cgroup2 mount the plan was made against, and the audit
//! writer. Built from the plan's apply context, nothing else.

use crate::plan::Plan;
use crate::providers::host::Host;
use crate::security::audit::AuditWriter;
use crate::spec::NodeConfig;
use crate::state::StateLayout;
use std::path::PathBuf;
use std::sync::Arc;

pub struct ApplyCtx {
    pub host: Arc<dyn Host>,
    pub node: NodeConfig,
    pub layout: StateLayout,
    pub cgroup_mount: Option<PathBuf>,
    pub audit: AuditWriter,
}

impl ApplyCtx {
    pub fn new(plan: &Plan, host: Arc<dyn Host>, node_id: String, command: String) -> Self {
        let node = plan.apply_context.node.clone();
        let layout = StateLayout::new(&node.state_dir);
        Self {
            audit: AuditWriter::new(layout.tenants_dir(), node_id, command),
            host,
            layout,
            cgroup_mount: plan.apply_context.cgroup_mount.clone(),
            node,
        }
    }
}
