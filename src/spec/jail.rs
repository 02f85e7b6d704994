//! Where the jailer puts a tenant's chroot, and the limits that layout must
//! respect.
//!
//! The jailer builds `<chroot-base>/<exec name>/<id>/root` and Firecracker
//! binds its API socket at `/run/firecracker.socket` inside it, so the host
//! path of that socket is `<state>/tenants/<id>/jail/<exec>/<id>/root/run/
//! firecracker.socket`. A Unix socket path must fit `sun_path` (108 bytes
//! with the NUL), which bounds the state dir and the id together.

use super::types::{TENANT_ID_MAX, TenantId};
use std::path::{Path, PathBuf};

/// `sun_path` is 108 bytes including the terminating NUL.
pub const SUN_PATH_MAX: usize = 107;

/// The API socket path inside the jail.
pub const API_SOCKET_IN_JAIL: &str = "run/firecracker.socket";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailLayout {
    /// `--chroot-base-dir`: `<state>/tenants/<id>/jail`.
    pub chroot_base: PathBuf,
    /// `<chroot_base>/<exec>/<id>/root`: Firecracker's `/`.
    pub root: PathBuf,
    /// Host path of the API socket.
    pub api_socket: PathBuf,
}

impl JailLayout {
    pub fn new(state_dir: &Path, firecracker: &Path, id: &TenantId) -> Self {
        Self::for_id(state_dir, firecracker, id.as_str())
    }

    /// The layout of the longest possible tenant id, to check a state dir.
    pub fn longest(state_dir: &Path, firecracker: &Path) -> Self {
        Self::for_id(state_dir, firecracker, &"x".repeat(TENANT_ID_MAX))
    }

    fn for_id(state_dir: &Path, firecracker: &Path, id: &str) -> Self {
        let exec = exec_name(firecracker);
        let chroot_base = chroot_base(state_dir, id);
        let root = chroot_base.join(exec).join(id).join("root");
        let api_socket = root.join(API_SOCKET_IN_JAIL);
        Self {
            chroot_base,
            root,
            api_socket,
        }
    }

    pub fn check_socket_len(&self) -> Result<(), String> {
        let len = self.api_socket.as_os_str().len();
        if len > SUN_PATH_MAX {
            return Err(format!(
                "the jailed API socket {} would be {len} bytes; Unix socket paths hold at most {SUN_PATH_MAX}",
                self.api_socket.display()
            ));
        }
        Ok(())
    }
}

/// A tenant's `--chroot-base-dir`: `<state>/tenants/<id>/jail`
/// (`StateLayout::jail`, which node.toml's validation needs here too).
pub fn chroot_base(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("tenants").join(id).join("jail")
}

/// The directory name the jailer uses for an exec file: its basename.
pub fn exec_name(firecracker: &Path) -> String {
    firecracker
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "firecracker".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_fits_sun_path() {
        let l = JailLayout::longest(Path::new("/var/lib/mvm"), Path::new("/usr/bin/firecracker"));
        assert_eq!(l.api_socket.as_os_str().len(), 67 + 2 * TENANT_ID_MAX);
        assert!(l.check_socket_len().is_ok());
    }

    #[test]
    fn long_state_dir_is_refused() {
        let dir = format!("/{}", "d".repeat(40));
        let l = JailLayout::longest(Path::new(&dir), Path::new("/usr/bin/firecracker"));
        assert!(l.check_socket_len().unwrap_err().contains("at most 107"));
    }
}
