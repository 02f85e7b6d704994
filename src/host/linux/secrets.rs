//! `Secrets` on the real machine: generations staged on a tenant's
//! secrets tmpfs, by fd from its verified mount, never anywhere else.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::{Gid, Uid, fchown};

use crate::host::fs::beneath;
use crate::host::{HostError, HostResult, Secrets, SecretsStage};
use crate::security::secrets::{
    FILES, IMAGE, LABEL, MANIFEST, MANIFEST_CAP, STAGING_PREFIX, generation_dir,
    parse_generation_dir,
};

use super::LinuxHost;
use super::mounts::{mount_point, mounted_on};

impl Secrets for LinuxHost {
    fn stage_secrets(&self, dir: &Path, stage: &SecretsStage) -> HostResult {
        let top = self.secrets_tmpfs("stage secrets in", dir)?;
        let need = stage.manifest.len() as u64
            + crate::security::secrets::total_bytes(stage.files)
            + stage.image_bytes;
        let vfs = nix::sys::statvfs::fstatvfs(&top)
            .map_err(|e| HostError::new("stage secrets in", dir, e))?;
        let free = vfs.blocks_available() as u64 * vfs.fragment_size() as u64;
        if need > free {
            return Err(HostError::other(
                "stage secrets in",
                dir,
                format!(
                    "the tenant's secrets tmpfs has {free} bytes free and this generation needs {need} (files and drive image); \
                     its size is {} — rotate to free the older generation first",
                    crate::security::secrets::TMPFS_SIZE
                ),
            ));
        }
        let name = generation_dir(stage.generation);
        let tmp = format!("{STAGING_PREFIX}{name}");
        let tmp_path = dir.join(&tmp);
        // Debris of a killed staging of this same generation.
        beneath::remove_at(
            &top,
            OsStr::new(&tmp),
            &tmp_path,
            beneath::mount_of(&top).map_err(|e| HostError::new("stage secrets in", dir, e))?,
        )
        .map_err(|e| HostError::new("remove", &tmp_path, e))?;
        mkdirat(&top, tmp.as_str(), Mode::from_bits_truncate(0o700))
            .map_err(|e| HostError::new("create", &tmp_path, e))?;
        let gen_dir = open_dir(&top, &tmp, &tmp_path)?;
        let files_path = tmp_path.join(FILES);
        mkdirat(&gen_dir, FILES, Mode::from_bits_truncate(0o700))
            .map_err(|e| HostError::new("create", &files_path, e))?;
        let files = open_dir(&gen_dir, FILES, &files_path)?;
        let (uid, gid) = (Uid::from_raw(stage.uid), Gid::from_raw(stage.gid));
        for f in stage.files {
            let path = files_path.join(&f.name);
            let file = create(&files, &f.name, &path)?;
            let mut file = std::fs::File::from(file);
            file.write_all(&f.value)
                .map_err(|e| HostError::new("write", &path, e))?;
            fchown(&file, Some(uid), Some(gid))
                .and_then(|()| fchmod(&file, Mode::from_bits_truncate(0o400)))
                .map_err(|e| HostError::new("set the owner of", &path, e))?;
        }
        fchown(&files, Some(uid), Some(gid))
            .and_then(|()| fchmod(&files, Mode::from_bits_truncate(0o500)))
            .map_err(|e| HostError::new("set the owner of", &files_path, e))?;
        let image_path = tmp_path.join(IMAGE);
        let image = std::fs::File::from(create(&gen_dir, IMAGE, &image_path)?);
        image
            .set_len(stage.image_bytes)
            .map_err(|e| HostError::new("size", &image_path, e))?;
        make_image(&image, &files, stage)
            .map_err(|e| HostError::new("make the drive image", &image_path, e))?;
        // The tenant's Firecracker opens it read-only through its jail.
        fchown(&image, Some(uid), Some(gid))
            .and_then(|()| fchmod(&image, Mode::from_bits_truncate(0o400)))
            .map_err(|e| HostError::new("set the owner of", &image_path, e))?;
        let manifest_path = tmp_path.join(MANIFEST);
        let mut manifest = std::fs::File::from(create(&gen_dir, MANIFEST, &manifest_path)?);
        manifest
            .write_all(&stage.manifest)
            .and_then(|()| fchmod(&manifest, Mode::from_bits_truncate(0o400)).map_err(Into::into))
            .map_err(|e| HostError::new("write", &manifest_path, e))?;
        // Whole, or not there: the rename is the commit.
        renameat2(
            &top,
            tmp.as_str(),
            &top,
            name.as_str(),
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| HostError::new("rename into place", &dir.join(&name), e))
    }

    fn prune_secrets(&self, dir: &Path, below: u64, keep: &[u64]) -> HostResult {
        let top = match self.secrets_tmpfs("remove secrets from", dir) {
            Ok(t) => t,
            // Nothing mounted: nothing staged to remove.
            Err(_) if !self.secrets_mounted(dir) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mount =
            beneath::mount_of(&top).map_err(|e| HostError::new("remove secrets from", dir, e))?;
        for name in beneath::names(&top, dir).map_err(|e| HostError::new("list", dir, e))? {
            let Some(s) = name.to_str() else { continue };
            let stale = match parse_generation_dir(s) {
                Some(n) => n < below && !keep.contains(&n),
                None => s.starts_with(STAGING_PREFIX),
            };
            if stale {
                let path = dir.join(&name);
                beneath::remove_at(&top, &name, &path, mount)
                    .map_err(|e| HostError::new("remove", &path, e))?;
            }
        }
        Ok(())
    }

    fn secrets_manifest(&self, dir: &Path, generation: u64) -> HostResult<Option<Vec<u8>>> {
        if !self.secrets_mounted(dir) {
            return Ok(None);
        }
        let top = self.secrets_tmpfs("read secrets in", dir)?;
        read_manifest(&top, dir, generation)
    }
}

/// Reads `gen-<n>/manifest.json` in an open secrets tmpfs: never through
/// a link, a regular file of one link, capped. `None`: no such generation.
pub(crate) fn read_manifest(
    top: &OwnedFd,
    dir: &Path,
    generation: u64,
) -> HostResult<Option<Vec<u8>>> {
    let name = generation_dir(generation);
    let path = dir.join(&name);
    let gen_dir = match openat(
        top,
        name.as_str(),
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(HostError::new("open", &path, e)),
    };
    let path = path.join(MANIFEST);
    let fd = match openat(
        &gen_dir,
        MANIFEST,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(HostError::new("open", &path, e)),
    };
    beneath::check_own_file(&fd, &path).map_err(|e| HostError::new("read", &path, e))?;
    beneath::read_fd(fd, &path, MANIFEST_CAP)
        .map(Some)
        .map_err(|e| HostError::new("read", &path, e))
}

impl LinuxHost {
    /// The top of the tmpfs mounted on a tenant's `secrets/` dir, proved a
    /// tmpfs: a secret is never written to a disk-backed path.
    fn secrets_tmpfs(&self, action: &'static str, dir: &Path) -> HostResult<OwnedFd> {
        let (tree, rel) = self.locate(action, dir)?;
        let (parent, last) = tree
            .parent(rel)
            .map_err(|e| HostError::new(action, dir, e))?;
        if !mounted_on(&parent, last) {
            return Err(HostError::other(
                action,
                dir,
                "the tenant's secrets tmpfs is not mounted (run `mvm agent reconcile` to create the tenant's resources)",
            ));
        }
        let top = mount_point(&parent, last, dir)?;
        let fs = nix::sys::statfs::fstatfs(&top).map_err(|e| HostError::new(action, dir, e))?;
        if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
            return Err(HostError::other(
                action,
                dir,
                "refusing: what is mounted there is not a tmpfs, and secrets never touch a disk",
            ));
        }
        Ok(top)
    }

    fn secrets_mounted(&self, dir: &Path) -> bool {
        let Ok((tree, rel)) = self.locate("open", dir) else {
            return false;
        };
        tree.parent(rel)
            .is_ok_and(|(parent, last)| mounted_on(&parent, last))
    }
}

fn open_dir(parent: &OwnedFd, name: &str, path: &Path) -> HostResult<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| HostError::new("open", path, e))
}

fn create(dir: &OwnedFd, name: &str, path: &Path) -> HostResult<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| HostError::new("create", path, e))
}

/// Formats the image from the files: `mkfs.ext4 -d` on both reached as
/// `/proc/<pid>/fd/<n>` (no path that could be swapped is named), with no
/// environment, then `lost+found` removed so the guest sees only the
/// secrets.
fn make_image(image: &std::fs::File, files: &OwnedFd, stage: &SecretsStage) -> std::io::Result<()> {
    use crate::host::fs::volume;
    let fd = |n: i32| format!("/proc/{}/fd/{n}", std::process::id());
    let target = fd(image.as_raw_fd());
    let source = fd(files.as_raw_fd());
    let args =
        volume::secrets_mkfs_args(&target, &source, stage.uid, stage.gid, stage.inodes, LABEL);
    volume::run_e2fs(volume::mkfs_ext4_binary(), "mkfs.ext4", &args)?;
    volume::run_e2fs(
        volume::debugfs_binary(),
        "debugfs",
        &["-w".into(), "-R".into(), "rmdir lost+found".into(), target],
    )
}
