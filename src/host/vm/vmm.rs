//! Firecracker processes: launching one through the jailer, asking its API
//! (HTTP over the jailed Unix socket), and stopping it — only after
//! checking that the pid still is that process (start time, uid), never on
//! the strength of a pid alone.
//!
//! The API socket lives in the jail, which the tenant's Firecracker owns:
//! it can put a link to another tenant's jail where `run/` was. So the
//! socket's directory is opened by fd below the state dir (no link, no
//! mount), the socket itself must be a socket, and whoever answers must be
//! the VM's own process (`SO_PEERCRED`: its pid and uid) — otherwise
//! nothing is sent.

use crate::host::ProcessRef;
use crate::host::fs::beneath::{self, Tree};
use crate::security::jailer::Launch;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the VM detached from mvm (its own session, stdio on /dev/null),
/// so it outlives this process; waits until its API answers.
/// Returns the process and how long it took its API to answer once spawned.
pub fn launch(
    l: &Launch,
    tree: &Tree,
    wait: Duration,
    exe: &Path,
) -> io::Result<(ProcessRef, Duration)> {
    let (program, args) = crate::security::jailer::argv(l);
    let mut pump = match &l.logs {
        Some(logs) => Some(super::pump::start(exe, tree, logs)?),
        None => None,
    };
    let out = |p: &Option<super::pump::Pump>| -> io::Result<Stdio> {
        Ok(match p.as_ref().and_then(|p| p.output.as_ref()) {
            Some(w) => std::fs::File::from(w.try_clone()?).into(),
            None => Stdio::null(),
        })
    };
    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(out(&pump)?)
        .stderr(out(&pump)?);
    let spawned = spawn_detached(&mut cmd);
    // Only Firecracker holds the write end now: the pump ends with it.
    drop(cmd);
    let log = l
        .logs
        .as_ref()
        .map(|g| g.dir.join(crate::state::logs::VM_LOG));
    if let Some(p) = pump.as_mut() {
        p.release();
    }
    let mut child = spawned?;
    let pid = child.id();
    if let Some(procs) = &l.cgroup_procs {
        use std::os::unix::fs::OpenOptionsExt;
        let placed = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(procs)
            .and_then(|mut f| f.write_all(format!("{pid}\n").as_bytes()));
        if let Err(e) = placed {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "cannot place it in its cgroup ({}): {e}",
                procs.display()
            )));
        }
    }
    let start_time = start_time(pid).ok_or_else(|| io::Error::other("the VM exited at once"))?;
    // The jailer execs Firecracker in its own process; without one,
    // Firecracker runs as mvm does.
    let peer = Peer {
        pid,
        uid: if l.jailer.is_some() {
            l.uid
        } else {
            nix::unistd::geteuid().as_raw()
        },
    };
    let api = Api {
        tree,
        sock: &l.api_sock_host,
        peer,
    };
    let spawned_at = Instant::now();
    let waited = wait_for_api(&mut child, &program, &api, wait);
    let api_wait = spawned_at.elapsed();
    if let Err(e) = waited {
        // What it said on its way out is in its log once the pump wrote it.
        if let Some(p) = pump.as_mut() {
            p.finish(Duration::from_secs(2));
        }
        let tail = log.as_deref().map(last_lines).unwrap_or_default();
        return Err(if tail.is_empty() {
            e
        } else {
            io::Error::other(format!("{e}: {tail}"))
        });
    }
    // Tracked by its cgroup too: one the jailer did not place (its
    // cgroup missing) is not left running untracked.
    if !in_cgroup(pid, &l.parent_cgroup) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::other(format!(
            "it was not placed in its cgroup {}",
            l.parent_cgroup
        )));
    }
    // Not waited for: the VM outlives mvm, and init reaps it.
    drop(child);
    Ok((ProcessRef { pid, start_time }, api_wait))
}

/// Opens `p` to append a process's output to (created 0600, never
/// through a link).
pub(super) fn append_to(p: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(p)
}

/// Spawns `cmd` in a session of its own, so the VM outlives mvm.
pub(super) fn spawn_detached(cmd: &mut Command) -> io::Result<std::process::Child> {
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// A VM's API socket below `tree`, and the process that must answer it.
pub(super) struct Api<'a> {
    pub tree: &'a Tree,
    pub sock: &'a Path,
    pub peer: Peer,
}

/// Waits until the just-spawned `child` (`program`) answers its API: an
/// error, naming the last lines of its `log`, if it exits first; killed,
/// and an error, if it does not answer within `wait`.
pub(super) fn wait_for_api(
    child: &mut std::process::Child,
    program: &Path,
    api: &Api,
    wait: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "{} exited ({status}) before its API answered",
                program.display()
            )));
        }
        if api_get(api.tree, api.sock, api.peer, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "its API did not answer within {} s",
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last three lines of the log at `p`, `/`-joined (at most its last
/// 64 KiB is read: a VM's log can be large).
pub(super) fn last_lines(p: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    const MAX: u64 = 64 << 10;
    let mut buf = Vec::new();
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(p)
        .and_then(|mut f| {
            let len = f.metadata()?.len();
            f.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
            f.take(MAX).read_to_end(&mut buf)
        });
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// `/proc/<pid>/stat` field 22.
pub fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    crate::host::probe::procfs::parse_stat(&text).map(|s| s.start_time)
}

/// The real uid of a process.
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The cgroup2 cgroup `pid` is in, relative to the root.
pub fn cgroup_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::/"))
        .map(str::to_string)
}

/// Whether `pid` is in the cgroup `cgroup` (relative to the cgroup2 root).
pub fn in_cgroup(pid: u32, cgroup: &str) -> bool {
    cgroup_of(pid).as_deref() == Some(cgroup)
}

/// Whether `pid` is still the process launched as `r` by `uid`, running
/// (a zombie is not).
pub fn is_same(r: ProcessRef, uid: u32) -> bool {
    is_alive(r.pid) && start_time(r.pid) == Some(r.start_time) && uid_of(r.pid) == Some(uid)
}

/// The process `pid` as a running VM of tenant `id` under `uid`: its
/// command line names `--id <id>` and it runs as `uid`. For a VM whose
/// launch was never recorded (mvm died in between), so it can be stopped
/// rather than a second one started.
pub fn identify(pid: u32, uid: u32, cgroup: &str, id: &str) -> Option<ProcessRef> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let named = crate::host::probe::procfs::id_arg(&cmdline)?;
    let r = ProcessRef {
        pid,
        start_time: start_time(pid)?,
    };
    (named == id && is_same(r, uid) && in_cgroup(pid, cgroup)).then_some(r)
}

/// The running VM of tenant `id` under `uid` in `cgroup`, found by a scan
/// of /proc — for when the plan does not know its pid (mvm died between
/// launching it and recording it).
pub fn find(firecracker: &Path, uid: u32, cgroup: &str, id: &str) -> Option<ProcessRef> {
    let comm = crate::spec::jail::exec_name(firecracker);
    crate::host::probe::procfs::scan(Path::new("/proc"), &comm)
        .ok()?
        .into_iter()
        .filter(|(_, named)| named.as_deref() == Some(id))
        .find_map(|(stat, _)| identify(stat.pid, uid, cgroup, id))
}

/// Stops the VM: `SendCtrlAltDel` through its API, a bounded wait, then
/// SIGKILL — each only while the pid is still that process.
pub fn stop(
    r: ProcessRef,
    uid: u32,
    cgroup: &str,
    tree: &Tree,
    api_sock: &Path,
    grace: Duration,
) -> io::Result<()> {
    // Not this VM any more (or never placed in its cgroup, which a launch
    // does not let happen): nothing of ours to stop.
    if !is_same(r, uid) || !in_cgroup(r.pid, cgroup) {
        return Ok(());
    }
    // Through the socket only if the VM itself answers it; a link to
    // another VM's is refused, and SIGKILL below ends this one anyway.
    let _ = api_put(
        tree,
        api_sock,
        Peer { pid: r.pid, uid },
        "/actions",
        r#"{"action_type": "SendCtrlAltDel"}"#,
        Duration::from_millis(500),
    );
    let deadline = Instant::now() + grace;
    while is_same(r, uid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if is_same(r, uid) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(r.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(io::Error::from)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_same(r, uid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // If it is a child of this process (launched by this run), reap it.
    reap(r.pid);
    if is_same(r, uid) {
        return Err(io::Error::other(format!(
            "process {} did not exit after SIGKILL",
            r.pid
        )));
    }
    Ok(())
}

fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

fn reap(pid: u32) {
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid as i32),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}

/// The process that must be at the other end of a VM's API socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: u32,
    pub uid: u32,
}

/// Connects to the API socket `sock` (below `tree`) of the VM `peer`: its
/// directory opened by fd (a link or mount in the path is refused), the
/// entry a socket (not a link), and the listening end that VM's process.
pub fn connect_api(tree: &Tree, sock: &Path, peer: Peer) -> io::Result<UnixStream> {
    let (dir, name) = socket_dir(tree, sock)?;
    use nix::sys::stat::SFlag;
    match beneath::stat_at(&dir, name, sock)? {
        Some(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK => {}
        Some(_) => {
            return Err(io::Error::other(format!(
                "refusing {}: not a socket (a link or a file is in its place)",
                sock.display()
            )));
        }
        None => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no socket there", sock.display()),
            ));
        }
    }
    // Connected through the verified directory fd: nothing above the
    // socket is resolved by path again.
    use std::os::fd::AsRawFd;
    let via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    let s = UnixStream::connect(&via)?;
    // The socket could still have been swapped for a link between the
    // check and the connect: who answers decides.
    let cred = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    if cred.pid() as u32 != peer.pid || cred.uid() != peer.uid {
        return Err(io::Error::other(format!(
            "refusing {}: it is answered by pid {} (uid {}), not the VM's process {} (uid {})",
            sock.display(),
            cred.pid(),
            cred.uid(),
            peer.pid,
            peer.uid
        )));
    }
    Ok(s)
}

/// The open directory of the API socket `<root>/run/<name>` and its name.
/// The jail root may be the jail's own tmpfs (a mount): it is entered, by
/// fd and without following a link; below it nothing is followed or
/// crossed.
fn socket_dir<'a>(
    tree: &Tree,
    sock: &'a Path,
) -> io::Result<(std::os::fd::OwnedFd, &'a std::ffi::OsStr)> {
    let bad = || {
        io::Error::other(format!(
            "refusing {}: not <jail root>/run/<socket>",
            sock.display()
        ))
    };
    let name = sock.file_name().ok_or_else(bad)?;
    let run = sock.parent().ok_or_else(bad)?;
    let root = run.parent().ok_or_else(bad)?;
    let (parent, root_name) = tree.parent(tree.rel(root)?)?;
    let root_fd = nix::fcntl::openat(
        &parent,
        root_name,
        nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io::Error::other(format!("cannot open the jail root {}: {e}", root.display())))?;
    let mount = beneath::mount_of(&root_fd)?;
    let run_name = run.file_name().ok_or_else(bad)?;
    let dir = beneath::child_dir(&root_fd, run_name, run, mount)?;
    Ok((dir, name))
}

fn request(
    tree: &Tree,
    sock: &Path,
    peer: Peer,
    req: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut s = connect_api(tree, sock, peer)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = position(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len || buf.len() > 1 << 20 {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let body = String::from_utf8_lossy(&buf[end + 4..(end + 4 + len).min(buf.len())])
                    .to_string();
                return Ok((status, body));
            }
        }
    }
    Err(io::Error::other("the API closed the connection"))
}

fn position(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `GET /`: the instance's id and state.
pub fn api_get(
    tree: &Tree,
    sock: &Path,
    peer: Peer,
    timeout: Duration,
) -> io::Result<serde_json::Value> {
    let (status, body) = request(
        tree,
        sock,
        peer,
        "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
        timeout,
    )?;
    if status != 200 {
        return Err(io::Error::other(format!("GET / answered {status}: {body}")));
    }
    serde_json::from_str(&body).map_err(|e| io::Error::other(e.to_string()))
}

/// A `PUT` with a JSON body; its status and body.
pub fn api_put(
    tree: &Tree,
    sock: &Path,
    peer: Peer,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    request(
        tree,
        sock,
        peer,
        &format!(
            "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        timeout,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jailer_gets_cgroup_v2_the_tenant_cgroup_and_never_no_seccomp() {
        let l = Launch {
            jailer: Some("/usr/bin/jailer".into()),
            firecracker: "/usr/bin/firecracker".into(),
            id: "acme".into(),
            uid: 100000,
            gid: 100000,
            chroot_base: "/var/lib/mvm/tenants/acme/jail".into(),
            parent_cgroup: "mvm/acme".into(),
            api_sock: "/run/firecracker.socket".into(),
            config_file: "/vm.json".into(),
            seccomp_filter: Some("/filter.bpf".into()),
            api_sock_host: "/x".into(),
            logs: None,
            cgroup_procs: None,
            max_file_bytes: 1 << 30,
        };
        let a = crate::security::jailer::jailer_args(&l).join(" ");
        assert!(
            a.contains("--cgroup-version 2 --parent-cgroup mvm/acme --"),
            "{a}"
        );
        assert!(a.contains("--uid 100000 --gid 100000"), "{a}");
        assert!(
            a.contains("--resource-limit no-file=2048 --resource-limit fsize=1073741824"),
            "{a}"
        );
        assert!(a.ends_with("--seccomp-filter /filter.bpf"), "{a}");
        assert!(!a.contains("no-seccomp"));
    }
}
