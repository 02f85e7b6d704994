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

mod process;

use crate::security::metadata::{self, MetadataRequest, Policy, Response, Tenant};
use process::drop_privileges;
pub use process::{SERVICE_UID, Starting, spawn, stop};
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
    pub policy: Policy,
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
    stats: Mutex<(bool, metadata::Stats)>,
}

impl State {
    fn count(&self, status: Option<u16>) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        match status {
            Some(code) => *s.1.requests.entry(code).or_default() += 1,
            None => s.1.closed += 1,
        }
        s.0 = true;
    }
}

/// Opens the counters' file before privileges go (the service then writes
/// it through this fd only).
fn open_stats(state_dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = crate::state::StateLayout::new(state_dir).metadata_stats();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(&path)?;
    crate::host::fs::beneath::check_own_file(&f, &path)?;
    Ok(f)
}

/// Writes the counters when they changed (they start changed: the first
/// tick writes the empty ones), once a second.
async fn write_stats(state: Arc<State>, file: std::fs::File) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let text = {
            let mut s = state.stats.lock().unwrap_or_else(|p| p.into_inner());
            if !s.0 {
                continue;
            }
            s.0 = false;
            crate::spec::json::file_text(&s.1)
        };
        crate::host::fs::rewrite_in_place(&file, &text);
    }
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
            f64::from(self.config.policy.per_sec),
            f64::from(self.config.policy.burst),
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
        drop(o);
        state.count(None);
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
        state.count(Some(429));
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
            metadata::handle(
                req,
                tenant.as_ref(),
                &state.key,
                state.config.policy.tokens,
                now,
                nonce,
            )
        }
    };
    state.count(Some(response.status));
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
    let stats_file = open_stats(&config.state_dir)?;
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
        stats: Mutex::new((
            true,
            metadata::Stats {
                started_at: jiff::Timestamp::now().to_string(),
                ..Default::default()
            },
        )),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        tokio::spawn(write_stats(state.clone(), stats_file));
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
