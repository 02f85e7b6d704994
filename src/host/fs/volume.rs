//! Data volumes: ext4 images made with e2fsprogs' `mkfs.ext4`.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where Debian and most distributions install it.
const MKFS_EXT4: [&str; 2] = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"];

/// The installed `mkfs.ext4`, if any.
pub fn mkfs_ext4_binary() -> Option<PathBuf> {
    MKFS_EXT4
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}

/// The arguments that make the image behind `target` an ext4 filesystem
/// labelled `data` whose root directory belongs to `uid:gid`.
pub fn mkfs_args(target: &str, uid: u32, gid: u32) -> Vec<String> {
    vec![
        "-F".into(),
        "-q".into(),
        "-L".into(),
        "data".into(),
        "-E".into(),
        format!("root_owner={uid}:{gid},lazy_itable_init=1,lazy_journal_init=1"),
        target.into(),
    ]
}

/// Formats the open file `f` (reached as `/proc/<this pid>/fd/<n>`, so no
/// path the tenant could swap is named), with no environment; its output
/// is returned in the error when it fails.
pub fn mkfs_ext4(f: &std::fs::File, uid: u32, gid: u32) -> io::Result<()> {
    let bin = mkfs_ext4_binary()
        .ok_or_else(|| io::Error::other("mkfs.ext4 is not installed (apt install e2fsprogs)"))?;
    let target = format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd());
    let out = std::process::Command::new(&bin)
        .args(mkfs_args(&target, uid, gid))
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!(
        "{} failed ({}): {}",
        bin.display(),
        out.status,
        said.trim().chars().take(500).collect::<String>()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_is_ext4_labelled_data_with_the_tenant_root() {
        let a = mkfs_args("/proc/1/fd/3", 100000, 100001);
        assert_eq!(a.last().map(String::as_str), Some("/proc/1/fd/3"));
        assert!(a.contains(
            &"root_owner=100000:100001,lazy_itable_init=1,lazy_journal_init=1".to_string()
        ));
        assert!(a.windows(2).any(|w| w == ["-L", "data"]));
    }
}
