//! The state dir and the cgroup tree, read by fd: each tenant's tree, its
//! record, its secrets mount, its cgroup's limits.

use super::filing::{dir_obs, tenant};
use super::mountinfo;
use crate::host::fs::beneath::{self, Tree};
use crate::observed::{CGROUP_LIMIT_FILES, CgroupMount, CgroupObs, Observed};
use crate::spec::NodeConfig;
use crate::spec::types::TenantId;
use crate::state::{StateLayout, TenantRecord};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Lists `<state>/tenants` and reads each tenant's tree, all by fd from the
/// state dir: a link in place of `tenants`, a tenant dir or a file in it is
/// reported, never followed. Mounts on `secrets/` are found by mount id
/// and matched to mountinfo by it, so how the state dir is spelled (a
/// link in its path, say) does not matter.
pub(super) fn probe_state_dir(
    layout: &StateLayout,
    mounts: &[mountinfo::MountEntry],
    obs: &mut Observed,
) {
    let dir = layout.tenants_dir();
    // The error names the path.
    let unreadable = |obs: &mut Observed, e: std::io::Error| {
        obs.facts.insert(
            crate::observed::fact::STATE_DIR.into(),
            format!("cannot read {e}"),
        );
    };
    let root = match Tree::open(layout.root()) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => return unreadable(obs, e),
    };
    let tenants = match root.dir(Path::new("tenants")) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => return unreadable(obs, e),
    };
    let names = match beneath::names(&tenants, &dir) {
        Ok(n) => n,
        Err(e) => return unreadable(obs, e),
    };
    let by_id: BTreeMap<u64, &mountinfo::MountEntry> = mounts.iter().map(|m| (m.id, m)).collect();
    let mut notes = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let Some(id) = name.to_str().and_then(|n| TenantId::parse(n).ok()) else {
            obs.ignored
                .push(format!("{}: not a valid tenant id", path.display()));
            continue;
        };
        // O_DIRECTORY | O_NOFOLLOW refuses a link and anything not a
        // directory: no stat first.
        let fd = match openat(
            &tenants,
            name.as_os_str(),
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(
                nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP | nix::errno::Errno::ENOENT,
            ) => {
                obs.ignored.push(format!(
                    "{}: not a directory (a link is never followed)",
                    path.display()
                ));
                continue;
            }
            Err(e) => {
                obs.ignored
                    .push(format!("{}: {}", path.display(), e.desc()));
                continue;
            }
        };
        let Ok(Some(st)) = beneath::stat_of(&fd, c"") else {
            continue;
        };
        if st.mount != root.mount() {
            obs.ignored.push(beneath::mounted_here(&path).to_string());
            continue;
        }
        let t = tenant(obs, &id);
        t.dir = Some(dir_obs(&st));
        t.jail_dir = subdir(&fd, c"jail").map(|st| dir_obs(&st));
        t.logs_dir = subdir(&fd, c"logs").is_some();
        if let Some(top) = subdir(&fd, c"secrets") {
            t.secrets_dir = Some(dir_obs(&top));
            let mount = mount_number(top.mount);
            if let Some(m) = mount
                .filter(|m| Some(*m) != mount_number(st.mount))
                .and_then(|m| by_id.get(&m))
            {
                let mut options = m.options.clone();
                options.sort();
                t.secrets = Some(crate::observed::MountObs {
                    fstype: m.fstype.clone(),
                    options,
                    super_options: m.super_options.clone(),
                    root: Some(dir_obs(&top)),
                });
                let tmpfs = path.join("secrets");
                let found = secrets_generations(&fd, &tmpfs);
                t.secrets_generations = crate::host::probe::file_secrets(&tmpfs, found, &mut notes);
            }
        }
        match read_record_at(&fd, &layout.record(&id), &id) {
            Ok(r) => t.record = r,
            Err(e) => t.record_error = Some(e),
        }
        t.artifact_gone = t
            .record
            .as_ref()
            .and_then(|r| r.artifact.as_ref())
            .is_some_and(|a| !crate::host::vm::nixbuild::in_store(Path::new(&a.store_path)));
    }
    obs.ignored.extend(notes);
}

/// The manifests of the generations on a tenant's secrets tmpfs (by fd
/// from the tenant dir, no link followed), one directory listing and one
/// small read per generation.
fn secrets_generations(tenant: &OwnedFd, tmpfs: &Path) -> Vec<super::filing::ManifestRead> {
    let Ok(top) = openat(
        tenant,
        "secrets",
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return Vec::new();
    };
    let Ok(names) = beneath::names(&top, tmpfs) else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| {
            n.to_str()
                .and_then(crate::security::secrets::parse_generation_dir)
        })
        .map(|n| {
            let read = crate::host::linux::read_manifest(&top, tmpfs, n).map_err(|e| e.to_string());
            (n, read)
        })
        .collect()
}

fn mount_number(m: beneath::MountId) -> Option<u64> {
    match m {
        beneath::MountId::Mount(n) => Some(n),
        beneath::MountId::Device(_) => None,
    }
}

/// The directory `name` in a tenant dir (the top of whatever is mounted
/// on it, and its mount); `None` when missing or not a directory.
fn subdir(tenant: &OwnedFd, name: &std::ffi::CStr) -> Option<beneath::Stat> {
    beneath::stat_of(tenant, name)
        .ok()
        .flatten()
        .filter(beneath::Stat::is_dir)
}

/// Reads `tenant.json` in an open tenant dir: never through a link, never
/// blocking, a regular file with one link, at most `RECORD_CAP` bytes.
/// `Ok(None)`: no record.
fn read_record_at(
    tenant: &OwnedFd,
    path: &Path,
    id: &TenantId,
) -> Result<Option<TenantRecord>, String> {
    let fd = match openat(
        tenant,
        "tenant.json",
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("{}: cannot open: {}", path.display(), e.desc())),
    };
    let bytes = beneath::check_own_file(&fd, path)
        .and_then(|_| beneath::read_fd(fd, path, crate::state::record::RECORD_CAP))
        .map_err(|e| format!("cannot open: {e}"))?;
    crate::state::record::parse_record(path, &bytes, id).map(Some)
}

/// Reads `tenant.json` at `path` (in a tenant dir) the same way.
pub fn read_record(path: &Path, id: &TenantId) -> Result<Option<TenantRecord>, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fd = match Tree::open(dir).and_then(|t| t.dir(Path::new(""))) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot open: {e}", path.display())),
    };
    read_record_at(&fd, path, id)
}

pub(super) fn probe_cgroups(
    node: &NodeConfig,
    mounts: &[mountinfo::MountEntry],
    obs: &mut Observed,
) {
    match mounts.iter().find(|m| m.fstype == "cgroup2") {
        Some(m) => read_cgroup_tree(&m.mount_point, &node.cgroup.parent, obs),
        None => {
            obs.facts
                .insert(crate::observed::fact::CGROUP2.into(), "not mounted".into());
        }
    }
}

/// Reads the controllers at the cgroup2 root and each tenant cgroup under
/// `<root>/<parent>`: its limit files (absent when the kernel does not
/// provide them) and whether processes live in it. By fd from the root,
/// like the state dir.
pub fn read_cgroup_tree(root: &Path, parent: &str, obs: &mut Observed) {
    let Ok(tree) = Tree::open(root) else {
        obs.facts.insert(
            crate::observed::fact::CGROUP2.into(),
            format!("cannot open {}", root.display()),
        );
        return;
    };
    let read = |dir: &OwnedFd, file: &str| -> Option<String> {
        let fd = openat(
            dir,
            file,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        String::from_utf8(beneath::read_fd(fd, Path::new(file), 64 * 1024).ok()?).ok()
    };
    let controllers = tree
        .dir(Path::new(""))
        .ok()
        .and_then(|fd| read(&fd, "cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    obs.cgroup = Some(CgroupMount {
        mount: root.to_path_buf(),
        controllers,
    });
    let base = root.join(parent);
    let Ok(parent_fd) = tree.dir(Path::new(parent)) else {
        return;
    };
    let Ok(names) = beneath::names(&parent_fd, &base) else {
        return;
    };
    for name in names {
        let path = base.join(&name);
        let is_dir = beneath::stat_at(&parent_fd, &name, &path)
            .ok()
            .flatten()
            .is_some_and(|st| beneath::is_dir(&st));
        if !is_dir {
            continue;
        }
        let Some(id) = name.to_str().and_then(|n| TenantId::parse(n).ok()) else {
            obs.ignored
                .push(format!("{}: not a valid tenant id", path.display()));
            continue;
        };
        let Ok(dir) = beneath::child_dir(&parent_fd, &name, &path, tree.mount()) else {
            continue;
        };
        let mut files = BTreeMap::new();
        for (file, _) in CGROUP_LIMIT_FILES {
            if let Some(v) = read(&dir, file) {
                let v = v.trim();
                if !v.is_empty() {
                    files.insert(file.to_string(), v.to_string());
                }
            }
        }
        let populated = read(&dir, "cgroup.events")
            .is_some_and(|s| s.lines().any(|l| l.trim() == "populated 1"));
        tenant(obs, &id).cgroup = Some(CgroupObs { files, populated });
    }
}
