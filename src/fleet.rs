//! The fleet as data: where a node's desired document, status and agent
//! claim live in etcd, the status an agent reports, what a received value
//! means, and the agent's timing rules (debounce, backoff, resync jitter).
//! Pure: the etcd client is `host/etcd.rs`, the loop `agent/run.rs`.

use crate::spec::types::TenantId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The status document's format. Fields are only ever added.
pub const STATUS_VERSION: u32 = 1;

/// A node's keys under a prefix (`/mvm` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// A prefix is `/` and path segments of `[A-Za-z0-9._-]`, no trailing `/`.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let ok = prefix.starts_with('/')
            && prefix.len() > 1
            && !prefix.ends_with('/')
            && prefix[1..].split('/').all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        if !ok {
            return Err(format!(
                "--prefix {prefix:?} must be absolute path segments of A-Z a-z 0-9 . _ - (like /mvm)"
            ));
        }
        Ok(Self {
            prefix: prefix.to_string(),
        })
    }

    /// `<prefix>/nodes/`: every node's keys.
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    pub fn desired(&self, node: &str) -> String {
        format!("{}{node}/desired", self.nodes())
    }

    pub fn status(&self, node: &str) -> String {
        format!("{}{node}/status", self.nodes())
    }

    pub fn agent(&self, node: &str) -> String {
        format!("{}{node}/agent", self.nodes())
    }

    /// The node and the key's last part (`desired`, `status`, `agent`) of
    /// a key under `nodes/`.
    pub fn split<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = key.strip_prefix(self.nodes().as_str())?;
        let (node, what) = rest.split_once('/')?;
        (!node.is_empty() && !what.contains('/')).then_some((node, what))
    }
}

/// A node id as a key segment: what `<state>/node-id` holds (32 hex
/// digits) or what `--node-id` gives, `[A-Za-z0-9._-]{1,64}`.
pub fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || id.starts_with('.')
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("must be 1 to 64 of A-Z a-z 0-9 . _ -, not starting with .".into());
    }
    Ok(())
}

/// What a reconcile ended as, as the status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// The node matches the applied document.
    Converged,
    /// A step failed; the rest is as far as it got.
    Failed,
    /// Some change is blocked on this node.
    Blocked,
    /// The newest value is not a valid document: the last good one stays.
    Invalid,
    /// There is no document (deleted or never written): the last good one
    /// stays; nothing is ever deleted for it.
    Absent,
}

/// One resource that did not get done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub address: String,
    /// `failed`, `blocked`, `skipped`, `interrupted`.
    pub outcome: String,
    pub error: Option<String>,
}

/// Which document the node applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The etcd revision of the value (0 for a file).
    pub revision: i64,
    pub sha256: String,
}

/// `<prefix>/nodes/<id>/status`: what the agent reports. Fields are only
/// ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub format_version: u32,
    pub node_id: String,
    pub mvm_version: String,
    /// The document the node runs (the last good one), if any.
    pub applied: Option<Applied>,
    pub result: RunResult,
    /// Why the result is not `converged`, in one line.
    pub reason: Option<String>,
    /// The last plan's counts.
    pub summary: crate::plan::Summary,
    pub failures: Vec<Failure>,
    /// The overrides set by hand on the node, as plans show them.
    pub overrides: Vec<String>,
    pub etcd_connected: bool,
    /// Since when `etcd_connected` has had its value (RFC 3339).
    pub etcd_since: String,
    /// When the last reconcile started (RFC 3339) and how long it took.
    pub last_reconcile: Option<String>,
    pub last_reconcile_ms: Option<u64>,
}

impl NodeStatus {
    /// Whether `other` says something this one does not (the time of the
    /// last reconcile aside, only its outcome counts): a status is
    /// written on change, and otherwise only every few minutes.
    pub fn differs(&self, other: &NodeStatus) -> bool {
        let strip = |s: &NodeStatus| NodeStatus {
            last_reconcile: None,
            last_reconcile_ms: None,
            ..s.clone()
        };
        strip(self) != strip(other)
    }
}

/// What a received value is.
#[derive(Debug)]
pub enum Received {
    /// A document, validated as `--desired` is.
    Valid {
        desired: crate::spec::DesiredState,
        sha256: String,
    },
    /// Not one; the reason names what is wrong.
    Invalid(String),
    /// Absent, deleted or empty: no information.
    Absent(&'static str),
}

/// Judges a value: absent and empty are no information (a deleted key
/// never means "delete every tenant"), oversize and invalid are refused
/// with their reason; a drain is an explicit `{"tenants": []}`.
pub fn receive(value: Option<&[u8]>, source: &str, node: &crate::spec::NodeConfig) -> Received {
    let Some(bytes) = value else {
        return Received::Absent("no desired document (the key is absent or was deleted)");
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Received::Absent("the desired document is empty");
    }
    let cap = crate::spec::Input::Desired.cap();
    if bytes.len() as u64 > cap {
        return Received::Invalid(format!(
            "{source}: {} bytes, over the {} MiB cap of a desired document",
            bytes.len(),
            cap >> 20
        ));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Received::Invalid(format!("{source}: not UTF-8"));
    };
    match crate::spec::parse_desired(std::path::Path::new(source), text, node) {
        Ok(desired) => Received::Valid {
            desired,
            sha256: crate::digest::sha256(bytes),
        },
        Err(e) => Received::Invalid(crate::text::one_line(&e.to_string()).into_owned()),
    }
}

/// Bursts of writes make few reconciles: a change after a quiet spell is
/// due at once (one node's change applies without waiting); changes that
/// follow within `quiet` are coalesced, due once they have been quiet for
/// `quiet` or `max` after the first of them — so a burst makes one or two
/// reconciles, ending at its last value. `T` is a point in monotonic time
/// (the agent's `Moment`).
#[derive(Debug, Clone)]
pub struct Debounce<T> {
    pub quiet: Duration,
    pub max: Duration,
    first: Option<T>,
    last: Option<T>,
    leading: bool,
    /// The last change of the window that fired last.
    previous: Option<T>,
}

impl<T: Copy + Ord + std::ops::Add<Duration, Output = T>> Debounce<T> {
    pub fn new(quiet: Duration, max: Duration) -> Self {
        Self {
            quiet,
            max,
            first: None,
            last: None,
            leading: false,
            previous: None,
        }
    }

    pub fn changed(&mut self, now: T) {
        if self.first.is_none() {
            self.leading = self.previous.is_none_or(|p| now >= p + self.quiet);
            self.first = Some(now);
        }
        self.last = Some(now);
    }

    /// When the pending change is due, if one is pending.
    pub fn due(&self) -> Option<T> {
        let (first, last) = (self.first?, self.last?);
        if self.leading {
            return Some(first);
        }
        Some((last + self.quiet).min(first + self.max))
    }

    /// The pending change was acted on.
    pub fn clear(&mut self) {
        self.previous = self.last.or(self.previous);
        self.first = None;
        self.last = None;
        self.leading = false;
    }
}

/// Capped exponential backoff with full jitter: attempt `n` (from 0)
/// waits a uniformly random time up to `min(cap, base · 2^n)`; `unit` is a
/// random number in [0, 1).
pub fn backoff(n: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = base.saturating_mul(1u32 << n.min(20)).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// The resync period with ±20 % jitter (`unit` in [0, 1)).
pub fn resync(period: Duration, unit: f64) -> Duration {
    period.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

/// The tenants a plan's failures and blocks name, for the status.
pub fn failed_tenants(f: &[Failure]) -> Vec<TenantId> {
    let mut out: Vec<TenantId> = f
        .iter()
        .filter_map(|f| {
            f.address
                .strip_prefix("tenant.")
                .and_then(|r| r.split('.').next())
                .and_then(|id| TenantId::parse(id).ok())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_under_the_prefix_and_split_back() {
        let k = Keys::new("/mvm").unwrap();
        assert_eq!(k.desired("n1"), "/mvm/nodes/n1/desired");
        assert_eq!(k.split("/mvm/nodes/n1/status"), Some(("n1", "status")));
        assert_eq!(k.split("/mvm/nodes/n1/a/b"), None);
        assert_eq!(k.split("/other/nodes/n1/status"), None);
        for bad in ["mvm", "/", "/mvm/", "/a//b", "/a b", "/ä"] {
            assert!(Keys::new(bad).is_err(), "{bad}");
        }
        assert!(check_node_id("0123abcdef").is_ok());
        for bad in ["", "a/b", ".x", &"x".repeat(65)] {
            assert!(check_node_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absent_empty_invalid_and_valid_values() {
        let node = crate::spec::NodeConfig::default_config();
        assert!(matches!(receive(None, "k", &node), Received::Absent(_)));
        assert!(matches!(
            receive(Some(b" \n"), "k", &node),
            Received::Absent(_)
        ));
        assert!(matches!(
            receive(Some(b"{"), "k", &node),
            Received::Invalid(_)
        ));
        assert!(matches!(
            receive(Some(br#"{"tenants": [], "tenants": []}"#), "k", &node),
            Received::Invalid(_)
        ));
        let huge = vec![b' '; (crate::spec::Input::Desired.cap() + 2) as usize];
        let mut huge = huge;
        huge[0] = b'{';
        assert!(
            matches!(receive(Some(&huge), "k", &node), Received::Invalid(e) if e.contains("cap"))
        );
        let Received::Valid { desired, sha256 } = receive(Some(br#"{"tenants": []}"#), "k", &node)
        else {
            panic!("a drain is a valid document")
        };
        assert!(desired.tenants.is_empty());
        assert_eq!(sha256.len(), 64);
    }

    #[test]
    fn debounce_acts_at_once_after_quiet_then_coalesces_bursts() {
        let s = Duration::from_secs;
        let t0 = s(100);
        let mut d = Debounce::new(s(1), s(10));
        assert_eq!(d.due(), None);
        // After quiet: at once.
        d.changed(t0);
        assert_eq!(d.due(), Some(t0));
        d.clear();
        // The rest of a burst: once it is quiet for 1 s.
        d.changed(t0 + Duration::from_millis(10));
        d.changed(t0 + Duration::from_millis(20));
        assert_eq!(d.due(), Some(t0 + Duration::from_millis(1020)));
        // A burst that never stops: 10 s after its first change.
        for i in 1..30 {
            d.changed(t0 + Duration::from_millis(10 + 500 * i));
        }
        assert_eq!(d.due(), Some(t0 + Duration::from_millis(10_010)));
        d.clear();
        assert_eq!(d.due(), None);
        // Quiet again: at once.
        d.changed(t0 + s(60));
        assert_eq!(d.due(), Some(t0 + s(60)));
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let (b, c) = (Duration::from_millis(100), Duration::from_secs(30));
        assert_eq!(backoff(0, b, c, 0.999_999).as_millis(), 99);
        assert_eq!(backoff(3, b, c, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(40, b, c, 0.5), Duration::from_secs(15));
        assert_eq!(backoff(5, b, c, 0.0), Duration::ZERO);
        let r = resync(Duration::from_secs(300), 0.0);
        assert_eq!(r, Duration::from_secs(240));
        assert_eq!(
            resync(Duration::from_secs(300), 1.0),
            Duration::from_secs(360)
        );
    }

    #[test]
    fn a_status_differs_only_in_what_it_says() {
        let s = NodeStatus {
            format_version: STATUS_VERSION,
            node_id: "n".into(),
            mvm_version: "0".into(),
            applied: None,
            result: RunResult::Converged,
            reason: None,
            summary: Default::default(),
            failures: Vec::new(),
            overrides: Vec::new(),
            etcd_connected: true,
            etcd_since: "t".into(),
            last_reconcile: Some("a".into()),
            last_reconcile_ms: Some(3),
        };
        let mut later = s.clone();
        later.last_reconcile = Some("b".into());
        assert!(!s.differs(&later));
        later.result = RunResult::Failed;
        assert!(s.differs(&later));
    }
}
