//! The log pump: the one process that writes a VM's logs and metrics
//! (`state/logs.rs` says why one is needed). A launch first rotates the
//! files of the run before (`prepare`), then starts the pump (`start`)
//! holding only its fds — the read end of Firecracker's stdout/stderr
//! pipe, the two FIFOs bound into the jail as `fc.log` and `fc.metrics`,
//! the three files it writes and the run's lock — and Firecracker gets
//! the pipe's write end. The pump (`run`, as `mvm __log-pump`) drops to
//! nobody at once, bounds every file at `max_bytes`, and exits when the
//! pipe closes: when Firecracker (and the jailer before it) is gone.
//!
//! What a tenant can do to it: write to its FIFOs as fast as it likes —
//! Firecracker opened them non-blocking, so when the pump lags
//! Firecracker drops lines (and counts them in `logger.missed_log_count`),
//! it never blocks, and no file grows past its bound. What the pump
//! cannot do, whatever it reads: open a path, or write anything but its
//! own three files.

use crate::host::fs::beneath::{self, Tree, check_own_file};
use crate::security::jailer::VmLogs;
use crate::state::logs::{self, RunMetrics};
use nix::fcntl::{FcntlArg, FlockArg, OFlag, fcntl, openat};
use nix::sys::stat::{Mode, SFlag, fstat};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fds the pump gets, in this order from 3.
const FDS: usize = 7;

/// How long a launch waits for the previous run's pump to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn logs_dir(tree: &Tree, logs: &VmLogs) -> io::Result<OwnedFd> {
    tree.dir(tree.rel(&logs.dir)?)
}

fn open_in(dir: &OwnedFd, name: &str, flags: OFlag, mode: u32, path: &Path) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(|e| io::Error::other(format!("{}: {}", path.join(name).display(), e.desc())))
}

/// Opens the run lock and takes it, waiting up to `wait` for a pump that
/// still holds it.
fn take_lock(dir: &OwnedFd, path: &Path, wait: Duration) -> io::Result<nix::fcntl::Flock<OwnedFd>> {
    let fd = open_in(
        dir,
        logs::PUMP_LOCK,
        OFlag::O_RDWR | OFlag::O_CREAT,
        0o600,
        path,
    )?;
    check_own_file(&fd, &path.join(logs::PUMP_LOCK))?;
    let deadline = Instant::now() + wait;
    let mut fd = fd;
    loop {
        match nix::fcntl::Flock::lock(fd, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                fd = back;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, e)) => {
                return Err(io::Error::other(format!(
                    "{}: the previous run's log pump still holds it ({}); it exits once that run's Firecracker is gone",
                    path.join(logs::PUMP_LOCK).display(),
                    e.desc()
                )));
            }
        }
    }
}

/// Rotates the files of the run before (`vm.log` → `vm.log.1` …, the
/// oldest past `previous_runs` removed), makes the new run's files and
/// fresh FIFOs owned by the tenant — after the previous run's pump is
/// done. Anything in a file's place that is not a regular file of one
/// link (a planted link, a hard link to a file elsewhere) is refused
/// before anything moves: nothing outside the logs dir is ever written.
pub fn prepare(tree: &Tree, logs: &VmLogs) -> io::Result<()> {
    let dir = logs_dir(tree, logs)?;
    let path = &logs.dir;
    let _lock = take_lock(&dir, path, LOCK_WAIT)?;
    // One look at each file: what is refused, and whether the current run
    // ran at all — a launch that never got to run its VM (mvm killed in
    // between, the jail refused) left empty files, which are no run to
    // keep, so a crash loop cannot push the last real run's logs out.
    let mut ran = false;
    for file in logs::RUN_FILES {
        for n in 0..=logs.previous_runs {
            let name = logs::run_file(file, n);
            let full = path.join(&name);
            let Some(st) = beneath::stat_at(&dir, std::ffi::OsStr::new(&name), &full)? else {
                continue;
            };
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG
                || st.st_nlink != 1
            {
                return Err(io::Error::other(format!(
                    "{}: refusing: not a regular file of one link, so not a log mvm wrote; remove it",
                    full.display()
                )));
            }
            ran |= n == 0 && st.st_size > 0;
        }
    }
    for file in logs::RUN_FILES {
        let steps = if ran {
            logs::rotation(file, logs.previous_runs)
        } else {
            vec![(file.to_string(), None)]
        };
        for (from, to) in steps {
            let gone = match &to {
                Some(to) => nix::fcntl::renameat(&dir, from.as_str(), &dir, to.as_str()),
                None => nix::unistd::unlinkat(
                    &dir,
                    from.as_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                ),
            };
            match gone {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "rotate {}: {}",
                        path.join(&from).display(),
                        e.desc()
                    )));
                }
            }
        }
        let f = open_in(
            &dir,
            file,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            0o600,
            path,
        )?;
        check_own_file(&f, &path.join(file))?;
    }
    for fifo in [logs::LOG_FIFO, logs::METRICS_FIFO] {
        match nix::unistd::unlinkat(&dir, fifo, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(io::Error::other(format!(
                    "remove {}: {}",
                    path.join(fifo).display(),
                    e.desc()
                )));
            }
        }
        nix::sys::stat::mknodat(
            &dir,
            fifo,
            SFlag::S_IFIFO,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .map_err(|e| {
            io::Error::other(format!("make {}: {}", path.join(fifo).display(), e.desc()))
        })?;
        nix::unistd::fchownat(
            &dir,
            fifo,
            Some(nix::unistd::Uid::from_raw(logs.uid)),
            Some(nix::unistd::Gid::from_raw(logs.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| {
            io::Error::other(format!("chown {}: {}", path.join(fifo).display(), e.desc()))
        })?;
    }
    // Not fsynced: a crash can lose a rotation's renames, never a record.
    Ok(())
}

/// A started pump: the write end Firecracker's stdout and stderr get
/// (until `release`), and word of its exit (a thread waits for it, so a
/// long-running agent leaves no zombie; a one-shot mvm leaves it to init).
pub struct Pump {
    pub output: Option<OwnedFd>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Pump {
    /// Closes this process's copy of the write end: the pump then ends
    /// when Firecracker's copy closes.
    pub fn release(&mut self) {
        self.output = None;
    }

    /// Waits (up to `wait`) for the pump to exit, after the VM did.
    pub fn finish(&mut self, wait: Duration) {
        self.release();
        let _ = self.done.recv_timeout(wait);
    }
}

fn fifo(dir: &OwnedFd, name: &str, path: &Path) -> io::Result<OwnedFd> {
    // Read-write: the pump never sees an end of file while Firecracker
    // has not opened it yet, and never blocks opening it.
    let fd = open_in(dir, name, OFlag::O_RDWR | OFlag::O_NONBLOCK, 0, path)?;
    let st = fstat(fd.as_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return Err(io::Error::other(format!(
            "{}: refusing: not the FIFO mvm made",
            path.join(name).display()
        )));
    }
    Ok(fd)
}

/// Starts the pump of a run `prepare` made ready: `exe` is mvm itself.
pub fn start(exe: &Path, tree: &Tree, logs: &VmLogs) -> io::Result<Pump> {
    use std::os::unix::process::CommandExt;
    let dir = logs_dir(tree, logs)?;
    let path = &logs.dir;
    let lock = take_lock(&dir, path, Duration::ZERO)?;
    let file = |name: &str, flags: OFlag| -> io::Result<OwnedFd> {
        let fd = open_in(&dir, name, flags, 0, path)?;
        check_own_file(&fd, &path.join(name))?;
        Ok(fd)
    };
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let fds: [OwnedFd; FDS] = [
        read,
        fifo(&dir, logs::LOG_FIFO, path)?,
        fifo(&dir, logs::METRICS_FIFO, path)?,
        file(logs::VM_LOG, OFlag::O_RDWR | OFlag::O_APPEND)?,
        file(logs::FIRECRACKER_LOG, OFlag::O_RDWR | OFlag::O_APPEND)?,
        file(logs::METRICS, OFlag::O_RDWR)?,
        lock.unlock().map_err(|(_, e)| io::Error::from(e))?,
    ];
    // The lock's fd goes to the pump unlocked, and it locks it at once:
    // a flock belongs to the open file, so this is the same lock.
    // Moved above the range the child's fds take, so no dup2 below
    // overwrites a source before it is copied.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(64)).map(owned))
        .collect::<Result<_, _>>()?;
    drop(fds);
    let raw: Vec<RawFd> = high.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(exe);
    cmd.args(["__log-pump", "--max-bytes"])
        .arg(logs.max_bytes.to_string())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (setsid,
    // dup2, close_range, close) on fds this process owns; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(io::Error::from)?;
            for (i, fd) in raw.iter().enumerate() {
                if nix::libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Nothing else: not an fd this process inherited without
            // CLOEXEC (a parent's pipe would be held open by the pump).
            let first = 3 + FDS as nix::libc::c_uint;
            if nix::libc::syscall(nix::libc::SYS_close_range, first, nix::libc::c_uint::MAX, 0) != 0
            {
                for fd in first..4096 {
                    nix::libc::close(fd as RawFd);
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(high);
    let (tell, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = child.wait();
        let _ = tell.send(());
    });
    Ok(Pump {
        output: Some(write),
        done,
    })
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by F_DUPFD_CLOEXEC: open, and owned
    // by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A file the pump writes, never past `max` bytes.
struct Bounded {
    file: std::fs::File,
    len: u64,
    max: u64,
}

impl Bounded {
    fn new(fd: OwnedFd, max: u64) -> Self {
        let file = std::fs::File::from(fd);
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self { file, len, max }
    }

    fn write(&mut self, data: &[u8]) {
        if self.len + data.len() as u64 > self.max {
            let half = self.max / 2;
            let from = self.len.saturating_sub(half);
            let mut tail = vec![0; (self.len - from) as usize];
            let n = self.file.read_at(&mut tail, from).unwrap_or(0);
            tail.truncate(n);
            let kept =
                logs::compacted(&tail, self.len, self.max, &crate::host::service::now_text());
            // O_APPEND: after the truncation every write lands at the end.
            let _ = self.file.set_len(0);
            let _ = self.file.write_all(&kept);
            self.len = kept.len() as u64;
        }
        if self.file.write_all(data).is_ok() {
            self.len += data.len() as u64;
        }
    }
}

/// Gives up root: nobody, no groups, no way back (no_new_privs).
fn drop_privileges() -> io::Result<()> {
    let nobody_g = nix::unistd::Gid::from_raw(65534);
    let nobody_u = nix::unistd::Uid::from_raw(65534);
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(nobody_g, nobody_g, nobody_g)?;
    nix::unistd::setresuid(nobody_u, nobody_u, nobody_u)?;
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The most of one stream read per second. Past it the pump leaves the
/// FIFO full, so Firecracker drops lines (and counts them): a tenant's
/// flood costs the pump — which runs outside the tenant's cgroup — a
/// bounded share of a CPU.
const RATE: usize = 1 << 20;

/// Reads what `fd` has now (non-blocking), at most `limit` bytes, into
/// `buf`: whether it is still open, and how much was read.
fn drain(fd: &OwnedFd, buf: &mut Vec<u8>, limit: usize) -> (bool, usize) {
    let mut chunk = [0u8; 64 << 10];
    let mut read = 0;
    while read < limit {
        let want = (limit - read).min(chunk.len());
        match nix::unistd::read(fd, &mut chunk[..want]) {
            Ok(0) => return (false, read),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                read += n;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return (true, read),
            Err(_) => return (false, read),
        }
    }
    (true, read)
}

/// The pump itself (`mvm __log-pump`): fds 3–9 as `start` placed them.
/// Returns when Firecracker's output closed and the FIFOs are drained.
pub fn run(max_bytes: u64) -> io::Result<()> {
    // SAFETY: `start` placed exactly these fds for this process; nothing
    // else owns them.
    let fds: Vec<OwnedFd> = (3..3 + FDS as RawFd)
        .map(|n| unsafe { OwnedFd::from_raw_fd(n) })
        .collect();
    let mut fds = fds.into_iter();
    let output = fds.next().expect("7 fds");
    let log_fifo = fds.next().expect("7 fds");
    let metrics_fifo = fds.next().expect("7 fds");
    let vm_log = fds.next().expect("7 fds");
    let fc_log = fds.next().expect("7 fds");
    let metrics_file = std::fs::File::from(fds.next().expect("7 fds"));
    let lock = fds.next().expect("7 fds");
    let _lock = nix::fcntl::Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    drop_privileges()?;
    for fd in [&output, &log_fifo, &metrics_fifo] {
        let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    }
    let mut vm = Bounded::new(vm_log, max_bytes);
    let mut fc = Bounded::new(fc_log, max_bytes);
    let mut metrics = RunMetrics::default();
    let (mut out_buf, mut log_buf, mut met_buf) = (Vec::new(), Vec::new(), Vec::new());
    let mut open = true;
    let streams = [&output, &log_fifo, &metrics_fifo];
    let (mut window, mut spent) = (Instant::now(), [0usize; 3]);
    while open {
        if window.elapsed() >= Duration::from_secs(1) {
            (window, spent) = (Instant::now(), [0; 3]);
        }
        // A stream over its budget is not waited on until the next second.
        let mut polled: Vec<nix::poll::PollFd> = streams
            .iter()
            .zip(spent)
            .filter(|(_, n)| *n < RATE)
            .map(|(fd, _)| nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        let left = 1000u128.saturating_sub(window.elapsed().as_millis()).max(1) as u16;
        let wait = if polled.len() < streams.len() {
            left
        } else {
            1000
        };
        match nix::poll::poll(&mut polled, nix::poll::PollTimeout::from(wait)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        drop(polled);
        for (i, buf) in [&mut out_buf, &mut log_buf, &mut met_buf]
            .into_iter()
            .enumerate()
        {
            if spent[i] >= RATE {
                continue;
            }
            let (still, n) = drain(streams[i], buf, RATE - spent[i]);
            spent[i] += n;
            if i == 0 {
                open = still;
            }
        }
        if !open {
            // Firecracker is gone: what it left in its FIFOs, whole.
            drain(&log_fifo, &mut log_buf, 4 << 20);
            drain(&metrics_fifo, &mut met_buf, 4 << 20);
        }
        let flush = !open;
        for line in logs::take_lines(&mut out_buf, flush) {
            let mut stamped = format!("{} ", crate::host::service::now_text()).into_bytes();
            stamped.extend_from_slice(&line);
            vm.write(&stamped);
        }
        for line in logs::take_lines(&mut log_buf, flush) {
            fc.write(&line);
        }
        let lines = logs::take_lines(&mut met_buf, flush);
        if !lines.is_empty() {
            for line in &lines {
                metrics.add_line(line);
            }
            write_metrics(&metrics_file, &metrics);
        }
    }
    Ok(())
}

/// Replaces `metrics.json`'s content.
fn write_metrics(file: &std::fs::File, m: &RunMetrics) {
    crate::host::fs::rewrite_in_place(file, &crate::spec::json::file_text(m));
}
