//! The seccomp filter a tenant's Firecracker runs under. `baseline` is
//! Firecracker's own built-in filter (always on: mvm never passes
//! `--no-seccomp`); `strict` is the node's filter file
//! (`firecracker.strict_seccomp_filter`, compiled with seccompiler-bin),
//! bound read-only into the jail and handed to Firecracker as
//! `--seccomp-filter`. A strict tenant on a node without that file does
//! not start: it is never quietly run under the weaker filter.

use crate::spec::SeccompLevel;
use crate::spec::node::FirecrackerConfig;
use std::path::PathBuf;

/// Where the strict filter is in the jail.
pub const FILTER_IN_JAIL: &str = "filter.bpf";

/// The filter file a VM at `level` gets bound into its jail (the host
/// path, and its name in the jail), if any.
pub fn filter_file(level: SeccompLevel, fc: &FirecrackerConfig) -> Option<(PathBuf, &'static str)> {
    match level {
        SeccompLevel::Strict => Some((fc.strict_seccomp_filter.clone(), FILTER_IN_JAIL)),
        SeccompLevel::Baseline => None,
    }
}

/// Why a VM at `level` cannot start on this node (`present`: whether the
/// strict filter file is there), if it cannot.
pub fn blocked(level: SeccompLevel, present: bool, fc: &FirecrackerConfig) -> Option<String> {
    (level == SeccompLevel::Strict && !present).then(|| {
        format!(
            "seccomp \"strict\" needs firecracker.strict_seccomp_filter, and {} is missing or unreadable",
            fc.strict_seccomp_filter.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_needs_its_file_and_baseline_binds_nothing() {
        let fc = crate::spec::NodeConfig::default_config().firecracker;
        assert_eq!(filter_file(SeccompLevel::Baseline, &fc), None);
        let (path, name) = filter_file(SeccompLevel::Strict, &fc).unwrap();
        assert_eq!(
            (path, name),
            (fc.strict_seccomp_filter.clone(), "filter.bpf")
        );
        assert!(blocked(SeccompLevel::Strict, false, &fc).is_some());
        assert!(blocked(SeccompLevel::Strict, true, &fc).is_none());
        assert!(blocked(SeccompLevel::Baseline, false, &fc).is_none());
    }
}
