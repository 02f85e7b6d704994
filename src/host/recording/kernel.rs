//! `Cgroups` and `Mounts` on the recording host: cgroup directories and
//! their files, tmpfs mounts and the jail root in the model.

use super::{Call, Entry, RecordingHost};
use crate::host::{Cgroups, Mounts, TmpfsOptions};
use crate::host::{HostError, HostResult};
use std::path::Path;

impl Cgroups for RecordingHost {
    fn cgroup_create(&self, root: &Path, rel: &Path, controllers: &[&str]) -> HostResult {
        let dir = root.join(rel);
        let call = Call::CgroupCreate {
            dir: dir.clone(),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
        };
        self.record(call, |m| {
            m.mkdir_all(&dir);
            Ok(())
        })
    }
    fn cgroup_write(&self, root: &Path, rel: &Path, file: &str, value: &str) -> HostResult {
        let dir = &root.join(rel);
        let path = dir.join(file);
        let call = Call::CgroupWrite {
            dir: dir.to_path_buf(),
            file: file.to_string(),
            value: value.to_string(),
        };
        self.record(call, |m| {
            if m.entries.get(dir) != Some(&Entry::Dir) {
                return Err(HostError::new(
                    "open",
                    &path,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            m.entries
                .insert(path.clone(), Entry::File(format!("{value}\n").into_bytes()));
            Ok(())
        })
    }
    fn cgroup_remove(&self, root: &Path, rel: &Path) -> HostResult {
        let d = root.join(rel);
        self.record(Call::CgroupRemove(d.clone()), |m| {
            m.remove_under(&d);
            Ok(())
        })
    }
    fn cgroup_kill(&self, root: &Path, rel: &Path) -> HostResult {
        self.record(Call::CgroupKill(root.join(rel)), |_| Ok(()))
    }
    fn cgroup_remove_if_unused(&self, root: &Path, rel: &Path) -> HostResult {
        let d = root.join(rel);
        self.record(Call::CgroupRemoveIfUnused(d.clone()), |m| {
            let has_children = m
                .entries
                .iter()
                .any(|(p, e)| *e == Entry::Dir && p.parent() == Some(d.as_path()));
            if !has_children {
                m.remove_under(&d);
            }
            Ok(())
        })
    }
}

impl Mounts for RecordingHost {
    /// The root becomes a mount; the staged files and dirs exist in it
    /// (binds as mounts), as the real host leaves them.
    fn stage_jail(&self, stage: &crate::host::JailStage) -> HostResult {
        let s = stage.clone();
        self.record(Call::StageJail(stage.clone()), |m| {
            if m.mounts.contains(&s.root) {
                return Err(HostError::other(
                    "make the jail",
                    &s.root,
                    "refusing: something is mounted there already",
                ));
            }
            m.entries.insert(s.root.clone(), Entry::Dir);
            m.mounts.insert(s.root.clone());
            for d in &s.dirs {
                m.entries.insert(s.root.join(d), Entry::Dir);
            }
            for (f, bytes, _) in &s.files {
                m.entries.insert(s.root.join(f), Entry::File(bytes.clone()));
            }
            for (f, _, _) in &s.binds {
                m.entries.insert(s.root.join(f), Entry::File(Vec::new()));
                m.mounts.insert(s.root.join(f));
            }
            Ok(())
        })
    }
    /// Every mount at or below the root goes, and with the tmpfs what was
    /// in it.
    fn unstage_jail(&self, root: &Path) -> HostResult {
        let r = root.to_path_buf();
        self.record(Call::UnstageJail(r.clone()), |m| {
            if m.mounts.remove(&r) {
                m.mounts.retain(|p| !p.starts_with(&r));
                m.entries.retain(|p, _| !p.starts_with(&r) || *p == r);
            }
            Ok(())
        })
    }
    fn tmpfs_file(&self, dir: &Path, name: &str, _: u64, _: u32) -> HostResult {
        let p = dir.join(name);
        self.record(Call::TmpfsFile { path: p.clone() }, |m| {
            m.entries.entry(p).or_insert(Entry::File(Vec::new()));
            Ok(())
        })
    }
    fn mount_tmpfs(&self, target: &Path, opts: &TmpfsOptions) -> HostResult {
        let t = target.to_path_buf();
        let opts = opts.clone();
        let call = Call::MountTmpfs {
            target: t.clone(),
            size: opts.size.clone(),
            mode: opts.mode.clone(),
        };
        self.record(call, |m| {
            if m.entries.get(&t) != Some(&Entry::Dir) {
                return Err(HostError::new(
                    "mount tmpfs on",
                    &t,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            m.mounts.insert(t.clone());
            m.tmpfs.insert(t, opts.clone());
            Ok(())
        })
    }
    fn unmount(&self, target: &Path) -> HostResult {
        let t = target.to_path_buf();
        self.record(Call::Unmount(t.clone()), |m| {
            m.mounts.remove(&t);
            m.tmpfs.remove(&t);
            Ok(())
        })
    }
}
