//! `mvm metadata serve`: the metadata service's listener. Each accepted
//! connection is identified by the kernel — the socket's packet mark (the
//! bridge marks every frame of a tap with its tenant's uid;
//! `net.ipv4.tcp_fwmark_accept=1` gives the accepted socket that mark),
//! cross-checked with the peer address the L2 guard pinned to that tap —
//! and answered by `security::metadata::handle`, over hyper's HTTP/1.1 (one
//! request per connection). Replies leave with IP TTL 1; heads are capped,
//! bodies refused; each peer is rate-limited before its request is
//! read, and capped in connections and log lines. An accept that fails
//! (out of fds, say) is waited out, never fatal. Tenants are read
//! from the state dir (records, and the applied desired state for who has
//! `metadata: true`), so a reconcile's changes are seen without a restart.

use crate::security::metadata::{self, MetadataRequest, RateLimit, Response, Tenant};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest request head accepted (request line and headers).
pub const HEAD_CAP: usize = 8 * 1024;
/// Connections one peer may hold open at once; past it a new one is
/// closed at once, unread.
pub const PEER_CONNECTIONS: usize = 16;
/// Connections the service holds open at most (fewer where its fd limit
/// is low: it keeps 64 fds spare).
pub const TOTAL_CONNECTIONS: usize = 1024;
/// Log lines one peer may cause per [`LOG_WINDOW`].
pub const PEER_LOG_LINES: u32 = 20;
pub const LOG_WINDOW: Duration = Duration::from_secs(10);
/// The log's default size cap.
pub const LOG_MAX_BYTES: u64 = 64 << 20;
/// Where the service listens and reads its tenants, and how fast each
/// tenant may ask.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub limit: RateLimit,
    /// The most bytes stderr (the log) may hold.
    pub log_max_bytes: u64,
}

/// Who is asking, before anything is read: the socket's mark and the
/// peer address (together a tenant's tap and its pinned address).
type PeerKey = (u32, IpAddr);

/// The request as the pure handler sees it, or why it is refused (400):
/// a header repeated (which copy would count?) or not UTF-8. Header names
/// are lowercase (hyper's); the path keeps its query, so a query makes it
/// an unknown path.
pub fn to_request<B>(req: &hyper::Request<B>) -> Result<MetadataRequest, &'static str> {
    let mut headers = BTreeMap::new();
    for name in req.headers().keys() {
        let mut values = req.headers().get_all(name).iter();
        let (Some(v), None) = (values.next(), values.next()) else {
            return Err("a header is repeated\n");
        };
        let v = v.to_str().map_err(|_| "a header is not text\n")?;
        headers.insert(name.as_str().to_string(), v.trim().to_string());
    }
    Ok(MetadataRequest {
        method: req.method().as_str().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        headers,
    })
}

fn reply(r: Response) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    hyper::Response::builder()
        .status(r.status)
        .header("content-type", r.content_type)
        .body(http_body_util::Full::new(hyper::body::Bytes::from(r.body)))
        .expect("a status and a content type from this module are valid")
}

fn plain(status: u16, body: &str) -> Response {
    Response {
        status,
        content_type: "text/plain",
        body: body.into(),
    }
}

/// The tenants that may use the service, by mark (= uid).
fn tenants(state: &std::path::Path) -> HashMap<u32, Tenant> {
    let layout = crate::state::StateLayout::new(state);
    let node_id = crate::host::fs::beneath::read_own_file(&layout.node_id(), 4096)
        .ok()
        .flatten()
        .and_then(|b| crate::state::parse_node_id(&b).ok())
        .unwrap_or_default();
    let members: Vec<String> = std::fs::read(layout.applied_desired())
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("tenants").cloned())
        .and_then(|t| t.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.get("metadata").and_then(serde_json::Value::as_bool) == Some(true))
        .filter_map(|t| {
            t.get("tenant_id")
                .and_then(|i| i.as_str())
                .map(str::to_string)
        })
        .collect();
    let mut out = HashMap::new();
    for id in members {
        let Ok(tid) = crate::spec::types::TenantId::parse(&id) else {
            continue;
        };
        let Ok(Some(rec)) = crate::host::probe::read_record(&layout.record(&tid), &tid) else {
            continue;
        };
        let (flake_ref, lock) = rec
            .vm
            .as_ref()
            .map(|v| (v.flake_ref.clone(), v.lock.clone()))
            .unwrap_or_default();
        out.insert(
            rec.uid,
            Tenant {
                id,
                node_id: node_id.clone(),
                ip: rec.ip,
                mac: rec.mac.to_string(),
                flake_ref,
                lock,
            },
        );
    }
    out
}

struct State {
    config: Config,
    key: [u8; 32],
    /// Tenants by mark, re-read at most once a second.
    cache: Mutex<(Instant, HashMap<u32, Tenant>)>,
    /// Token buckets by peer: (tokens, last refill, refusing now).
    buckets: Mutex<HashMap<PeerKey, (f64, Instant, bool)>>,
    nonce: std::sync::atomic::AtomicU64,
    /// Open connections by peer, and in all.
    open: Mutex<(HashMap<PeerKey, usize>, usize)>,
    total_cap: usize,
    log: Log,
}

/// One open connection, counted until dropped.
struct Held {
    state: Arc<State>,
    key: PeerKey,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut o = self.state.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = o.0.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                o.0.remove(&self.key);
            }
        }
        o.1 = o.1.saturating_sub(1);
    }
}

/// The service's log (its stderr): at most [`PEER_LOG_LINES`] lines per
/// peer per [`LOG_WINDOW`] (then one line saying the rest are dropped),
/// and never more than `max_bytes` on disk — past it the file is emptied
/// and goes on with a line saying so.
struct Log {
    max_bytes: u64,
    peers: Mutex<HashMap<PeerKey, (Instant, u32)>>,
}

impl Log {
    fn write(&self, key: PeerKey, line: &str) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if peers.len() > 4096 {
            peers.retain(|_, (start, _)| now.duration_since(*start) < LOG_WINDOW);
        }
        let (start, count) = peers.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= LOG_WINDOW {
            *start = now;
            *count = 0;
        }
        *count += 1;
        let stamp = jiff::Timestamp::now();
        let text = match (*count).cmp(&(PEER_LOG_LINES + 1)) {
            std::cmp::Ordering::Less => format!("{stamp} {line}\n"),
            std::cmp::Ordering::Equal => format!(
                "{stamp} {} mark={:#x}: more than {PEER_LOG_LINES} lines in {} s; the rest of this window is not logged\n",
                key.1,
                key.0,
                LOG_WINDOW.as_secs()
            ),
            std::cmp::Ordering::Greater => return,
        };
        // Still under the lock: one writer sizes and truncates at a time.
        self.append(&text);
    }

    fn append(&self, text: &str) {
        use std::io::Write;
        let err = std::io::stderr();
        let size = nix::sys::stat::fstat(err.as_fd()).map_or(0, |st| st.st_size.max(0) as u64);
        let mut out = err.lock();
        if size + text.len() as u64 > self.max_bytes {
            // Emptied, and written from the start again (a file opened
            // without O_APPEND keeps its offset otherwise).
            let _ = nix::unistd::ftruncate(out.as_fd(), 0);
            let _ = nix::unistd::lseek(out.as_fd(), 0, nix::unistd::Whence::SeekSet);
            let _ = writeln!(
                out,
                "{} the log reached its cap of {} bytes and was emptied; earlier lines are gone",
                jiff::Timestamp::now(),
                self.max_bytes
            );
        }
        let _ = out.write_all(text.as_bytes());
    }
}

impl State {
    fn tenant(&self, mark: u32, peer: IpAddr) -> Option<Tenant> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.0.elapsed() > Duration::from_secs(1) {
            *c = (Instant::now(), tenants(&self.config.state_dir));
        }
        let t = c.1.get(&mark)?;
        (IpAddr::V4(t.ip) == peer).then(|| t.clone())
    }

    /// `Ok` when `peer` may make one more request; else `Err(first)`,
    /// `first` for the first refusal since it was last allowed.
    fn allow(&self, peer: PeerKey) -> Result<(), bool> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (rate, burst) = (
            f64::from(self.config.limit.per_sec),
            f64::from(self.config.limit.burst),
        );
        if b.len() > 4096 {
            // Peers idle long enough to be full again are forgotten.
            let full = Duration::from_secs_f64(burst / rate.max(1.0));
            b.retain(|_, (_, last, _)| now.duration_since(*last) < full);
        }
        let (tokens, last, refusing) = b.entry(peer).or_insert((burst, now, false));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            *refusing = false;
            Ok(())
        } else {
            let first = !*refusing;
            *refusing = true;
            Err(first)
        }
    }
}

/// Counts a new connection of `key`, or `None` when the peer or the
/// service holds as many as it may.
fn hold(state: &Arc<State>, key: PeerKey) -> Option<Held> {
    let mut o = state.open.lock().unwrap_or_else(|p| p.into_inner());
    let mine = o.0.get(&key).copied().unwrap_or(0);
    if mine >= PEER_CONNECTIONS || o.1 >= state.total_cap {
        return None;
    }
    *o.0.entry(key).or_insert(0) += 1;
    o.1 += 1;
    Some(Held {
        state: state.clone(),
        key,
    })
}

/// One connection, one request (no keep-alive), through hyper with its
/// head capped at [`HEAD_CAP`] (larger: 431) and 5 s to send it — after
/// the peer's connection cap and rate limit, which apply before anything
/// is read: a refused or malformed request costs as much as any.
async fn serve_one(
    state: Arc<State>,
    mut sock: tokio::net::TcpStream,
    peer: SocketAddr,
    mark: u32,
    _held: Held,
) {
    use nix::sys::socket::{setsockopt, sockopt};
    // Replies must not be forwarded beyond the tap.
    let _ = setsockopt(&sock.as_fd(), sockopt::Ipv4Ttl, &1);
    let key = (mark, peer.ip());
    if let Err(first) = state.allow(key) {
        if first {
            let tenant = (mark != 0).then(|| state.tenant(mark, peer.ip())).flatten();
            if let Some(line) = metadata::log_line(
                peer.ip(),
                mark,
                tenant.as_ref().map(|t| t.id.as_str()),
                None,
                429,
                true,
            ) {
                state.log.write(key, &line);
            }
        }
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            sock.write_all(
                b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: 10\r\nconnection: close\r\n\r\nslow down\n",
            )
            .await?;
            sock.shutdown().await?;
            // What the peer sent is read and dropped (at most a head's
            // worth): closing with it unread would reset the connection
            // before the peer reads the 429.
            let mut sink = [0u8; HEAD_CAP];
            let mut left = HEAD_CAP;
            while left > 0 {
                match sock.read(&mut sink[..left]).await? {
                    0 => break,
                    n => left -= n,
                }
            }
            std::io::Result::Ok(())
        })
        .await;
        return;
    }
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(reply(answer(&state, mark, peer.ip(), &req))) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(HEAD_CAP)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
}

/// The answer to one request from the peer `ip` whose socket carries
/// `mark` (already within its rate limit), and its log line.
fn answer<B>(state: &State, mark: u32, ip: IpAddr, req: &hyper::Request<B>) -> Response {
    let req = to_request(req);
    let tenant = match &req {
        Ok(_) if mark != 0 => state.tenant(mark, ip),
        _ => None,
    };
    let response = match &req {
        Err(why) => plain(400, why),
        Ok(r)
            if r.headers.get("content-length").is_some_and(|l| l != "0")
                || r.headers.contains_key("transfer-encoding") =>
        {
            plain(413, "request bodies are not accepted\n")
        }
        Ok(req) => {
            let now = jiff::Timestamp::now().as_second().max(0) as u64;
            let nonce = state
                .nonce
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            metadata::handle(req, tenant.as_ref(), &state.key, now, nonce)
        }
    };
    if let Some(line) = metadata::log_line(
        ip,
        mark,
        tenant.as_ref().map(|t| t.id.as_str()),
        req.as_ref().ok(),
        response.status,
        false,
    ) {
        state.log.write((mark, ip), &line);
    }
    response
}

/// A service process spawned by [`spawn`], not yet known to listen.
pub struct Starting {
    child: std::process::Child,
    pub running: crate::host::ProcessRef,
    log: PathBuf,
}

/// Spawns `<this mvm> metadata serve` detached (its own session, stderr
/// appended to `log`, which must be a regular file with one link, or
/// new). The caller records [`Starting::running`] before waiting for it
/// with [`Starting::ready`], so a crash in between leaves a record the
/// next run can stop, never an orphan.
pub fn spawn(
    listen: &str,
    limit: RateLimit,
    state_dir: &std::path::Path,
    log: &std::path::Path,
) -> std::io::Result<Starting> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::os::unix::process::CommandExt;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(log)?;
    let meta = out.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file with one link: refusing to append to it",
            log.display()
        )));
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["metadata", "serve", "--listen", listen])
        .arg("--rate")
        .arg(limit.per_sec.to_string())
        .arg("--burst")
        .arg(limit.burst.to_string())
        .arg("--state-dir")
        .arg(state_dir)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(out);
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let Some(start_time) = crate::host::vm::vmm::start_time(pid) else {
        let status = child.wait()?;
        return Err(std::io::Error::other(format!(
            "it exited at once ({status}); see {}",
            log.display()
        )));
    };
    Ok(Starting {
        child,
        running: crate::host::ProcessRef { pid, start_time },
        log: log.to_path_buf(),
    })
}

impl Starting {
    /// Waits (5 s at most) until the service says it listens (bound,
    /// privileges dropped) — not until something answers at the address,
    /// which may be another process. On failure the process is gone.
    pub fn ready(mut self) -> std::io::Result<crate::host::ProcessRef> {
        // `None`: nothing within 5 s; `Some("")`: its stdout closed (it exits).
        let said = self.child.stdout.take().and_then(|out| {
            use std::io::BufRead;
            use std::os::fd::AsFd;
            let mut fds = [nix::poll::PollFd::new(
                out.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let polled = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16));
            let mut line = String::new();
            polled.is_ok_and(|n| n > 0).then(|| {
                let _ = std::io::BufReader::new(out).read_line(&mut line);
                line
            })
        });
        let status = match said {
            Some(l) if l.starts_with("listening on ") => return Ok(self.running),
            Some(_) => format!("it exited ({})", self.child.wait()?),
            None => {
                self.abort();
                "it did not listen within 5 s".to_string()
            }
        };
        Err(std::io::Error::other(format!(
            "{status}; see {}",
            self.log.display()
        )))
    }

    /// Kills the process (it was never recorded, or its record is going).
    pub fn abort(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the service if `r` is still that process (an mvm, same start).
pub fn stop(r: crate::host::ProcessRef) -> std::io::Result<()> {
    let same = || {
        crate::host::vm::vmm::start_time(r.pid) == Some(r.start_time)
            && std::fs::read_to_string(format!("/proc/{}/comm", r.pid))
                .is_ok_and(|c| c.trim() == "mvm")
    };
    if !same() {
        return Ok(());
    }
    let pid = nix::unistd::Pid::from_raw(r.pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while same() && !is_zombie(r.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

/// The uid and gid the service runs as once it listens: `nobody`. Not
/// root without capabilities: uid 0 still owns (and may write) every
/// root-owned file. Nothing of the service's is owned by this uid, and the
/// process is not dumpable after the switch, so another `nobody` process
/// can at most signal it (a dead service is drift; reconcile restarts it).
pub const SERVICE_UID: u32 = 65534;

/// Keeps only what the service needs once it listens: reading the state
/// dir (CAP_DAC_READ_SEARCH), as [`SERVICE_UID`] with no supplementary
/// groups; every other capability is dropped from the effective,
/// permitted and bounding sets, and no exec can regain one.
fn drop_privileges() -> std::io::Result<()> {
    const CAP_DAC_READ_SEARCH: u32 = 2;
    const LAST_CAP: u32 = 63;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for cap in 0..=LAST_CAP {
            if cap != CAP_DAC_READ_SEARCH {
                // EINVAL past the kernel's last capability: nothing to drop.
                nix::libc::prctl(
                    nix::libc::PR_CAPBSET_DROP,
                    cap as nix::libc::c_ulong,
                    0,
                    0,
                    0,
                );
            }
        }
    }
    // Keep the permitted set across the uid switch; capset below makes
    // the one kept capability effective again.
    // SAFETY: prctl with integer arguments only.
    if unsafe { nix::libc::prctl(nix::libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(SERVICE_UID),
        nix::unistd::Gid::from_raw(SERVICE_UID),
    );
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let keep = 1u32 << CAP_DAC_READ_SEARCH;
    let data = [
        Data {
            effective: keep,
            permitted: keep,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads a valid v3 header and two data structs.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the service until the process is stopped: binds, drops
/// privileges while the process still has one thread (capabilities and
/// the KEEPCAPS flag are per thread, so a runtime started before would
/// keep root's in its workers), then serves on a small runtime.
pub fn run(config: Config) -> std::io::Result<()> {
    let mut key = [0u8; 32];
    let mut seed = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut key)?;
        f.read_exact(&mut seed)
    })?;
    let fd_limit = raise_fd_limit();
    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(std::io::Error::other(format!(
            "privileges must be dropped before any thread starts ({threads} run)"
        )));
    }
    drop_privileges()?;
    // The readiness line `start` waits for (and an operator sees).
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", listener.local_addr()?);
        let _ = out.flush();
    }
    let log = Log {
        max_bytes: config.log_max_bytes,
        peers: Mutex::new(HashMap::new()),
    };
    let state = Arc::new(State {
        config,
        key,
        cache: Mutex::new((Instant::now() - Duration::from_secs(10), HashMap::new())),
        buckets: Mutex::new(HashMap::new()),
        nonce: std::sync::atomic::AtomicU64::new(u64::from_ne_bytes(seed)),
        open: Mutex::new((HashMap::new(), 0)),
        total_cap: total_cap(fd_limit),
        log,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut pause = Duration::from_millis(10);
        loop {
            match listener.accept().await {
                Ok((sock, peer)) => {
                    pause = Duration::from_millis(10);
                    // Over its peer's or the service's cap: closed here, at
                    // once, before a task (and its fd) could pile up.
                    let mark = nix::sys::socket::getsockopt(
                        &sock.as_fd(),
                        nix::sys::socket::sockopt::Mark,
                    )
                    .unwrap_or(0);
                    if let Some(held) = hold(&state, (mark, peer.ip())) {
                        tokio::spawn(serve_one(state.clone(), sock, peer, mark, held));
                    }
                }
                // Out of fds or memory, a connection reset before it was
                // accepted: every tenant keeps its service; wait, retry.
                Err(e) => {
                    state.log.append(&format!(
                        "{} accept failed ({e}); retrying in {} ms\n",
                        jiff::Timestamp::now(),
                        pause.as_millis()
                    ));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    })
}

/// Raises the soft fd limit to the hard one (no privilege needed) and
/// returns it.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// How many connections to hold at most under the fd limit `fds`.
fn total_cap(fds: u64) -> usize {
    (fds.saturating_sub(64) as usize).clamp(PEER_CONNECTIONS, TOTAL_CONNECTIONS)
}

impl crate::host::Services for crate::host::linux::LinuxHost {
    fn start_metadata(
        &self,
        listen: &str,
        limit: crate::security::metadata::RateLimit,
        state_dir: &std::path::Path,
        started: &mut dyn FnMut(crate::host::ProcessRef) -> crate::host::HostResult,
    ) -> crate::host::HostResult<crate::host::ProcessRef> {
        let log = crate::state::StateLayout::new(state_dir).metadata_log();
        let failed = |e| {
            crate::host::HostError::new(
                "start the metadata service at",
                std::path::Path::new(listen),
                e,
            )
        };
        let mut s =
            crate::host::metadata_server::spawn(listen, limit, state_dir, &log).map_err(failed)?;
        if let Err(e) = started(s.running) {
            s.abort();
            return Err(e);
        }
        s.ready().map_err(failed)
    }
    fn stop_service(&self, r: crate::host::ProcessRef) -> crate::host::HostResult {
        crate::host::metadata_server::stop(r).map_err(|e| {
            crate::host::HostError::new("stop process", std::path::Path::new(&r.pid.to_string()), e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_convert_with_lowercased_headers_and_refuse_repeated_ones() {
        let r = to_request(
            &hyper::Request::put("/latest/api/token")
                .header("Host", "x")
                .header("X-Metadata-Token-TTL-Seconds", " 60 ")
                .body(())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("PUT", "/latest/api/token")
        );
        assert_eq!(r.headers["x-metadata-token-ttl-seconds"], "60");
        let twice = hyper::Request::get("/latest/meta-data/mac")
            .header("x-metadata-token", "a")
            .header("X-Metadata-Token", "b")
            .body(())
            .unwrap();
        assert_eq!(to_request(&twice).unwrap_err(), "a header is repeated\n");
        let query = to_request(
            &hyper::Request::get("/latest/meta-data/mac?x=1")
                .body(())
                .unwrap(),
        );
        assert_eq!(query.unwrap().path, "/latest/meta-data/mac?x=1");
        let binary = hyper::Request::get("/")
            .header(
                "x-metadata-token",
                hyper::header::HeaderValue::from_bytes(b"\xff").unwrap(),
            )
            .body(())
            .unwrap();
        assert_eq!(to_request(&binary).unwrap_err(), "a header is not text\n");
    }
}
