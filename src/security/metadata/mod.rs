//! The metadata service's logic, without I/O: IMDSv2-style session tokens
//! and the answer to one request from one identified tenant.
//!
//! A tenant is identified by the kernel, never by the request: the packet
//! mark the bridge set for the tap it came in through (the tenant's uid),
//! cross-checked with its source address — the server resolves that and
//! hands `handle` the tenant, or `None`. Tokens are bound to the tenant and
//! an expiry and signed with HMAC-SHA256 under a key only this process
//! knows; they are checked in constant time.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub mod tree;
pub use crate::spec::node::Tokens;
pub use tree::Tenant;

/// The service's request counters as it keeps them in
/// `<state>/metadata.stats.json` (`mvm node metrics`): answers by HTTP
/// status since it started. Connections it closed before reading a
/// request (over a cap) have no status and are `closed`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// When the service started (RFC 3339).
    pub started_at: String,
    pub requests: BTreeMap<u16, u64>,
    #[serde(default)]
    pub closed: u64,
}

/// The longest token lifetime a guest may ask for, as EC2's IMDSv2.
pub const TTL_MAX: u64 = 21_600;
pub const TOKEN_HEADER: &str = "x-metadata-token";
pub const TTL_HEADER: &str = "x-metadata-token-ttl-seconds";

/// A parsed request: method, path, headers (names lowercased).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetadataRequest {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

/// What to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

fn plain(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain",
        body: body.into(),
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token: `<tenant>.<expiry>.<nonce>.<hmac>`, the HMAC over the first
/// three parts.
pub fn issue(key: &[u8; 32], tenant: &str, now: u64, ttl: u64, nonce: u64) -> String {
    let body = format!("{tenant}.{}.{nonce:016x}", now + ttl);
    let mac = hmac_sha256(key, body.as_bytes());
    format!("{body}.{}", crate::digest::hex(&mac))
}

/// Why a token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    OtherTenant,
}

/// Checks a token for `tenant` at `now`.
pub fn verify(key: &[u8; 32], token: &str, tenant: &str, now: u64) -> Result<(), TokenError> {
    let (body, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let want = crate::digest::hex(&hmac_sha256(key, body.as_bytes()));
    if !same(want.as_bytes(), mac.as_bytes()) {
        return Err(TokenError::BadSignature);
    }
    let mut parts = body.split('.');
    let (Some(who), Some(expiry), Some(_nonce), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    if who != tenant {
        return Err(TokenError::OtherTenant);
    }
    if now >= expiry {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// How many requests a tenant may make: `per_sec` sustained, `burst` at
/// once (node.toml `metadata.rate_per_sec`, `metadata.burst`), and
/// whether a read needs a session token (`metadata.tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub per_sec: u32,
    pub burst: u32,
    pub tokens: Tokens,
}

/// The access-log line for a request, or `None` for what is not worth a
/// line: successful reads, and a rate-limited tenant's refusals after its
/// first (`first_refusal` false), so a guest cannot fill the disk. Only
/// the known method and path appear, never a header or an unknown path
/// (where a guest could have put its token).
pub fn log_line(
    peer: std::net::IpAddr,
    mark: u32,
    tenant: Option<&str>,
    req: Option<&MetadataRequest>,
    status: u16,
    first_refusal: bool,
) -> Option<String> {
    let is_put = req.is_some_and(|r| r.method == "PUT");
    if (status == 200 && !is_put) || (status == 429 && !first_refusal) {
        return None;
    }
    let (method, path) = match req {
        Some(r) => (
            ["GET", "PUT"]
                .into_iter()
                .find(|m| *m == r.method)
                .unwrap_or("(other method)"),
            tree::loggable(&r.path).unwrap_or("(other path)"),
        ),
        // Refused before it was read (the rate limit applies first).
        None if status == 429 => ("(not read)", "-"),
        None => ("(malformed)", "-"),
    };
    let note = if status == 429 {
        " (further refusals not logged until it slows down)"
    } else {
        ""
    };
    Some(format!(
        "{peer} mark={mark:#x} tenant={} {method} {path} {status}{note}",
        tenant.unwrap_or("-")
    ))
}

/// The value of a header that has two spellings (mvm's and EC2's): both
/// sent is refused (400), never one silently preferred.
fn one_of<'a>(
    req: &'a MetadataRequest,
    name: &str,
    alias: &str,
) -> Result<Option<&'a String>, Response> {
    match (req.headers.get(name), req.headers.get(alias)) {
        (Some(_), Some(_)) => Err(plain(400, format!("send {name} or {alias}, not both\n"))),
        (a, b) => Ok(a.or(b)),
    }
}

/// A plain decimal number: digits only (`u64::from_str` also takes a
/// leading `+`).
fn decimal(v: &str) -> Option<u64> {
    let v = v.trim();
    (!v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse().ok())
        .flatten()
}

/// The answer to `req` from `tenant` (`None`: not identified, or not a
/// metadata tenant), under `tokens`. `now` in seconds; `nonce` fresh
/// per token.
pub fn handle(
    req: &MetadataRequest,
    tenant: Option<&Tenant>,
    key: &[u8; 32],
    tokens: Tokens,
    now: u64,
    nonce: u64,
) -> Response {
    let Some(t) = tenant else {
        return plain(403, "forbidden\n");
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("PUT", "/latest/api/token") => {
            if req.headers.contains_key("x-forwarded-for") {
                return plain(400, "X-Forwarded-For is not accepted\n");
            }
            let ttl = match one_of(req, TTL_HEADER, "x-aws-ec2-metadata-token-ttl-seconds") {
                Ok(v) => v.and_then(|v| decimal(v)),
                Err(refused) => return refused,
            };
            match ttl {
                Some(ttl) if (1..=TTL_MAX).contains(&ttl) => {
                    plain(200, issue(key, &t.id, now, ttl, nonce))
                }
                _ => plain(400, format!("{TTL_HEADER} must be 1..={TTL_MAX}\n")),
            }
        }
        ("GET", path) => {
            let token = match one_of(req, TOKEN_HEADER, "x-aws-ec2-metadata-token") {
                Ok(t) => t,
                Err(refused) => return refused,
            };
            match token.map(|tok| verify(key, tok, &t.id, now)) {
                Some(Ok(())) => {}
                None if tokens == Tokens::Optional => {}
                _ => {
                    return plain(
                        401,
                        "a valid token is required: PUT /latest/api/token first\n",
                    );
                }
            }
            match tree::get(t, path) {
                Some(tree::Node::Text(value)) => plain(200, value),
                Some(tree::Node::Json(doc)) => Response {
                    status: 200,
                    content_type: "application/json",
                    body: doc.to_string(),
                },
                None => plain(404, "not found\n"),
            }
        }
        _ => plain(405, "method not allowed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_names_known_paths_only_and_never_a_header() {
        let peer = "10.200.0.2".parse().unwrap();
        let req = |m: &str, p: &str| MetadataRequest {
            method: m.into(),
            path: p.into(),
            headers: [("x-metadata-token".to_string(), "ma.1.2.secret".to_string())].into(),
        };
        let put = req("PUT", "/latest/api/token");
        assert_eq!(
            log_line(peer, 0x100, Some("ma"), Some(&put), 200, false).unwrap(),
            "10.200.0.2 mark=0x100 tenant=ma PUT /latest/api/token 200"
        );
        let get = req("GET", "/latest/meta-data/tenant-id");
        assert_eq!(
            log_line(peer, 0x100, Some("ma"), Some(&get), 200, false),
            None
        );
        let probe = req("GET", "/ma.1.2.secret");
        let line = log_line(peer, 0, None, Some(&probe), 403, false).unwrap();
        assert_eq!(line, "10.200.0.2 mark=0x0 tenant=- GET (other path) 403");
        assert!(log_line(peer, 0x100, Some("ma"), Some(&get), 429, true).is_some());
        assert_eq!(
            log_line(peer, 0x100, Some("ma"), Some(&get), 429, false),
            None
        );
        assert_eq!(
            log_line(peer, 0, None, None, 400, false).unwrap(),
            "10.200.0.2 mark=0x0 tenant=- (malformed) - 400"
        );
    }

    fn tenant(id: &str) -> Tenant {
        Tenant {
            id: id.into(),
            node_id: "n1".into(),
            ip: "10.200.0.2".parse().unwrap(),
            mac: "02:00:0a:c8:00:02".into(),
            flake_ref: "github:o/r".into(),
            lock: "sha256-x".into(),
        }
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> MetadataRequest {
        MetadataRequest {
            method: method.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_matches_the_rfc() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::digest::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_are_bound_to_tenant_and_expiry_and_cannot_be_forged() {
        let key = [7u8; 32];
        let tok = issue(&key, "acme", 1000, 60, 1);
        assert_eq!(verify(&key, &tok, "acme", 1059), Ok(()));
        assert_eq!(verify(&key, &tok, "acme", 1060), Err(TokenError::Expired));
        assert_eq!(
            verify(&key, &tok, "globex", 1000),
            Err(TokenError::OtherTenant)
        );
        assert_eq!(
            verify(&[8u8; 32], &tok, "acme", 1000),
            Err(TokenError::BadSignature)
        );
        // Extending the expiry invalidates the signature.
        let forged = tok.replacen("1060", "9999", 1);
        assert_eq!(
            verify(&key, &forged, "acme", 1000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&key, "garbage", "acme", 1000),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn the_request_rules() {
        let key = [1u8; 32];
        let a = tenant("acme");
        let put = |h: &[(&str, &str)]| {
            handle(
                &req("PUT", "/latest/api/token", h),
                Some(&a),
                &key,
                Tokens::Required,
                100,
                5,
            )
        };
        assert_eq!(put(&[(TTL_HEADER, "21600")]).status, 200);
        for bad in ["0", "21601", "x", "+60", "-1", "6 0", "0x10", ""] {
            assert_eq!(put(&[(TTL_HEADER, bad)]).status, 400, "{bad}");
        }
        // Both spellings: refused, not the first silently used.
        let both = put(&[
            (TTL_HEADER, "60"),
            ("x-aws-ec2-metadata-token-ttl-seconds", "21601"),
        ]);
        assert_eq!(both.status, 400);
        assert!(both.body.contains("not both"), "{}", both.body);
        assert_eq!(
            put(&[("x-aws-ec2-metadata-token-ttl-seconds", "60")]).status,
            200
        );
        assert_eq!(put(&[]).status, 400);
        assert_eq!(
            put(&[(TTL_HEADER, "60"), ("x-forwarded-for", "1.2.3.4")]).status,
            400
        );
        let token = put(&[(TTL_HEADER, "60")]).body;
        let get = |path: &str, tok: &str, who: Option<&Tenant>| {
            handle(
                &req("GET", path, &[(TOKEN_HEADER, tok)]),
                who,
                &key,
                Tokens::Required,
                120,
                6,
            )
        };
        assert_eq!(
            get("/latest/meta-data/tenant-id", &token, Some(&a)).body,
            "acme"
        );
        let both = handle(
            &req(
                "GET",
                "/latest/meta-data/tenant-id",
                &[(TOKEN_HEADER, &token), ("x-aws-ec2-metadata-token", "x")],
            ),
            Some(&a),
            &key,
            Tokens::Required,
            120,
            6,
        );
        assert_eq!(both.status, 400);
        assert_eq!(
            get("/latest/meta-data/local-ipv4", &token, Some(&a)).body,
            "10.200.0.2"
        );
        let doc = get(
            "/latest/dynamic/instance-identity/document",
            &token,
            Some(&a),
        );
        assert_eq!(doc.content_type, "application/json");
        assert!(doc.body.contains("\"tenantId\":\"acme\""), "{}", doc.body);
        assert_eq!(get("/latest/meta-data/nope", &token, Some(&a)).status, 404);
        let listing = get("/latest/meta-data/", &token, Some(&a)).body;
        // Every listed name answers.
        for name in listing.lines() {
            let path = format!("/latest/meta-data/{name}");
            assert_eq!(get(&path, &token, Some(&a)).status, 200, "{path}");
        }
        assert_eq!(listing.lines().count(), 11);
        assert!(listing.lines().any(|n| n == "instance-id"), "{listing}");
        assert_eq!(
            get("/latest/dynamic/instance-identity", &token, Some(&a)).body,
            "document"
        );
        assert_eq!(get("/latest/meta-data/", "", Some(&a)).status, 401);
        assert_eq!(get("/latest/meta-data/tenant-id", "", Some(&a)).status, 401);
        // Another tenant replaying acme's token.
        assert_eq!(
            get(
                "/latest/meta-data/tenant-id",
                &token,
                Some(&tenant("globex"))
            )
            .status,
            401
        );
        // Not identified: nothing but 403.
        assert_eq!(get("/latest/meta-data/tenant-id", &token, None).status, 403);
        assert_eq!(
            handle(
                &req("POST", "/latest/api/token", &[]),
                Some(&a),
                &key,
                Tokens::Required,
                1,
                1
            )
            .status,
            405
        );
    }

    #[test]
    fn optional_tokens_answer_reads_without_one_but_never_a_bad_one() {
        let key = [1u8; 32];
        let a = tenant("acme");
        let get = |path: &str, headers: &[(&str, &str)], who: Option<&Tenant>| {
            handle(
                &req("GET", path, headers),
                who,
                &key,
                Tokens::Optional,
                120,
                6,
            )
        };
        let id = get("/2009-04-04/meta-data/instance-id", &[], Some(&a));
        assert_eq!((id.status, id.body.as_str()), (200, "acme"));
        assert_eq!(
            get(
                "/latest/meta-data/instance-id",
                &[(TOKEN_HEADER, "forged")],
                Some(&a)
            )
            .status,
            401
        );
        let other = issue(&key, "globex", 100, 60, 1);
        assert_eq!(
            get(
                "/latest/meta-data/instance-id",
                &[(TOKEN_HEADER, &other)],
                Some(&a)
            )
            .status,
            401
        );
        // Identity is still the kernel's: not identified is 403.
        assert_eq!(get("/latest/meta-data/instance-id", &[], None).status, 403);
        assert_eq!("optional".parse::<Tokens>(), Ok(Tokens::Optional));
        assert!("maybe".parse::<Tokens>().is_err());
    }
}
