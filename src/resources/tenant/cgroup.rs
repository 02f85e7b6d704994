//! `tenant.<id>.cgroup`: `<cgroup2>/<parent>/<id>` with the tenant's memory,
//! CPU and PID limits. Limits change in place; the cgroup is only replaced
//! if its path moves.
//!
//! A node whose cgroup2 tree lacks a needed controller (hybrid hosts bind
//! memory/cpu/pids to v1) cannot enforce the limits: the plan marks the
//! resource as blocked, unless node.toml allows missing controllers, in
//! which case the limits it cannot set are left out and the plan warns.

use crate::host::{HostError, HostResult};
use crate::observed::{CGROUP_LIMIT_FILES, CgroupObs, Observed};
use crate::resources::{
    ApplyCtx, At, Attrs, Dep, Desired, Documents, NodeView, PlanCtx, Provider, Resource, Scope,
    Subject,
};
use crate::security::audit::AuditDetails;
use crate::security::cgroups::CgroupLimits;
use crate::spec::TenantSpec;
use crate::spec::types::{CpuSet, TenantId};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

pub struct Cgroup;

/// The cgroup's attributes: its path below the cgroup2 root and each
/// limit file by name. A limit left out is not managed (its controller is
/// missing on a development host, or no cpuset is pinned).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupAttrs {
    pub path: String,
    #[serde(rename = "cpu.max")]
    pub cpu_max: Option<String>,
    #[serde(rename = "cpuset.cpus")]
    pub cpuset_cpus: Option<String>,
    #[serde(rename = "memory.max")]
    pub memory_max: Option<String>,
    #[serde(rename = "pids.max")]
    pub pids_max: Option<String>,
}

impl CgroupAttrs {
    /// Each limit file with its value, by name.
    fn files(&self) -> [(&'static str, Option<&str>); 4] {
        [
            ("cpu.max", self.cpu_max.as_deref()),
            ("cpuset.cpus", self.cpuset_cpus.as_deref()),
            ("memory.max", self.memory_max.as_deref()),
            ("pids.max", self.pids_max.as_deref()),
        ]
    }
}

/// The controller a limit file needs.
fn controller(file: &str) -> &'static str {
    CGROUP_LIMIT_FILES
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, c)| *c)
        .expect("every managed file is in CGROUP_LIMIT_FILES")
}

pub fn path(ctx: &PlanCtx, id: &TenantId) -> String {
    format!("{}/{id}", ctx.node.cgroup.parent)
}

/// Controllers the limits need that the cgroup2 root does not offer, or
/// every one of them when cgroup2 is not mounted.
pub fn missing_controllers(ctx: &PlanCtx, limits: &CgroupLimits) -> Vec<&'static str> {
    let have = ctx.observed.cgroup.as_ref().map(|c| &c.controllers);
    limits
        .controllers()
        .into_iter()
        .filter(|c| !have.is_some_and(|h| h.contains(*c)))
        .collect()
}

impl Resource for Cgroup {
    type Attrs = CgroupAttrs;
    const WORD: &'static str = "cgroup";
    const SCOPE: Scope = Scope::Tenant;
    const REPLACE_ON: &'static [&'static str] = &["path"];

    fn depends_on(&self, _: Option<&TenantSpec>) -> &'static [Dep] {
        &[Dep::Tenant("dirs")]
    }

    fn desired(&self, ctx: &PlanCtx, s: Subject) -> Option<Desired> {
        let Subject::Tenant(t) = s else { return None };
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
        for (file, value) in values {
            if let Some(v) = value
                && !skip.contains(&controller(file))
            {
                d.set(file, v);
            }
        }
        Some(d)
    }

    fn blocked(&self, ctx: &PlanCtx, s: Subject) -> Option<String> {
        let Subject::Tenant(t) = s else { return None };
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

    fn warnings(&self, ctx: &PlanCtx, view: &NodeView) -> Vec<String> {
        let mut w = Vec::new();
        if ctx.node.cgroup.allow_missing_controllers && !view.tenants.is_empty() {
            let all: BTreeSet<&str> = view
                .tenants
                .iter()
                .flat_map(|t| missing_controllers(ctx, &CgroupLimits::for_tenant(&t.spec)))
                .collect();
            if !all.is_empty() {
                w.push(format!(
                    "cgroup controllers {} are missing and cgroup.allow_missing_controllers is set: those tenant limits are NOT enforced",
                    all.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        // A cpuset naming CPUs the host does not have would fail (or pin
        // nothing) when written.
        if let Some(online) = ctx
            .observed
            .cpus_online
            .as_deref()
            .and_then(|c| c.parse::<CpuSet>().ok())
        {
            for t in view.tenants {
                let Some(set) = &t.spec.cpuset else { continue };
                // Where the cpuset controller is missing (and allowed to
                // be), nothing is written: the warning above says the
                // pin is not enforced; nothing would fail.
                if missing_controllers(ctx, &CgroupLimits::for_tenant(&t.spec)).contains(&"cpuset")
                {
                    continue;
                }
                let absent: Vec<String> = set
                    .cpus()
                    .iter()
                    .filter(|c| online.cpus().binary_search(c).is_err())
                    .map(u32::to_string)
                    .collect();
                if !absent.is_empty() {
                    w.push(format!(
                        "tenant {} pins cpuset {set}, but CPU{} {} {} not online on this host (online: {online}): writing cpuset.cpus will fail",
                        t.id(),
                        if absent.len() == 1 { "" } else { "s" },
                        absent.join(","),
                        if absent.len() == 1 { "is" } else { "are" },
                    ));
                }
            }
        }
        w
    }

    fn observed(&self, ctx: &PlanCtx, at: At) -> Option<Attrs> {
        let At::Tenant(id, obs) = at else { return None };
        let cg = obs.cgroup.as_ref()?;
        let mut a = Attrs::new();
        a.insert("path".into(), path(ctx, id).into());
        for (file, _) in CGROUP_LIMIT_FILES {
            if let Some(v) = cg.files.get(*file) {
                a.insert((*file).into(), v.clone().into());
            }
        }
        Some(a)
    }

    fn simulate(
        &self,
        obs: &mut Observed,
        id: Option<&TenantId>,
        after: Option<&CgroupAttrs>,
        _: &Documents,
    ) {
        let t = crate::resources::tenant_mut(obs, id);
        t.cgroup = after.map(|a| CgroupObs {
            files: a
                .files()
                .into_iter()
                .filter_map(|(f, v)| v.map(|v| (f.to_string(), v.to_string())))
                .collect(),
            populated: false,
        });
    }

    fn check(&self, ctx: &PlanCtx, id: Option<&TenantId>, a: &CgroupAttrs) -> Result<(), String> {
        let id = id.ok_or("not a tenant address")?;
        let want = path(ctx, id);
        if a.path != want {
            return Err(format!(
                "path is {:?}; mvm only ever plans {want:?}",
                a.path
            ));
        }
        for (file, v) in a.files() {
            if let Some(v) = v {
                check_limit(file, v)?;
            }
        }
        Ok(())
    }

    fn audit(&self, a: &CgroupAttrs) -> AuditDetails {
        [
            ("cpu_max", &a.cpu_max),
            ("cpuset_cpus", &a.cpuset_cpus),
            ("memory_max", &a.memory_max),
            ("pids_max", &a.pids_max),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect()
    }
}

/// The cgroup2 root and the tenant's cgroup below it. The path comes from
/// the tenant id and the node config, never from the plan's attributes; a
/// plan whose `path` disagrees (edited by hand) is refused.
fn dir_of(ctx: &ApplyCtx, id: &TenantId, planned: Option<&str>) -> HostResult<(PathBuf, PathBuf)> {
    let rel = PathBuf::from(format!("{}/{id}", ctx.node.cgroup.parent));
    if planned.is_some_and(|p| Some(p) != rel.to_str()) {
        return Err(HostError::other(
            "use",
            &rel,
            "the plan names another cgroup path for this tenant",
        ));
    }
    match &ctx.cgroup_mount {
        Some(root) => Ok((root.clone(), rel)),
        None => Err(HostError::other(
            "create cgroup",
            &rel,
            "cgroup2 is not mounted on this node",
        )),
    }
}

/// Checks one planned limit value against what a valid tenant spec can
/// produce.
fn check_limit(file: &str, v: &str) -> Result<(), String> {
    use crate::security::cgroups::{CPU_PERIOD_US, memory_max_bytes as bytes_for};
    use crate::spec::desired::{MEM_MIB_MAX, MEM_MIB_MIN, PIDS_MAX, PIDS_MIN, VCPUS_MAX};
    let bad = |why: &str| Err(format!("{file} {v:?} {why}"));
    match file {
        "memory.max" => match v.parse::<u64>() {
            Ok(n) if (bytes_for(MEM_MIB_MIN)..=bytes_for(MEM_MIB_MAX)).contains(&n) => Ok(()),
            _ => bad("is not a memory limit a tenant of 128 MiB..256 GiB gets"),
        },
        "pids.max" => match v.parse::<u64>() {
            Ok(n) if (PIDS_MIN..=PIDS_MAX).contains(&n) => Ok(()),
            _ => bad(&format!("is not a number in {PIDS_MIN}..={PIDS_MAX}")),
        },
        "cpu.max" => {
            let period = CPU_PERIOD_US.to_string();
            match v.split_once(' ') {
                Some(("max", p)) if p == period => Ok(()),
                Some((q, p)) if p == period => match q.parse::<u64>() {
                    Ok(q)
                        if q % CPU_PERIOD_US == 0
                            && (1..=VCPUS_MAX).contains(&(q / CPU_PERIOD_US)) =>
                    {
                        Ok(())
                    }
                    _ => bad("is not a quota of 1..32 whole CPUs"),
                },
                _ => bad(&format!("is not \"<quota> {period}\" or \"max {period}\"")),
            }
        }
        "cpuset.cpus" => match v.parse::<CpuSet>() {
            Ok(c) if c.to_string() == v => Ok(()),
            _ => bad("is not a canonical CPU list like 0-3,6"),
        },
        _ => bad("is not a limit mvm manages"),
    }
}

impl Provider<CgroupAttrs> for Cgroup {
    /// Creates the cgroup (enabling the controllers its limits need in
    /// every ancestor) and writes each limit that differs from what is
    /// there.
    fn apply(
        &self,
        ctx: &ApplyCtx,
        id: Option<&TenantId>,
        prior: Option<&CgroupAttrs>,
        after: &CgroupAttrs,
        _: &Documents,
    ) -> HostResult {
        let id = id.expect("a tenant address");
        let (root, rel) = dir_of(ctx, id, Some(&after.path))?;
        let controllers: Vec<&str> = after
            .files()
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(f, _)| controller(f))
            .collect();
        ctx.host.cgroups.cgroup_create(&root, &rel, &controllers)?;
        let had = prior.map(CgroupAttrs::files);
        for (i, (file, want)) in after.files().into_iter().enumerate() {
            let have = had.as_ref().and_then(|h| h[i].1);
            match (want, have) {
                (Some(w), h) if Some(w) != h => {
                    ctx.host.cgroups.cgroup_write(&root, &rel, file, w)?
                }
                // A limit no longer wanted (a cpuset dropped) goes back to
                // the parent's value.
                (None, Some(_)) if file == "cpuset.cpus" => {
                    ctx.host.cgroups.cgroup_write(&root, &rel, file, "")?
                }
                _ => {}
            }
        }
        let applied = after
            .files()
            .into_iter()
            .filter_map(|(f, v)| v.map(|v| (f.to_string(), v.to_string())))
            .collect();
        ctx.update_record(id, |r| r.cgroup = Some(applied))
    }

    /// Kills whatever still runs in it, waits until it is empty, removes
    /// it — and the parent mvm made, once no tenant's cgroup is left in it.
    fn delete(&self, ctx: &ApplyCtx, id: Option<&TenantId>, _: Option<&CgroupAttrs>) -> HostResult {
        let id = id.expect("a tenant address");
        let (root, rel) = dir_of(ctx, id, None)?;
        ctx.host.cgroups.cgroup_remove(&root, &rel)?;
        if ctx.record(id)?.is_some_and(|r| r.cgroup.is_some()) {
            ctx.update_record(id, |r| r.cgroup = None)?;
        }
        match rel.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                ctx.host.cgroups.cgroup_remove_if_unused(&root, parent)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Host;
    use crate::resources::{ResolvedTenant, decode};
    use std::fs;

    /// This host's cgroup2 tree may lack memory/cpu/pids (hybrid mode), so
    /// the limit writes run against a prepared tree laid out like cgroup2:
    /// interface files exist and take writes, `subtree_control` included.
    fn prepared(controllers: &str) -> (tempfile::TempDir, ApplyCtx) {
        // `<dir>/cgroup` is the cgroup2 root, `<dir>/state` the state dir
        // with the tenant's record.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("cgroup.controllers"), controllers).unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        fs::create_dir_all(root.join("mvm/acme")).unwrap();
        fs::write(root.join("mvm/cgroup.subtree_control"), "").unwrap();
        for f in ["memory.max", "cpu.max", "pids.max", "cpuset.cpus"] {
            fs::write(root.join("mvm/acme").join(f), "").unwrap();
        }
        let mut node = crate::spec::NodeConfig::default_config();
        node.state_dir = dir.path().join("state");
        let id = TenantId::parse("acme").unwrap();
        let record = crate::state::TenantRecord::with_identity(
            None,
            &id,
            100_000,
            100_000,
            "10.200.0.2".parse().unwrap(),
            "02:00:0a:c8:00:02".parse().unwrap(),
        );
        let layout = crate::state::StateLayout::new(&node.state_dir);
        fs::create_dir_all(layout.tenant_dir(&id)).unwrap();
        fs::write(layout.record(&id), serde_json::to_vec(&record).unwrap()).unwrap();
        let ctx = ApplyCtx::new(
            Host::linux(&node.state_dir),
            node,
            Some(root.clone()),
            "n".into(),
            "c".into(),
        );
        (dir, ctx)
    }

    fn attrs(pairs: &[(&'static str, &str)]) -> CgroupAttrs {
        let a: Attrs = pairs
            .iter()
            .map(|(k, v)| {
                (
                    crate::resources::AttrName::from(*k),
                    serde_json::Value::from(*v),
                )
            })
            .collect();
        decode(&"tenant.acme.cgroup".parse().unwrap(), &a).unwrap()
    }

    fn apply(
        ctx: &ApplyCtx,
        id: &TenantId,
        prior: Option<&CgroupAttrs>,
        after: &CgroupAttrs,
    ) -> HostResult {
        Provider::apply(&Cgroup, ctx, Some(id), prior, after, &Documents::new())
    }

    #[test]
    fn writes_limits_and_enables_controllers_in_every_ancestor() {
        let (root, ctx) = prepared("cpuset cpu io memory pids");
        let after = attrs(&[
            ("path", "mvm/acme"),
            ("memory.max", "1174405120"),
            ("cpu.max", "200000 100000"),
            ("pids.max", "256"),
        ]);
        let id = TenantId::parse("acme").unwrap();
        apply(&ctx, &id, None, &after).unwrap();
        let r = root.path().join("cgroup");
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
        let applied = ctx.record(&id).unwrap().unwrap().cgroup.unwrap();
        assert_eq!(
            applied.into_iter().collect::<Vec<_>>(),
            [
                ("cpu.max".to_string(), "200000 100000".to_string()),
                ("memory.max".into(), "1174405120".into()),
                ("pids.max".into(), "256".into()),
            ],
            "the record says what was written, and only that"
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
        let r = root.path().join("cgroup");
        fs::write(r.join("mvm/acme/memory.max"), "untouched").unwrap();
        fs::write(r.join("mvm/acme/cpuset.cpus"), "2-3").unwrap();
        apply(
            &ctx,
            &TenantId::parse("acme").unwrap(),
            Some(&before),
            &after,
        )
        .unwrap();
        let read = |p: &str| {
            fs::read_to_string(r.join(p))
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
        let t = ResolvedTenant {
            spec,
            ip: "10.200.0.2".parse().unwrap(),
            mac: "02:00:0a:c8:00:02".parse().unwrap(),
            uid: 100000,
            gid: 100000,
        };
        let desired = |ctx: &PlanCtx, t: &ResolvedTenant| {
            Resource::desired(&Cgroup, ctx, Subject::Tenant(t)).unwrap()
        };
        let blocked =
            |ctx: &PlanCtx, t: &ResolvedTenant| Resource::blocked(&Cgroup, ctx, Subject::Tenant(t));
        // Strict (the default): all limits wanted, and the change is blocked.
        let ctx = PlanCtx::new(&node, &obs);
        assert!(desired(&ctx, &t).attrs.contains_key("memory.max"));
        assert!(
            blocked(&ctx, &t)
                .unwrap()
                .contains("lacks the cpu, memory, pids controllers")
        );
        // Development hosts may allow it: the limits it cannot set are left out.
        node.cgroup.allow_missing_controllers = true;
        let ctx = PlanCtx::new(&node, &obs);
        assert!(!desired(&ctx, &t).attrs.contains_key("memory.max"));
        assert!(blocked(&ctx, &t).is_none());
    }
}
