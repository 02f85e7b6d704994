//! `Files` on the recording host: directories and files in the model.

use super::{Call, Entry, RecordingHost};
use crate::host::Files;
use crate::host::{HostError, HostResult};
use std::path::{Path, PathBuf};

impl Files for RecordingHost {
    fn ensure_dir(&self, base: &Path, rel: &Path, mode: u32, uid: u32, gid: u32) -> HostResult {
        let path = base.join(rel);
        let call = Call::EnsureDir {
            path: path.clone(),
            mode,
            uid,
            gid,
        };
        self.record(call, |m| {
            if let Some(Entry::File(_)) = m.entries.get(&path) {
                return Err(HostError::other("create", &path, "a file is in the way"));
            }
            for a in path.ancestors().skip(1) {
                if a.as_os_str().is_empty() || m.entries.contains_key(a) {
                    break;
                }
                m.dir_meta.insert(a.to_path_buf(), (mode, 0, 0));
            }
            m.mkdir_all(&path);
            m.dir_meta.insert(path.clone(), (mode, uid, gid));
            Ok(())
        })
    }
    fn remove_tree(&self, path: &Path) -> HostResult {
        let p = path.to_path_buf();
        self.record(Call::RemoveTree(p.clone()), |m| {
            if let Some(mp) = m.mounts.iter().find(|mp| mp.starts_with(&p)) {
                return Err(HostError::other(
                    "remove",
                    &p,
                    format!("{} is still mounted; unmount it first", mp.display()),
                ));
            }
            m.remove_under(&p);
            Ok(())
        })
    }
    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> HostResult {
        let p = path.to_path_buf();
        let call = Call::WriteFile {
            path: p.clone(),
            mode,
            len: data.len(),
        };
        self.record(call, |m| {
            if !p
                .parent()
                .is_some_and(|d| m.entries.get(d) == Some(&Entry::Dir))
            {
                return Err(HostError::new(
                    "write",
                    &p,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            m.entries.insert(p.clone(), Entry::File(data.to_vec()));
            Ok(())
        })
    }
    fn rename(&self, from: &Path, to: &Path) -> HostResult {
        let (f, t) = (from.to_path_buf(), to.to_path_buf());
        let call = Call::Rename {
            from: f.clone(),
            to: t.clone(),
        };
        self.record(call, |m| match m.entries.remove(&f) {
            Some(e) => {
                // A directory moves with everything in it, as rename(2) does.
                let inside: Vec<PathBuf> = m
                    .entries
                    .keys()
                    .filter(|p| p.starts_with(&f))
                    .cloned()
                    .collect();
                for p in inside {
                    let e = m.entries.remove(&p).expect("listed");
                    let rel = p.strip_prefix(&f).expect("below").to_path_buf();
                    m.entries.insert(t.join(rel), e);
                }
                m.entries.insert(t, e);
                Ok(())
            }
            None => Err(HostError::new(
                "rename",
                &f,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        })
    }
    fn append_line(&self, path: &Path, line: &[u8]) -> HostResult {
        let p = path.to_path_buf();
        let call = Call::AppendLine {
            path: p.clone(),
            len: line.len(),
        };
        self.record(call, |m| {
            if !p
                .parent()
                .is_some_and(|d| m.entries.get(d) == Some(&Entry::Dir))
            {
                return Err(HostError::new(
                    "open",
                    &p,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            match m
                .entries
                .entry(p.clone())
                .or_insert(Entry::File(Vec::new()))
            {
                Entry::File(b) => {
                    b.extend_from_slice(line);
                    Ok(())
                }
                Entry::Dir => Err(HostError::other("append to", &p, "is a directory")),
            }
        })
    }
    fn set_append_only(&self, path: &Path, on: bool) -> HostResult<bool> {
        let call = Call::SetAppendOnly {
            path: path.to_path_buf(),
            on,
        };
        self.record(call, |_| Ok(true))
    }
    fn ensure_volume(&self, path: &Path, size: u64, _: u32, _: u32) -> HostResult {
        let call = Call::EnsureVolume {
            path: path.to_path_buf(),
            size,
        };
        let p = path.to_path_buf();
        self.record(call, |m| {
            m.entries.entry(p).or_insert(Entry::File(Vec::new()));
            Ok(())
        })
    }
    fn read(&self, path: &Path, cap: u64) -> HostResult<Option<Vec<u8>>> {
        match self.model().entries.get(path) {
            None => Ok(None),
            Some(Entry::Dir) => Err(HostError::other("read", path, "not a regular file")),
            Some(Entry::File(b)) if b.len() as u64 > cap => Err(HostError::other(
                "read",
                path,
                format!("larger than {cap} bytes"),
            )),
            Some(Entry::File(b)) => Ok(Some(b.clone())),
        }
    }
    fn read_tail(&self, path: &Path, max: u64) -> HostResult<Option<Vec<u8>>> {
        match self.model().entries.get(path) {
            None => Ok(None),
            Some(Entry::Dir) => Err(HostError::other("read", path, "not a regular file")),
            Some(Entry::File(b)) => {
                let start = b.len().saturating_sub(max as usize);
                Ok(Some(b[start..].to_vec()))
            }
        }
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.model().entries.get(path) == Some(&Entry::Dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.model().entries.contains_key(path)
    }
    fn list(&self, dir: &Path) -> HostResult<Vec<String>> {
        Ok(self
            .model()
            .entries
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }
}
