//! `mvm agent run --metrics-listen`: the node's metrics over HTTP for
//! Prometheus. `GET /metrics` answers the text format; anything else is
//! 404 (405 for another method). One request per connection, its head
//! capped, 5 s to send it; at most 16 connections at once (more are
//! closed unread), so a scraper gone wrong cannot hold the agent's fds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The most connections served at once.
const MAX_OPEN: usize = 16;

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves until the task is dropped. `render` (blocking: it probes the
/// host) runs on a blocking thread per scrape.
pub async fn serve(listener: tokio::net::TcpListener, render: Render) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_OPEN {
            open.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let (open, render) = (open.clone(), render.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let render = render.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&req, render).await) }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(16 << 10)
                .keep_alive(false)
                .header_read_timeout(Duration::from_secs(5))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn answer<B>(
    req: &hyper::Request<B>,
    render: Render,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    let reply = |status: u16, kind: &str, body: String| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", kind)
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
            .expect("a valid response")
    };
    if req.uri().path() != "/metrics" {
        return reply(404, "text/plain", "mvm serves /metrics only\n".into());
    }
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(405, "text/plain", "GET /metrics\n".into());
    }
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(text) => reply(200, "text/plain; version=0.0.4; charset=utf-8", text),
        Err(_) => reply(
            500,
            "text/plain",
            "mvm could not read the node's metrics\n".into(),
        ),
    }
}

/// `--metrics-listen`'s value: `HOST:PORT` (an IP address), or `:PORT`
/// for loopback.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let full = match s.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => s.to_string(),
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:9464 or :9464"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_listens_on_loopback() {
        assert_eq!(
            parse_listen(":9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:9464").unwrap(),
            "[::1]:9464".parse().unwrap()
        );
        assert!(parse_listen("localhost:9464").is_err());
    }
}
