//! `RecordingHost`: a `Host` that records every call instead of touching the
//! machine, for tests of the apply logic (ordering, concurrency, failures,
//! "a no-op reconcile makes zero calls"). It can be told to fail calls on a
//! path and to take time per call, and it measures how many calls ran at
//! once.

use super::host::{Host, HostError, HostResult, TmpfsOptions};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct RecordingHost {
    calls: Mutex<Vec<String>>,
    /// Calls whose text contains one of these fail with EIO.
    fail_on: Vec<String>,
    /// How long each call takes.
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl RecordingHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls whose text contains `needle` fail with EIO.
    pub fn failing(mut self, needle: &str) -> Self {
        self.fail_on.push(needle.to_string());
        self
    }

    /// Each call takes `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls lock").clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn record(&self, call: String, path: &Path) -> HostResult {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let fail = self.fail_on.iter().any(|f| call.contains(f.as_str()));
        self.calls.lock().expect("calls lock").push(call);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if fail {
            return Err(HostError::new(
                "act on",
                path,
                std::io::Error::from_raw_os_error(nix::libc::EIO),
            ));
        }
        Ok(())
    }
}

impl Host for RecordingHost {
    fn ensure_dir(&self, base: &Path, rel: &Path, mode: u32, uid: u32, gid: u32) -> HostResult {
        let p = base.join(rel);
        self.record(
            format!("ensure_dir {} {mode:o} {uid}:{gid}", p.display()),
            &p,
        )
    }
    fn remove_tree(&self, path: &Path) -> HostResult {
        self.record(format!("remove_tree {}", path.display()), path)
    }
    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> HostResult {
        self.record(
            format!(
                "write_file {} {mode:o} {} bytes",
                path.display(),
                data.len()
            ),
            path,
        )
    }
    fn rename(&self, from: &Path, to: &Path) -> HostResult {
        self.record(format!("rename {} {}", from.display(), to.display()), from)
    }
    fn cgroup_create(&self, root: &Path, rel: &Path, controllers: &[&str]) -> HostResult {
        let p = root.join(rel);
        self.record(
            format!("cgroup_create {} +{}", p.display(), controllers.join(" +")),
            &p,
        )
    }
    fn cgroup_write(&self, dir: &Path, file: &str, value: &str) -> HostResult {
        self.record(
            format!("cgroup_write {}/{file} {value}", dir.display()),
            dir,
        )
    }
    fn cgroup_remove(&self, dir: &Path) -> HostResult {
        self.record(format!("cgroup_remove {}", dir.display()), dir)
    }
    fn mount_tmpfs(&self, target: &Path, opts: &TmpfsOptions) -> HostResult {
        self.record(
            format!(
                "mount_tmpfs {} size={} mode={}",
                target.display(),
                opts.size,
                opts.mode
            ),
            target,
        )
    }
    fn unmount(&self, target: &Path) -> HostResult {
        self.record(format!("unmount {}", target.display()), target)
    }
    fn append_line(&self, path: &Path, line: &[u8]) -> HostResult {
        self.record(
            format!("append_line {} {} bytes", path.display(), line.len()),
            path,
        )
    }
    fn set_append_only(&self, path: &Path, on: bool) -> HostResult<bool> {
        self.record(format!("set_append_only {} {on}", path.display()), path)
            .map(|()| true)
    }
}
