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
    let target = format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd());
    run_e2fs(
        mkfs_ext4_binary(),
        "mkfs.ext4",
        &mkfs_args(&target, uid, gid),
    )
}

/// The installed `debugfs` (e2fsprogs), if any.
pub fn debugfs_binary() -> Option<PathBuf> {
    ["/usr/sbin/debugfs", "/sbin/debugfs"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}

/// The arguments that make `target` a read-only secrets image: ext4 with
/// 1 KiB blocks, no journal (it is never written), no reserved blocks,
/// `inodes` inodes, labelled `label`, its root owned by `uid:gid` and
/// filled from the directory `source`.
pub fn secrets_mkfs_args(
    target: &str,
    source: &str,
    uid: u32,
    gid: u32,
    inodes: u64,
    label: &str,
) -> Vec<String> {
    vec![
        "-F".into(),
        "-q".into(),
        "-t".into(),
        "ext4".into(),
        "-b".into(),
        "1024".into(),
        "-m".into(),
        "0".into(),
        "-N".into(),
        inodes.to_string(),
        "-O".into(),
        "^has_journal,^resize_inode".into(),
        "-L".into(),
        label.into(),
        "-E".into(),
        format!("root_owner={uid}:{gid}"),
        "-d".into(),
        source.into(),
        target.into(),
    ]
}

/// Runs an e2fsprogs tool with no environment and no input; its output is
/// returned in the error when it fails.
pub fn run_e2fs(bin: Option<PathBuf>, name: &str, args: &[String]) -> io::Result<()> {
    let bin = bin.ok_or_else(|| {
        io::Error::other(format!("{name} is not installed (apt install e2fsprogs)"))
    })?;
    let out = std::process::Command::new(&bin)
        .args(args)
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
