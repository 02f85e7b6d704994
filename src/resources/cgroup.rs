//! `tenant.<id>.cgroup`: `<cgroup2>/<parent>/<id>` with the tenant's memory,
//! CPU and PID limits. Limits change in place; the cgroup is only replaced
//! if its path moves.
//!
//! A node whose cgroup2 tree lacks a needed controller (hybrid hosts bind
//! memory/cpu/pids to v1) cannot enforce the limits: the plan marks the
//! resource as blocked, unless node.toml allows missing controllers, in
//! which case the limits it cannot set are left out and the plan warns.

use super::{Attrs, Ctx, Desired, ResolvedTenant, attr_str};
use crate::apply::context::ApplyCtx;
use crate::observed::{CgroupObs, ObservedTenant};
use crate::providers::host::{HostError, HostResult};
use crate::security::cgroups::CgroupLimits;
use crate::spec::types::TenantId;
use std::path::PathBuf;

pub const REPLACE_ON: &[&str] = &["path"];

/// The limit files mvm manages, with the controller each needs.
pub const LIMIT_FILES: &[(&str, &str)] = &[
    ("cpu.max", "cpu"),
    ("cpuset.cpus", "cpuset"),
    ("memory.max", "memory"),
    ("pids.max", "pids"),
];

pub fn path(ctx: &Ctx, id: &TenantId) -> String {
    format!("{}/{id}", ctx.node.cgroup.parent)
}

/// Controllers the limits need that the cgroup2 root does not offer, or
/// every one of them when cgroup2 is not mounted.
pub fn missing_controllers(ctx: &Ctx, limits: &CgroupLimits) -> Vec<&'static str> {
    let have = ctx.observed.cgroup.as_ref().map(|c| &c.controllers);
    limits
        .controllers()
        .into_iter()
        .filter(|c| !have.is_some_and(|h| h.contains(*c)))
        .collect()
}

pub fn desired(ctx: &Ctx, t: &ResolvedTenant) -> Desired {
    let limits = CgroupLimits::for_tenant(&t.spec);
    let skip = if ctx.node.cgroup.allow_missing_controllers {
        missing_controllers(ctx, &limits)
    } else {
        Vec::new()
    };
    let mut d = Desired::default();
    d.set("path", path(ctx, t.id()));
    let values = [
        ("cpu.max", Some(limits.cpu_max.clone())),
        ("cpuset.cpus", limits.cpuset_cpus.clone()),
        ("memory.max", Some(limits.memory_max.to_string())),
        ("pids.max", Some(limits.pids_max.to_string())),
    ];
    for ((file, ctrl), (_, value)) in LIMIT_FILES.iter().zip(values) {
        if let Some(v) = value
            && !skip.contains(ctrl)
        {
            d.set(file, v);
        }
    }
    d
}

/// Why the cgroup cannot be applied on this node, if it cannot.
pub fn blocked(ctx: &Ctx, t: &ResolvedTenant) -> Option<String> {
    let Some(cg) = &ctx.observed.cgroup else {
        return Some("cgroup2 is not mounted on this node".into());
    };
    if ctx.node.cgroup.allow_missing_controllers {
        return None;
    }
    let missing = missing_controllers(ctx, &CgroupLimits::for_tenant(&t.spec));
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "the cgroup2 tree at {} lacks the {} controller{} (bound to cgroup v1 on this host?)",
        cg.mount.display(),
        missing.join(", "),
        if missing.len() == 1 { "" } else { "s" }
    ))
}

pub fn observed(ctx: &Ctx, id: &TenantId, obs: &ObservedTenant) -> Option<Attrs> {
    let cg = obs.cgroup.as_ref()?;
    let mut a = Attrs::new();
    a.insert("path".into(), path(ctx, id).into());
    for (file, _) in LIMIT_FILES {
        if let Some(v) = cg.files.get(*file) {
            a.insert((*file).into(), v.clone().into());
        }
    }
    Some(a)
}

pub fn simulate(t: &mut ObservedTenant, after: Option<&Attrs>) {
    t.cgroup = after.map(|a| CgroupObs {
        files: LIMIT_FILES
            .iter()
            .filter(|(f, _)| a.contains_key(*f))
            .map(|(f, _)| (f.to_string(), attr_str(a, f)))
            .collect(),
        populated: false,
    });
}

/// The cgroup2 root and the tenant's cgroup below it. The path comes from
/// the tenant id and the node config, never from the plan's attributes; a
/// plan whose `path` disagrees (edited by hand) is refused.
fn dir_of(ctx: &ApplyCtx, id: &TenantId, attrs: &Attrs) -> HostResult<(PathBuf, PathBuf)> {
    let rel = PathBuf::from(format!("{}/{id}", ctx.node.cgroup.parent));
    if attrs
        .get("path")
        .is_some_and(|p| p.as_str() != rel.to_str())
    {
        return Err(HostError::new(
            "use",
            &rel,
            std::io::Error::other("the plan names another cgroup path for this tenant"),
        ));
    }
    match &ctx.cgroup_mount {
        Some(root) => Ok((root.clone(), rel)),
        None => Err(HostError::new(
            "create cgroup",
            &rel,
            std::io::Error::other("cgroup2 is not mounted on this node"),
        )),
    }
}

/// Creates the cgroup (enabling the controllers its limits need in every
/// ancestor) and writes each limit that differs from what is there.
pub fn apply(ctx: &ApplyCtx, id: &TenantId, before: Option<&Attrs>, after: &Attrs) -> HostResult {
    let (root, rel) = dir_of(ctx, id, after)?;
    let controllers: Vec<&str> = LIMIT_FILES
        .iter()
        .filter(|(f, _)| after.contains_key(*f))
        .map(|(_, c)| *c)
        .collect();
    ctx.host.cgroup_create(&root, &rel, &controllers)?;
    let dir = root.join(&rel);
    for (file, _) in LIMIT_FILES {
        let want = after.get(*file);
        let have = before.and_then(|b| b.get(*file));
        match (want, have) {
            (Some(w), h) if Some(w) != h => {
                ctx.host
                    .cgroup_write(&dir, file, w.as_str().unwrap_or_default())?
            }
            // A limit no longer wanted (a cpuset dropped) goes back to the
            // parent's value.
            (None, Some(_)) if *file == "cpuset.cpus" => ctx.host.cgroup_write(&dir, file, "")?,
            _ => {}
        }
    }
    Ok(())
}

/// Kills whatever still runs in it, waits until it is empty, removes it.
pub fn delete(ctx: &ApplyCtx, id: &TenantId, before: &Attrs) -> HostResult {
    let (root, rel) = dir_of(ctx, id, before)?;
    ctx.host.cgroup_remove(&root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::host::LinuxHost;
    use std::fs;
    use std::sync::Arc;

    /// This host's cgroup2 tree may lack memory/cpu/pids (hybrid mode), so
    /// the limit writes run against a prepared tree laid out like cgroup2:
    /// interface files exist and take writes, `subtree_control` included.
    fn prepared(controllers: &str) -> (tempfile::TempDir, ApplyCtx) {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), controllers).unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        fs::create_dir_all(root.path().join("mvm/acme")).unwrap();
        fs::write(root.path().join("mvm/cgroup.subtree_control"), "").unwrap();
        for f in ["memory.max", "cpu.max", "pids.max", "cpuset.cpus"] {
            fs::write(root.path().join("mvm/acme").join(f), "").unwrap();
        }
        let node = crate::spec::NodeConfig::default_config();
        let ctx = ApplyCtx {
            host: Arc::new(LinuxHost),
            layout: crate::state::StateLayout::new(&node.state_dir),
            audit: crate::security::audit::AuditWriter::new(
                "/nonexistent".into(),
                "n".into(),
                "c".into(),
            ),
            cgroup_mount: Some(root.path().to_path_buf()),
            node,
        };
        (root, ctx)
    }

    fn attrs(pairs: &[(&'static str, &str)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (AttrNameOf::from(*k), serde_json::Value::from(*v)))
            .collect()
    }
    type AttrNameOf = crate::resources::AttrName;

    #[test]
    fn writes_limits_and_enables_controllers_in_every_ancestor() {
        let (root, ctx) = prepared("cpuset cpu io memory pids");
        let after = attrs(&[
            ("path", "mvm/acme"),
            ("memory.max", "1174405120"),
            ("cpu.max", "200000 100000"),
            ("pids.max", "256"),
        ]);
        apply(&ctx, &TenantId::parse("acme").unwrap(), None, &after).unwrap();
        let r = root.path();
        let read = |p: &str| {
            fs::read_to_string(r.join(p))
                .unwrap()
                .trim_end()
                .to_string()
        };
        assert_eq!(read("cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(read("mvm/cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(read("mvm/acme/memory.max"), "1174405120");
        assert_eq!(read("mvm/acme/cpu.max"), "200000 100000");
        assert_eq!(read("mvm/acme/pids.max"), "256");
        assert_eq!(
            read("mvm/acme/cpuset.cpus"),
            "",
            "no cpuset asked for, none written"
        );
    }

    #[test]
    fn update_writes_only_what_changed_and_clears_a_dropped_cpuset() {
        let (root, ctx) = prepared("cpuset cpu memory pids");
        let before = attrs(&[
            ("path", "mvm/acme"),
            ("memory.max", "1"),
            ("cpu.max", "max 100000"),
            ("cpuset.cpus", "2-3"),
        ]);
        let after = attrs(&[
            ("path", "mvm/acme"),
            ("memory.max", "1"),
            ("cpu.max", "100000 100000"),
        ]);
        fs::write(root.path().join("mvm/acme/memory.max"), "untouched").unwrap();
        fs::write(root.path().join("mvm/acme/cpuset.cpus"), "2-3").unwrap();
        apply(
            &ctx,
            &TenantId::parse("acme").unwrap(),
            Some(&before),
            &after,
        )
        .unwrap();
        let read = |p: &str| {
            fs::read_to_string(root.path().join(p))
                .unwrap()
                .trim_end()
                .to_string()
        };
        assert_eq!(read("mvm/acme/memory.max"), "untouched");
        assert_eq!(read("mvm/acme/cpu.max"), "100000 100000");
        assert_eq!(read("mvm/acme/cpuset.cpus"), "");
    }

    #[test]
    fn desired_limits_follow_the_controllers_the_node_has() {
        let mut obs = crate::observed::Observed::empty();
        obs.cgroup = Some(crate::observed::CgroupMount {
            mount: "/sys/fs/cgroup".into(),
            controllers: ["hugetlb".to_string()].into(),
        });
        let mut node = crate::spec::NodeConfig::default_config();
        let spec: crate::spec::TenantSpec = serde_json::from_value(serde_json::json!({
            "tenant_id": "acme", "flake_ref": "github:a/b", "profile": "minimal", "vcpus": 2, "mem_mib": 1024,
            "state": "running", "ip": null, "mac": null, "seccomp": "baseline", "metadata": false,
            "ssh_from_gateway": false, "cpuset": null, "pids_max": 256, "data_mib": null, "lock": null})).unwrap();
        let t = ResolvedTenant::new(
            &node,
            spec,
            "10.200.0.2".parse().unwrap(),
            "02:00:0a:c8:00:02".parse().unwrap(),
            100000,
            100000,
        );
        // Strict (the default): all limits wanted, and the change is blocked.
        let ctx = Ctx::new(&node, &obs);
        assert!(desired(&ctx, &t).attrs.contains_key("memory.max"));
        assert!(
            blocked(&ctx, &t)
                .unwrap()
                .contains("lacks the cpu, memory, pids controllers")
        );
        // Development hosts may allow it: the limits it cannot set are left out.
        node.cgroup.allow_missing_controllers = true;
        let ctx = Ctx::new(&node, &obs);
        assert!(!desired(&ctx, &t).attrs.contains_key("memory.max"));
        assert!(blocked(&ctx, &t).is_none());
    }
}
