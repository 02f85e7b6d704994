//! A real etcd for the fleet tests: Debian's `etcd`, started as a plain
//! process on free loopback ports (client and peer, so parallel etcds
//! never collide) with its data dir on a tmpfs (`/dev/shm`), killed by pid
//! when dropped — never the system service. Raw writes (deletes, empty or
//! hostile values, compaction) go through its HTTP gateway, so a test
//! needs no other tool.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub client: u16,
    peer: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mvm-etcd-")
            .tempdir_in("/dev/shm")
            .unwrap();
        let mut e = Etcd {
            child: None,
            dir,
            client: free_port(),
            peer: free_port(),
        };
        e.spawn();
        e
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn spawn(&mut self) {
        let (c, p) = (self.client, self.peer);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new("/usr/bin/etcd")
            .args(["--name", "test"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{p}"),
            ])
            .args(["--initial-cluster", &format!("test=http://127.0.0.1:{p}")])
            .args(["--logger=zap", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.request("/health", "").contains("\"health\":\"true\"") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not come up: {}",
            std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
        );
    }

    /// Kills it (-9) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A request to the HTTP gateway; the response body ("" when down).
    pub fn request(&self, path: &str, body: &str) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let method = if body.is_empty() { "GET" } else { "POST" };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(req.as_bytes()).is_err() {
            return String::new();
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// Writes `value` at `key` as is (no validation); the response.
    pub fn put_raw(&self, key: &str, value: &[u8]) -> String {
        self.request(
            "/v3/kv/put",
            &format!(
                r#"{{"key": "{}", "value": "{}"}}"#,
                b64(key.as_bytes()),
                b64(value)
            ),
        )
    }

    pub fn delete(&self, key: &str) -> String {
        self.request(
            "/v3/kv/deleterange",
            &format!(r#"{{"key": "{}"}}"#, b64(key.as_bytes())),
        )
    }

    /// The store's revision now.
    pub fn revision(&self) -> i64 {
        let r = self.request("/v3/kv/range", &format!(r#"{{"key": "{}"}}"#, b64(b"/")));
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        v["header"]["revision"].as_str().unwrap().parse().unwrap()
    }

    /// Compacts the history up to `revision`.
    pub fn compact(&self, revision: i64) -> String {
        self.request(
            "/v3/kv/compaction",
            &format!(r#"{{"revision": "{revision}", "physical": true}}"#),
        )
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
