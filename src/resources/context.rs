//! What providers need while changing the host: the host's capabilities,
//! the node config and state layout the plan was made with, the cgroup2
//! mount the plan was made against, and the audit writer. Built by the
//! executor from a plan's apply context; nothing else.

use crate::providers::host::Host;
use crate::security::audit::AuditWriter;
use crate::spec::NodeConfig;
use crate::state::StateLayout;
use std::path::PathBuf;

pub struct ApplyCtx {
    pub host: Host,
    pub node: NodeConfig,
    pub layout: StateLayout,
    pub cgroup_mount: Option<PathBuf>,
    pub audit: AuditWriter,
}

impl ApplyCtx {
    pub fn new(
        host: Host,
        node: NodeConfig,
        cgroup_mount: Option<PathBuf>,
        node_id: String,
        command: String,
    ) -> Self {
        let layout = StateLayout::new(&node.state_dir);
        Self {
            audit: AuditWriter::new(layout.clone(), node_id, command),
            host,
            layout,
            cgroup_mount,
            node,
        }
    }
}
