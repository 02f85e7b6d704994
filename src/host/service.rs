//! What the long-running agent needs of the host besides its
//! capabilities: monotonic time and timers, a file's change stamp,
//! randomness for jitter, the wall clock for its log, and who it is (pid
//! and hostname) for its claim of a node id.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// A point in monotonic time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(tokio::time::Instant);

impl Moment {
    pub fn now() -> Self {
        Moment(tokio::time::Instant::now())
    }

    pub fn elapsed(self) -> Duration {
        self.0.elapsed()
    }
}

impl std::ops::Add<Duration> for Moment {
    type Output = Moment;
    fn add(self, d: Duration) -> Moment {
        Moment(self.0 + d)
    }
}

pub async fn sleep(d: Duration) {
    tokio::time::sleep(d).await
}

pub async fn sleep_until(m: Moment) {
    tokio::time::sleep_until(m.0).await
}

/// `f`'s output, unless `d` passes first.
pub async fn timeout<F: Future>(d: Duration, f: F) -> Option<F::Output> {
    tokio::time::timeout(d, f).await.ok()
}

/// Ticks every period, the first at once.
pub struct Ticker(tokio::time::Interval);

impl Ticker {
    pub fn every(d: Duration) -> Self {
        Ticker(tokio::time::interval(d))
    }

    pub async fn tick(&mut self) {
        self.0.tick().await;
    }
}

/// What tells a file changed: inode, mtime (s, ns) and size; `None` when
/// it is not there.
pub fn file_stamp(path: &Path) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// A random number in [0, 1) from the kernel, for jitter (0.5 if the
/// kernel has none to give).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { nix::libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The wall clock, for logs and status: `2026-12-02T01:56:02.915Z`.
pub fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// This process as its claim names it: `pid 1711 on host-a`.
pub fn process_name() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("pid {} on {host}", std::process::id())
}

/// Blocks this thread for `d` (a command's own polling loop).
pub fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// How many threads this process can run at once (its CPU affinity), for
/// pure work split in chunks (planning a big node).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
