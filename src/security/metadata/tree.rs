//! What a tenant reads from the metadata service: EC2's instance
//! metadata layout (the subset a standard cloud image reads — cloud-init's
//! Ec2 datasource detects the service by `<version>/meta-data/instance-id`
//! and crawls the listings) plus mvm's own names, the same tree under
//! `latest` and every EC2 API version.

/// What the service knows of a tenant, from its record.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: String,
    pub node_id: String,
    pub ip: std::net::Ipv4Addr,
    pub mac: String,
    pub flake_ref: String,
    pub lock: String,
}

/// The EC2 API versions answered as aliases of `latest`, as EC2 lists
/// them at `/` (cloud-init 22.4 tries 2021-03-23, 2018-09-24 and
/// 2016-09-02, then falls back to 2009-04-04).
pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
];

/// The names a path of the tree is made of (besides a version and the
/// tenant's MAC): the only words the access log repeats.
const WORDS: &[&str] = &[
    "api",
    "token",
    "meta-data",
    "dynamic",
    "user-data",
    "instance-identity",
    "document",
    "hostname",
    "instance-id",
    "local-hostname",
    "local-ipv4",
    "mac",
    "network",
    "interfaces",
    "macs",
    "device-number",
    "local-ipv4s",
    "placement",
    "availability-zone",
    "public-keys",
    "node-id",
    "revision",
    "tenant-id",
];

/// What a GET of a path is.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A value, or a directory's listing (names, a `/` after those with
    /// children, one per line, as EC2 answers).
    Text(String),
    /// The instance-identity document.
    Json(serde_json::Value),
}

/// `meta-data/` of `t`, as (path, value) leaves; `public-keys/` is a
/// directory with no keys (mvm gives guests none: SSH keys belong in the
/// guest image or the secrets drive).
fn meta_data(t: &Tenant) -> Vec<(String, String)> {
    let nic = format!("network/interfaces/macs/{}", t.mac);
    let mut leaves = vec![
        ("hostname".to_string(), t.id.clone()),
        ("instance-id".into(), t.id.clone()),
        ("local-hostname".into(), t.id.clone()),
        ("local-ipv4".into(), t.ip.to_string()),
        ("mac".into(), t.mac.clone()),
        (format!("{nic}/device-number"), "0".into()),
        (format!("{nic}/local-ipv4s"), t.ip.to_string()),
        (format!("{nic}/mac"), t.mac.clone()),
        ("node-id".into(), t.node_id.clone()),
        ("placement/availability-zone".into(), t.node_id.clone()),
        ("revision".into(), format!("{} {}", t.flake_ref, t.lock)),
        ("tenant-id".into(), t.id.clone()),
    ];
    leaves.sort();
    leaves
}

/// Directories with nothing in them (no trailing `/`).
const EMPTY_DIRS: &[&str] = &["public-keys"];

/// The value at `rel` of `leaves`, or the listing of the directory `rel`
/// (with or without its trailing `/`); `None` where there is nothing.
fn lookup(leaves: &[(String, String)], empty: &[&str], rel: &str) -> Option<String> {
    if let Some((_, v)) = leaves.iter().find(|(k, _)| k == rel) {
        return Some(v.clone());
    }
    let dir = rel.strip_suffix('/').unwrap_or(rel);
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut names: Vec<String> = Vec::new();
    let children = leaves
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(empty.iter().copied());
    for k in children {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        let name = match rest.split_once('/') {
            Some((d, _)) => format!("{d}/"),
            None if empty.contains(&k) => format!("{rest}/"),
            None => rest.to_string(),
        };
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort();
    (!names.is_empty() || empty.contains(&dir)).then(|| names.join("\n"))
}

/// The instance-identity document: EC2's field names (what cloud-init
/// and AWS SDKs read) and mvm's.
fn identity(t: &Tenant) -> serde_json::Value {
    serde_json::json!({
        "instanceId": t.id,
        "availabilityZone": t.node_id,
        "privateIp": t.ip.to_string(),
        "architecture": if cfg!(target_arch = "aarch64") { "arm64" } else { "x86_64" },
        "version": "2017-09-30",
        "tenantId": t.id,
        "nodeId": t.node_id,
        "mac": t.mac,
        "flakeRef": t.flake_ref,
        "lock": t.lock,
    })
}

/// The version a path starts with and the rest (after its `/`), when it
/// is `latest` or an EC2 API version.
fn versioned(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (ver, rest) = rest.split_once('/').unwrap_or((rest, ""));
    (ver == "latest" || VERSIONS.contains(&ver)).then_some((ver, rest))
}

/// What a GET of `path` answers for `t`, or `None` (404). `/` lists the
/// versions; a version lists `dynamic` and `meta-data` (no `user-data`:
/// mvm has none, and EC2 answers 404 for it then).
pub fn get(t: &Tenant, path: &str) -> Option<Node> {
    if path == "/" {
        let mut all: Vec<&str> = VERSIONS.to_vec();
        all.push("latest");
        return Some(Node::Text(all.join("\n")));
    }
    let (_, rest) = versioned(path)?;
    let (top, below) = rest.split_once('/').unwrap_or((rest, ""));
    match top {
        "" => Some(Node::Text("dynamic/\nmeta-data/".into())),
        "meta-data" => lookup(&meta_data(t), EMPTY_DIRS, below).map(Node::Text),
        "dynamic" => match below.trim_end_matches('/') {
            "" => Some(Node::Text("instance-identity/".into())),
            "instance-identity" => Some(Node::Text("document".into())),
            "instance-identity/document" => Some(Node::Json(identity(t))),
            _ => None,
        },
        _ => None,
    }
}

/// `path` when it is made only of the tree's words, a version and a MAC
/// (so it cannot carry a token or anything a guest chose), else `None`:
/// what the access log may repeat.
pub fn loggable(path: &str) -> Option<&str> {
    if path == "/" {
        return Some(path);
    }
    let (_, rest) = versioned(path)?;
    let mac = |s: &str| {
        s.len() == 17
            && s.bytes().enumerate().all(|(i, b)| {
                if i % 3 == 2 {
                    b == b':'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    };
    rest.split('/')
        .all(|s| s.is_empty() || WORDS.contains(&s) || mac(s))
        .then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tenant {
        Tenant {
            id: "acme".into(),
            node_id: "n1".into(),
            ip: "10.200.0.2".parse().unwrap(),
            mac: "02:00:0a:c8:00:02".into(),
            flake_ref: "github:o/r".into(),
            lock: "sha256-x".into(),
        }
    }

    fn text(path: &str) -> String {
        match get(&t(), path) {
            Some(Node::Text(s)) => s,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn every_version_answers_the_same_tree_and_listings_lead_to_every_leaf() {
        for ver in VERSIONS.iter().chain(&["latest"]) {
            assert_eq!(text(&format!("/{ver}/meta-data/instance-id")), "acme");
        }
        assert_eq!(get(&t(), "/2099-01-01/meta-data/instance-id"), None);
        assert!(text("/").ends_with("2022-09-24\nlatest"));
        assert_eq!(text("/latest"), "dynamic/\nmeta-data/");
        assert_eq!(text("/latest/"), "dynamic/\nmeta-data/");
        // Walk the listings as cloud-init's materializer does: every name
        // answers, directories list, and together they reach every leaf.
        let mut leaves = Vec::new();
        let mut todo = vec!["/latest/meta-data/".to_string()];
        while let Some(dir) = todo.pop() {
            for name in text(&dir).lines() {
                let path = format!("{dir}{name}");
                if name.ends_with('/') {
                    todo.push(path);
                } else {
                    leaves.push((path.clone(), text(&path)));
                }
            }
        }
        leaves.sort();
        let want: Vec<(String, String)> = meta_data(&t())
            .into_iter()
            .map(|(k, v)| (format!("/latest/meta-data/{k}"), v))
            .collect();
        assert_eq!(leaves, want);
        assert_eq!(text("/latest/meta-data/public-keys/"), "");
        assert_eq!(
            text("/latest/meta-data/network/interfaces/macs/"),
            "02:00:0a:c8:00:02/"
        );
        assert_eq!(
            text("/2016-09-02/meta-data/network/interfaces/macs/02:00:0a:c8:00:02/local-ipv4s"),
            "10.200.0.2"
        );
        assert_eq!(get(&t(), "/latest/user-data"), None);
        assert_eq!(get(&t(), "/latest/meta-data/instance-id/"), None);
        assert_eq!(get(&t(), "/latest/meta-data/nope"), None);
        let Some(Node::Json(doc)) = get(&t(), "/2021-03-23/dynamic/instance-identity/document")
        else {
            panic!("no identity document");
        };
        assert_eq!(doc["instanceId"], "acme");
        assert_eq!(doc["availabilityZone"], "n1");
        assert_eq!(doc["privateIp"], "10.200.0.2");
        assert_eq!(doc["tenantId"], "acme");
    }

    #[test]
    fn only_paths_of_the_trees_words_are_loggable() {
        let mac = "/latest/meta-data/network/interfaces/macs/02:00:0a:c8:00:02/mac";
        assert_eq!(loggable(mac), Some(mac));
        assert_eq!(
            loggable("/2009-04-04/meta-data/"),
            Some("/2009-04-04/meta-data/")
        );
        assert_eq!(loggable("/latest/api/token"), Some("/latest/api/token"));
        for secret in [
            "/acme.1.2.deadbeef",
            "/latest/meta-data/acme.1.2.deadbeef",
            "/latest/meta-data/network/interfaces/macs/zz:00:0a:c8:00:02",
            "/9999-01-01/meta-data/",
        ] {
            assert_eq!(loggable(secret), None, "{secret}");
        }
    }
}
