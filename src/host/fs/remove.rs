//! Deleting a tree below a directory fd, of any depth, without
//! recursion: scanned first (never crossing a mount, never following a
//! link), then removed bottom-up.

use super::beneath::{MountId, child_dir, error, is_dir, mount_of, names, refuse, stat_at};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::UnlinkatFlags;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Removes `name` in `dir` and everything below it, walking by fd: links
/// are removed, never followed, and nothing on another mount is entered or
/// removed. Mounts are looked for first, so a tree with one in it is
/// refused before anything is deleted. Any depth: a tenant's Firecracker
/// owns its jail tree and may nest it thousands deep, and mvm must always
/// be able to remove it (the walk holds one directory fd at a time, not
/// one per level, and no recursion).
pub fn remove_at(dir: &OwnedFd, name: &OsStr, path: &Path, mount: MountId) -> io::Result<()> {
    let Some(st) = stat_at(dir, name, path)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let child = child_dir(dir, name, path, mount)?;
        walk_below(child.try_clone()?, path, mount, Visit::ScanMounts)?;
        walk_below(child, path, mount, Visit::Delete)?;
        unlink(dir, name, path, UnlinkatFlags::RemoveDir)
    } else {
        unlink(dir, name, path, UnlinkatFlags::NoRemoveDir)
    }
}

fn unlink(dir: &OwnedFd, name: &OsStr, path: &Path, flag: UnlinkatFlags) -> io::Result<()> {
    match nix::unistd::unlinkat(dir, name, flag) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => Err(refuse(
            path,
            "a filesystem is mounted here; unmount it first (mvm never deletes inside a mount)",
        )),
        Err(e) => Err(error(path, e)),
    }
}

/// What `walk_below` does with each entry.
#[derive(Clone, Copy, PartialEq)]
enum Visit {
    /// Fails on anything on another mount (a directory or a bind-mounted
    /// file); changes nothing.
    ScanMounts,
    /// Removes every entry, directories after what is in them.
    Delete,
}

/// A directory being walked: its name in its parent, its identity (to
/// check that `..` leads back to the parent it was entered from), and the
/// names in it not yet visited.
struct Level {
    name: OsString,
    id: (u64, u64),
    pending: Vec<OsString>,
}

fn identity(fd: &OwnedFd, path: &Path) -> io::Result<(u64, u64)> {
    let st = fstat(fd).map_err(|e| error(path, e))?;
    Ok((st.st_dev, st.st_ino))
}

/// Visits everything below the open directory `top` depth-first without
/// recursion: it descends with `child_dir` (no link, no mount) and climbs
/// back through `..`, checked against the directory it came from (a tree
/// moved under the walk is refused, not followed). Memory grows with the
/// depth (a name per level), open fds do not.
fn walk_below(top: OwnedFd, path: &Path, mount: MountId, visit: Visit) -> io::Result<()> {
    let mut cur = top;
    let mut here = path.to_path_buf();
    let mut levels = vec![Level {
        name: OsString::new(),
        id: identity(&cur, &here)?,
        pending: names(&cur, &here)?,
    }];
    // A directory that still has entries after they were all removed is
    // being written to while mvm deletes it; refilled a bounded number of
    // times, then refused.
    let mut refills = 0;
    loop {
        let level = levels.last_mut().expect("the walk has a level");
        if let Some(name) = level.pending.pop() {
            let p = here.join(&name);
            let Some(st) = stat_at(&cur, &name, &p)? else {
                continue;
            };
            if is_dir(&st) {
                let child = child_dir(&cur, &name, &p, mount)?;
                levels.push(Level {
                    id: identity(&child, &p)?,
                    pending: names(&child, &p)?,
                    name,
                });
                cur = child;
                here = p;
            } else if visit == Visit::Delete {
                unlink(&cur, &name, &p, UnlinkatFlags::NoRemoveDir)?;
            } else {
                // A file can be a mount point too (a bind-mounted file).
                match openat(
                    &cur,
                    name.as_os_str(),
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) if mount_of(&fd)? != mount => {
                        return Err(refuse(
                            &p,
                            "a file is mounted here; unmount it first (mvm never deletes inside a mount)",
                        ));
                    }
                    Ok(_) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(error(&p, e)),
                }
            }
            continue;
        }
        if visit == Visit::Delete {
            let left = names(&cur, &here)?;
            if !left.is_empty() {
                refills += 1;
                if refills > 16 {
                    return Err(refuse(
                        &here,
                        "refusing: entries keep appearing while mvm removes them (stop what writes here first)",
                    ));
                }
                level.pending = left;
                continue;
            }
        }
        let done = levels.pop().expect("the walk has a level");
        let Some(parent) = levels.last() else {
            return Ok(());
        };
        let up = openat(
            &cur,
            "..",
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| error(&here, e))?;
        here.pop();
        if identity(&up, &here)? != parent.id {
            return Err(refuse(
                &here,
                "refusing: the tree was moved while mvm walked it",
            ));
        }
        cur = up;
        if visit == Visit::Delete {
            unlink(
                &cur,
                &done.name,
                &here.join(&done.name),
                UnlinkatFlags::RemoveDir,
            )?;
        }
    }
}
