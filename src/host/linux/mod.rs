//! `LinuxHost`: the capability traits of `contract.rs` on the real machine.
//!
//! Every path below the state dir and the cgroup2 tree is reached from the
//! tree's directory fd (`fs/beneath.rs`): a link, a `..` or a mount planted
//! anywhere below the root is refused, never followed or crossed. Files
//! mvm owns must be regular files with one link; reads are non-blocking
//! and capped. Mounts target an fd-verified directory (through its
//! `/proc/self/fd` name), and whether something is mounted is decided by
//! mount ids, never by comparing path strings.

//!
//! One capability per file: `files.rs`, `cgroupfs.rs`, `mounts.rs`,
//! `links.rs`; the processes, builds and nftables delegate to their own
//! implementations (`vm/`, `net/nft.rs`, `metadata_server.rs`), each
//! beside the code it calls.

mod cgroupfs;
mod files;
mod links;
mod mounts;
mod secrets;

pub(crate) use secrets::read_manifest;

use std::io::{self};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::host::fs::beneath::{self, Tree};
use crate::host::{Clock, HostError, HostResult, Identity};

/// The real host. File operations are confined to the state dir.
#[derive(Debug, Clone)]
pub struct LinuxHost {
    pub(super) state: PathBuf,
}

impl LinuxHost {
    /// A host whose file operations stay below `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state: state_dir.to_path_buf(),
        }
    }

    pub(crate) fn tree(&self, action: &'static str) -> HostResult<Tree> {
        Tree::open(&self.state).map_err(|e| HostError::new(action, &self.state, e))
    }

    /// The state tree and `path` relative to it.
    fn locate<'a>(&self, action: &'static str, path: &'a Path) -> HostResult<(Tree, &'a Path)> {
        let tree = self.tree(action)?;
        let rel = tree
            .rel(path)
            .map_err(|e| HostError::new(action, path, e))?;
        if rel.as_os_str().is_empty() {
            return Err(HostError::other(
                action,
                path,
                "refusing: that is the state dir itself",
            ));
        }
        Ok((tree, rel))
    }

    /// Opens a file mvm owns for reading: non-blocking (a FIFO cannot
    /// hang mvm), regular, one link. `None` when it does not exist.
    fn open_own(&self, path: &Path) -> HostResult<Option<(OwnedFd, u64)>> {
        let (tree, rel) = self.locate("read", path)?;
        let fd = match tree.open_at(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(HostError::new("open", path, e)),
        };
        let st = beneath::check_own_file(&fd, path).map_err(|e| HostError::new("read", path, e))?;
        Ok(Some((fd, st.st_size as u64)))
    }
}

impl Identity for LinuxHost {
    fn hostname(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
    fn random_id(&self) -> HostResult<[u8; 16]> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        let urandom = Path::new("/dev/urandom");
        std::fs::File::open(urandom)
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map(|()| bytes)
            .map_err(|e| HostError::new("read", urandom, e))
    }
}

impl Clock for LinuxHost {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

impl crate::host::Host {
    /// The real machine; file operations stay below `state_dir`.
    pub fn linux(state_dir: &Path) -> Self {
        Self::from_impl(std::sync::Arc::new(LinuxHost::new(state_dir)))
    }
}
