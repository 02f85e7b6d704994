//! Value types shared by the specs: tenant ids, MAC addresses, CPU sets,
//! flake references and lock hashes. Each is validated once, at parse time,
//! so later code can turn it into a path, an interface name or an nft
//! element without checking again.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The longest tenant id. It is bounded by the tightest place an id goes:
/// the tap name `tap-<id>` must fit Linux's 15-byte interface names
/// (IFNAMSIZ 16 with the NUL), so 15 - 4 = 11. The other limits are looser:
/// jailer `--id` ≤ 64, cgroup and path components ≤ 255, and the jailed API
/// socket path (checked against the node's state dir, see
/// `spec::jail::JailLayout`).
pub const TENANT_ID_MAX: usize = 11;

/// The prefix of every tenant tap interface.
pub const TAP_PREFIX: &str = "tap-";

/// A validated tenant id: `[a-z][a-z0-9-]*`, at most 11 bytes, no trailing
/// `-` and no `--`. Lowercase ASCII only, so it is the same string as a path
/// component, a jailer id, an interface name suffix, a cgroup name and an
/// nft string, with nothing to escape and no case-folding collisions.
///
/// Shared (`Arc<str>`): every resource address of a tenant carries its id,
/// so cloning must not allocate.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TenantId(std::sync::Arc<str>);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > TENANT_ID_MAX {
            return Err(format!(
                "is {} bytes; at most {TENANT_ID_MAX} (the tap name \"{TAP_PREFIX}<id>\" must fit Linux's 15-byte interface names)",
                s.len()
            ));
        }
        let first = s.as_bytes()[0];
        if !first.is_ascii_lowercase() {
            return Err("must start with a lowercase letter a-z".into());
        }
        if let Some((i, c)) = s
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "has {c:?} at byte {i}; only lowercase letters, digits and '-' are allowed"
            ));
        }
        if s.ends_with('-') {
            return Err("must not end with '-'".into());
        }
        if s.contains("--") {
            return Err("must not contain \"--\"".into());
        }
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant's tap interface name, always ≤ 15 bytes.
    pub fn tap_name(&self) -> String {
        format!("{TAP_PREFIX}{}", self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::parse(&s).map_err(|e| serde::de::Error::custom(format!("tenant id {s:?} {e}")))
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }

    /// The MAC mvm derives from a tenant IPv4 address: locally administered
    /// `02:00:` followed by the four address bytes, so it is unique whenever
    /// the IP is.
    pub fn from_ipv4(ip: std::net::Ipv4Addr) -> Self {
        let o = ip.octets();
        Self([0x02, 0x00, o[0], o[1], o[2], o[3]])
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err("expected six hex octets like 02:00:0a:c8:00:0a".into());
        }
        let mut out = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err("expected six two-digit hex octets like 02:00:0a:c8:00:0a".into());
            }
            out[i] = u8::from_str_radix(p, 16).map_err(|_| format!("{p:?} is not a hex octet"))?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The highest CPU number a cpuset may name.
pub const CPU_MAX: u32 = 1023;

/// A cgroup `cpuset.cpus` list such as `0-3,6`, kept in canonical form
/// (sorted, merged ranges) so equal sets compare equal.
#[derive(Clone, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub struct CpuSet(Vec<u32>);

impl CpuSet {
    pub fn cpus(&self) -> &[u32] {
        &self.0
    }
}

/// The longest cpuset list accepted: 1024 CPUs written one by one
/// (`0,1,…,1023`) take 4,010 bytes.
pub const CPUSET_TEXT_MAX: usize = 4096;

impl FromStr for CpuSet {
    type Err = String;
    /// Parses into a 1024-bit set, one word mask per range, so the cost
    /// is bounded by the text's length (itself capped), never by what
    /// the ranges expand to.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() > CPUSET_TEXT_MAX {
            return Err(format!(
                "is {} bytes; at most {CPUSET_TEXT_MAX} (list each CPU or range once, like 0-3,6)",
                s.len()
            ));
        }
        const WORDS: usize = (CPU_MAX as usize + 1) / 64;
        let mut bits = [0u64; WORDS];
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let num = |t: &str| {
                if t.is_empty() || t.len() > 4 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("{part:?} is not a CPU number or range like 0-3"));
                }
                t.parse::<u32>()
                    .map_err(|_| format!("{part:?} is not a CPU number or range like 0-3"))
            };
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(format!("range {part:?} runs backwards"));
            }
            if hi > CPU_MAX {
                return Err(format!("CPU {hi} is above the maximum {CPU_MAX}"));
            }
            for (w, word) in bits.iter_mut().enumerate() {
                let (start, end) = (w as u32 * 64, w as u32 * 64 + 63);
                if hi < start || lo > end {
                    continue;
                }
                let from = lo.max(start) - start;
                let to = hi.min(end) - start;
                let width = to - from + 1;
                let mask = if width == 64 {
                    u64::MAX
                } else {
                    ((1u64 << width) - 1) << from
                };
                *word |= mask;
            }
        }
        let cpus = (0..=CPU_MAX)
            .filter(|c| bits[*c as usize / 64] & (1 << (c % 64)) != 0)
            .collect();
        Ok(Self(cpus))
    }
}

impl fmt::Display for CpuSet {
    /// The kernel's own list format: `0-3,6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl Serialize for CpuSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CpuSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Flake reference schemes mvm accepts. Each is one Nix fetches without a
/// local shell: no `file:` or bare paths that would read the node's disk.
pub const FLAKE_SCHEMES: &[&str] = &[
    "github",
    "gitlab",
    "sourcehut",
    "git+https",
    "git+ssh",
    "https",
    "tarball+https",
    "path",
];

pub const FLAKE_REF_MAX: usize = 1024;

/// Checks a flake reference: a known scheme, a non-empty location, and no
/// characters that could be read as a second argument or escape a log line.
/// `path:` refs must be absolute (they are used for offline fixtures).
pub fn check_flake_ref(s: &str) -> Result<(), String> {
    if s.len() > FLAKE_REF_MAX {
        return Err(format!("is {} bytes; at most {FLAKE_REF_MAX}", s.len()));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "contains U+{:04X}, which is not ASCII; flake references must be printable ASCII (percent-encode anything else), so no invisible or direction-changing character can make a reviewer read another reference",
            c as u32
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(format!(
            "contains {c:?}; whitespace and control characters are not allowed"
        ));
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return Err(format!(
            "has no scheme; expected e.g. \"github:org/repo?rev=<sha>\" (schemes: {})",
            FLAKE_SCHEMES.join(", ")
        ));
    };
    if !FLAKE_SCHEMES.contains(&scheme) {
        return Err(format!(
            "scheme {scheme:?} is not allowed; expected one of {}",
            FLAKE_SCHEMES.join(", ")
        ));
    }
    let location = rest.split(['?', '#']).next().unwrap_or("");
    match scheme {
        "github" | "gitlab" | "sourcehut" => {
            let mut segs = location.split('/');
            let owner = segs.next().unwrap_or("");
            let repo = segs.next().unwrap_or("");
            let ok = |p: &str| {
                !p.is_empty()
                    && !p.starts_with(['-', '.'])
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
            };
            if !ok(owner) || !ok(repo) {
                return Err(format!(
                    "expected \"{scheme}:<owner>/<repo>[/<ref>][?rev=<sha>]\" with owner and repo made of letters, digits, '-', '_', '.'"
                ));
            }
        }
        "path" => {
            if !location.starts_with('/') {
                return Err("a path: flake must be absolute, like \"path:/srv/flakes/app\"".into());
            }
        }
        _ => {
            let host = location.trim_start_matches("//");
            if !location.starts_with("//") || host.is_empty() || host.starts_with('/') {
                return Err(format!("expected \"{scheme}://<host>/<path>\""));
            }
            // git and ssh take an authority starting with '-' as an
            // option (`git+ssh://-oProxyCommand=…` runs a command).
            if !host.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[') {
                return Err(format!(
                    "the host part {:?} must start with a letter or digit (one starting with '-' would be read as an option by git or ssh)",
                    host.split('/').next().unwrap_or(host)
                ));
            }
            let authority = host.split('/').next().unwrap_or(host);
            if let Some((_, h)) = authority.rsplit_once('@')
                && !h.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[')
            {
                return Err(format!(
                    "the host {h:?} must start with a letter or digit (one starting with '-' would be read as an option by git or ssh)"
                ));
            }
        }
    }
    if rest.contains("..") && scheme != "https" {
        return Err("must not contain \"..\"".into());
    }
    check_flake_query(rest)
}

/// The `rev=` and `ref=` of a flake reference, as Nix will take them: a
/// rev is a full 40-hex-digit commit id (Nix refuses a short one at build
/// time, long after the plan said it would apply), a ref a valid git ref
/// name.
fn check_flake_query(rest: &str) -> Result<(), String> {
    let Some((_, query)) = rest.split('#').next().unwrap_or("").split_once('?') else {
        return Ok(());
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "rev" if value.len() != 40 || !value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                return Err(format!(
                    "rev={value:?} is not a full commit id: Nix takes 40 hex digits (`git rev-parse HEAD`), not a short one"
                ));
            }
            "ref" => {
                let bad = value.is_empty()
                    || value.starts_with(['-', '/', '.'])
                    || value.ends_with(['/', '.'])
                    || value.ends_with(".lock")
                    || value.contains("..")
                    || value.contains("//")
                    || value.contains("@{")
                    || value
                        .bytes()
                        .any(|b| b.is_ascii_control() || b" ~^:?*[\\".contains(&b));
                if bad {
                    return Err(format!(
                        "ref={value:?} is not a git ref name (like \"main\" or \"refs/tags/v1.2\")"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a flake reference names an exact source: a `rev=` (or a local
/// `path:`); otherwise each build may take a newer commit.
pub fn flake_ref_is_pinned(s: &str) -> bool {
    s.starts_with("path:")
        || s.split('#')
            .next()
            .and_then(|r| r.split_once('?'))
            .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("rev=")))
}

/// Checks an expected flake.lock hash: an SRI `sha256-<base64>` (as Nix
/// prints narHash) or 64 hex digits.
pub fn check_lock_hash(s: &str) -> Result<(), String> {
    if let Some(b64) = s.strip_prefix("sha256-") {
        let ok = b64.len() == 44
            && b64.ends_with('=')
            && b64[..43]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
        if ok {
            return Ok(());
        }
    } else if s.len() == 64
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return Ok(());
    }
    Err("expected \"sha256-<44 base64 chars>\" (a Nix narHash) or 64 lowercase hex digits".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["a", "acme", "a-b-c", "t0", "abcdefghijk"] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
            assert!(TenantId::parse(ok).unwrap().tap_name().len() <= 15);
        }
        for bad in [
            "",
            "A",
            "1a",
            "a_b",
            "a-",
            "a--b",
            "abcdefghijkl",
            "a/b",
            "a.b",
            "é",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpusets_are_canonical() {
        let c: CpuSet = "3,0-2,2".parse().unwrap();
        assert_eq!(c.to_string(), "0-3");
        let c: CpuSet = "5,1".parse().unwrap();
        assert_eq!(c.to_string(), "1,5");
        assert!("3-1".parse::<CpuSet>().is_err());
        assert!("2000".parse::<CpuSet>().is_err());
        let c: CpuSet = "60-70,0,1023".parse().unwrap();
        assert_eq!(c.to_string(), "0,60-70,1023");
        assert_eq!("0-1023".parse::<CpuSet>().unwrap().cpus().len(), 1024);
        assert!("+1".parse::<CpuSet>().is_err());
    }

    /// A bug fixed: a 10 MB cpuset repeating `0-1023` took 5.6 GB and 22 s.
    #[test]
    fn cpuset_text_is_capped_and_ranges_cost_nothing() {
        let long = vec!["0-1023"; 1_500_000].join(",");
        let e = long.parse::<CpuSet>().unwrap_err();
        assert!(e.contains("at most 4096"), "{e}");
        let most = vec!["0-1023"; 585].join(",");
        assert!(most.len() <= CPUSET_TEXT_MAX);
        assert_eq!(most.parse::<CpuSet>().unwrap().cpus().len(), 1024);
    }

    #[test]
    fn macs() {
        let m: MacAddr = "02:00:0A:c8:00:0a".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:0a:c8:00:0a");
        assert!(m.is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
        assert_eq!(MacAddr::from_ipv4("10.200.0.10".parse().unwrap()), m);
    }

    #[test]
    fn flake_refs() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for ok in [
            format!("github:org/repo?rev={sha}"),
            "github:org/repo/main".into(),
            format!("git+https://example.com/x.git?ref=refs/tags/v1.2&rev={sha}"),
            "git+https://example.com/x.git?ref=main".into(),
            "path:/srv/flake".into(),
        ] {
            assert_eq!(check_flake_ref(&ok), Ok(()), "{ok}");
        }
        // A bug fixed: short revs (the README's own example) passed the
        // plan and failed in Nix ("has wrong length for hash type 'sha1'").
        for bad in [
            "github:org/repo?rev=1a2b3c4d5e6f",
            "github:org/repo?rev=zz",
            "github:org/repo?rev=",
            "https://example.com/x.tar.gz?ref=a..b",
            "git+https://example.com/x.git?ref=-x",
            "git+https://example.com/x.git?ref=main.lock",
            "git+https://example.com/x.git?ref=a%20b^",
        ] {
            let e = check_flake_ref(bad).unwrap_err();
            assert!(e.contains("rev=") || e.contains("ref="), "{bad}: {e}");
        }
        assert!(flake_ref_is_pinned(&format!("github:o/r?rev={sha}")));
        assert!(flake_ref_is_pinned("path:/srv/f"));
        assert!(!flake_ref_is_pinned("github:o/r"));
        assert!(!flake_ref_is_pinned("git+https://e.com/x?ref=main"));
        for bad in [
            "git+ssh://-oProxyCommand=touch%20/tmp/x/repo",
            "git+ssh://git@-oProxyCommand=x/repo",
            "https://-x.example/a.tar.gz",
            "github:org/repo\u{202e}cba",
            "github:org/re\u{200b}po",
            "org/repo",
            "github:",
            "github:-x/y",
            "file:/etc",
            "path:rel",
            "github:o/r x",
            "https:foo",
        ] {
            assert!(check_flake_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_hashes() {
        assert!(check_lock_hash("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").is_ok());
        assert!(check_lock_hash(&"a".repeat(64)).is_ok());
        assert!(check_lock_hash("sha256-short").is_err());
    }
}
