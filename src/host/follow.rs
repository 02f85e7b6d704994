//! Following log files as `tail -F` does, for `mvm tenant logs --follow`:
//! each file polled five times a second through the state tree (never a
//! link, never a mount), what was appended handed over. A file replaced
//! (a new run's, the old one rotated away) is read from its start; one
//! that shrank (compacted at its bound) is read on from its new end.

use crate::host::fs::beneath::{Tree, check_own_file};
use crate::host::{HostError, HostResult};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a file was read up to: its inode and the offset.
#[derive(Clone, Copy)]
struct Mark {
    ino: u64,
    at: u64,
}

fn look(tree: &Tree, path: &Path) -> HostResult<Option<(std::fs::File, u64, u64)>> {
    let rel = tree
        .rel(path)
        .map_err(|e| HostError::new("follow", path, e))?;
    match tree.open_at(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()) {
        Ok(fd) => {
            let st = check_own_file(&fd, path).map_err(|e| HostError::new("follow", path, e))?;
            Ok(Some((fd.into(), st.st_ino, st.st_size.max(0) as u64)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HostError::new("follow", path, e)),
    }
}

/// Follows `paths` (below the state dir `state`) from their current ends;
/// `out(i, bytes)` gets what was appended to `paths[i]`. Returns only on
/// an error: the caller is stopped by a signal.
pub fn follow(state: &Path, paths: &[PathBuf], out: &mut dyn FnMut(usize, &[u8])) -> HostResult {
    let tree = Tree::open(state).map_err(|e| HostError::new("follow", state, e))?;
    let mut marks: Vec<Option<Mark>> = Vec::with_capacity(paths.len());
    for p in paths {
        marks.push(look(&tree, p)?.map(|(_, ino, len)| Mark { ino, at: len }));
    }
    let mut buf = vec![0u8; 256 << 10];
    loop {
        for (i, p) in paths.iter().enumerate() {
            let Some((file, ino, len)) = look(&tree, p)? else {
                continue;
            };
            let mark = match marks[i] {
                Some(m) if m.ino == ino && len >= m.at => m,
                Some(m) if m.ino == ino => Mark { ino, at: len },
                _ => Mark { ino, at: 0 },
            };
            let mut at = mark.at;
            while at < len {
                let n = file
                    .read_at(&mut buf, at)
                    .map_err(|e| HostError::new("read", p, e))?;
                if n == 0 {
                    break;
                }
                out(i, &buf[..n]);
                at += n as u64;
            }
            marks[i] = Some(Mark { ino, at });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
