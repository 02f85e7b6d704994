//! The metadata service as root in throwaway network, mount and pid
//! namespaces (a service the script leaves running dies with it)
//! (`tests/host/metadata/service.sh`): identity from the packet mark and
//! address, tokens, refusals, rate limit.

mod common;

use common::host::{Need, Script, require};

#[test]
fn the_metadata_service_answers_only_the_tenant_it_identifies() {
    if require(
        "the_metadata_service_answers_only_the_tenant_it_identifies",
        &[Need::Root],
    ) {
        Script::new("metadata/service").net().pid().checks(7);
    }
}
