//! Tenant networking on a real kernel, as root, inside throwaway network
//! (and mount) namespaces: the rendered ruleset round-trips through nft,
//! reconcile builds the bridge, taps and rules and repairs drift, and
//! stand-in guests behind the real taps prove each flow of the policy.
//! Skips with a printed reason when not root.

use mvm::net::ruleset;
use mvm::spec::NodeConfig;
use std::collections::BTreeMap;

mod common;

use common::host::{Need, Script, require};

/// Runs `f` on a thread in a fresh network namespace of its own (gone when
/// the thread ends), so nothing it does reaches the host.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the network");
        f()
    })
    .join()
    .expect("the namespace thread finished")
}

/// What nft lists for mvm's tables: rules and chain specs by "family
/// table chain", and set specs.
type Listing = (
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, String>,
    Vec<String>,
);

/// The rules nft lists for mvm's tables, by "family table chain".
fn listed(known: &ruleset::Ruleset) -> Listing {
    let json = mvm::host::net::nft::list_ruleset("nft").expect("nft lists the ruleset");
    let st = mvm::host::net::nft::parse(&json, known);
    let mut rules = BTreeMap::new();
    let mut specs = BTreeMap::new();
    let mut sets = Vec::new();
    for (table, t) in &st.tables {
        for (chain, rs) in &t.rules {
            rules.insert(format!("{table} {chain}"), rs.clone());
        }
        for (chain, spec) in &t.specs {
            specs.insert(format!("{table} {chain}"), spec.clone());
        }
        sets.extend(t.sets.values().cloned());
    }
    sets.sort();
    (rules, specs, sets)
}

/// nft lists back exactly the JSON mvm renders, for the default node and
/// for one with outside DNS servers and a one-entry deny list — so the
/// plan's rule-by-rule comparison never shows phantom drift.
#[test]
fn the_rendered_ruleset_is_what_nft_lists_back() {
    if !require("the_rendered_ruleset_is_what_nft_lists_back", &[Need::Root]) {
        return;
    }
    let mut other = NodeConfig::default_config();
    other.bridge.dns = vec![
        "10.200.0.1".parse().unwrap(),
        "9.9.9.9".parse().unwrap(),
        "1.1.1.1".parse().unwrap(),
    ];
    other.network.egress_deny = vec!["192.168.0.0/16".parse().unwrap()];
    for node in [NodeConfig::default_config(), other] {
        let rs = ruleset::render(&node);
        let (rules, specs, sets) = in_netns(move || {
            mvm::host::net::nft::apply("nft", &ruleset::transaction(&rs, &[], &[], &[]))
                .expect("nft takes the rendered ruleset");
            // Applying again is a no-op in effect.
            mvm::host::net::nft::apply("nft", &ruleset::transaction(&rs, &[], &[], &[]))
                .expect("and takes it again");
            listed(&rs)
        });
        let rs = ruleset::render(&node);
        let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &rs.rules {
            want.entry(format!("{} {} {}", r.family, r.table, r.chain))
                .or_default()
                .push(r.display());
        }
        for (chain, want_rules) in &want {
            let got = rules.get(chain).cloned().unwrap_or_default();
            for (i, w) in want_rules.iter().enumerate() {
                assert_eq!(
                    got.get(i),
                    Some(w),
                    "{chain} rule {i}: nft lists it differently"
                );
            }
            assert_eq!(got.len(), want_rules.len(), "{chain}");
        }
        for c in &rs.chains {
            let key = c.key();
            assert_eq!(
                specs.get(&key).map(|s| format!("{key}: {s}")),
                Some(c.spec()),
                "{key}"
            );
        }
        let mut want_sets: Vec<String> = rs.sets.iter().map(|s| s.spec()).collect();
        want_sets.sort();
        assert_eq!(sets, want_sets);
    }
}

/// Each rule's text — what a reviewer approves in a plan — is what nft
/// prints for the rule that is applied: `nft list chain` shows, rule by
/// rule and in order, exactly the text mvm renders (counters aside, which
/// nft prints with their values).
#[test]
fn each_rules_text_is_what_nft_prints_for_it() {
    if !require("each_rules_text_is_what_nft_prints_for_it", &[Need::Root]) {
        return;
    }
    let mut other = NodeConfig::default_config();
    other.bridge.dns = vec!["10.200.0.1".parse().unwrap(), "9.9.9.9".parse().unwrap()];
    other.network.egress_deny = vec![
        "192.168.0.0/16".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
    ];
    for node in [NodeConfig::default_config(), other] {
        let rs = ruleset::render(&node);
        let chains: Vec<(String, String, String)> = rs
            .chains
            .iter()
            .map(|c| {
                (
                    c.family.to_string(),
                    c.table.to_string(),
                    c.name.to_string(),
                )
            })
            .collect();
        let printed = in_netns(move || {
            mvm::host::net::nft::apply("nft", &ruleset::transaction(&rs, &[], &[], &[]))
                .expect("nft takes the rendered ruleset");
            let mut out = BTreeMap::new();
            for (f, t, c) in chains {
                let o = std::process::Command::new("nft")
                    .args(["list", "chain", &f, &t, &c])
                    .output()
                    .expect("nft runs");
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                out.insert(format!("{f} {t} {c}"), String::from_utf8(o.stdout).unwrap());
            }
            out
        });
        let rs = ruleset::render(&node);
        for (key, text) in &printed {
            // The rule lines: inside the chain's braces, after its `type`
            // line; counters shown as the rule has them, without values.
            let got: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("table ") && !l.starts_with("chain "))
                .filter(|l| !l.starts_with("type ") && *l != "}")
                .map(zero_counter)
                .collect();
            let want: Vec<String> = rs
                .rules
                .iter()
                .filter(|r| format!("{} {} {}", r.family, r.table, r.chain) == *key)
                .map(|r| match &r.comment {
                    Some(c) => format!("{} comment \"{c}\"", r.text),
                    None => r.text.clone(),
                })
                .collect();
            let differ: Vec<String> = want
                .iter()
                .zip(&got)
                .filter(|(w, g)| w != g)
                .map(|(w, g)| format!("  plan: {w}\n  nft:  {g}"))
                .collect();
            assert!(
                differ.is_empty() && got.len() == want.len(),
                "{key}: the plan's text is not what nft prints:\n{}\n(plan {} rules, nft {})",
                differ.join("\n"),
                want.len(),
                got.len()
            );
        }
    }
}

/// `counter packets 12 bytes 3456` as `counter`.
fn zero_counter(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        out.push(words[i]);
        if words[i] == "counter" && words.get(i + 1) == Some(&"packets") {
            i += 5;
        } else {
            i += 1;
        }
    }
    out.join(" ")
}

/// Tenant element changes sent straight over nfnetlink are exactly what
/// nft would have made: nft lists them back as the plan shows them, a
/// delete removes them, and a batch with one bad change changes nothing.
#[test]
fn element_changes_over_netlink_are_what_nft_lists() {
    if !require(
        "element_changes_over_netlink_are_what_nft_lists",
        &[Need::Root],
    ) {
        return;
    }
    use mvm::host::net::nft::{apply, list_ruleset, parse};
    use mvm::host::net::nft_batch::apply_elements;
    let node = NodeConfig::default_config();
    let (after_add, after_bad, after_delete) = in_netns(move || {
        let rs = ruleset::render(&node);
        apply("nft", &ruleset::transaction(&rs, &[], &[], &[])).expect("the ruleset loads");
        let mac = "02:00:0a:c8:00:0a".parse().unwrap();
        let ip = "10.200.0.10".parse().unwrap();
        let mine = ruleset::tenant_elements("tap-acme", mac, ip, 100000, true, true);
        let bytes =
            |c| mvm::host::net::nft_batch::element_bytes(&c).expect("tenant elements encode");
        let elements = |rs: &ruleset::Ruleset| {
            let mut e: Vec<String> = parse(&list_ruleset("nft").unwrap(), rs)
                .elements
                .into_values()
                .flatten()
                .collect();
            e.sort();
            let json = list_ruleset("nft").unwrap().to_string();
            (e, json.contains("\"10.200.0.10\""))
        };
        apply_elements(&bytes(ruleset::element_changes(&[], &mine))).expect("the adds apply");
        let after_add = elements(&rs);
        // One more tenant's adds, then a delete of an element that is not
        // there: the kernel refuses the batch, so the adds are not made.
        let theirs = ruleset::tenant_elements(
            "tap-globex",
            "02:00:0a:c8:00:02".parse().unwrap(),
            "10.200.0.2".parse().unwrap(),
            100001,
            false,
            false,
        );
        let mut batch = bytes(ruleset::element_changes(&[], &theirs));
        batch.extend(bytes(ruleset::element_changes(
            &ruleset::tenant_elements(
                "tap-ghost",
                mac,
                "10.200.0.99".parse().unwrap(),
                7,
                false,
                false,
            )[..1],
            &[],
        )));
        let refused = apply_elements(&batch).expect_err("a delete of a missing element fails");
        let after_bad = (elements(&rs), refused.to_string());
        apply_elements(&bytes(ruleset::element_changes(&mine, &[]))).expect("the deletes apply");
        (after_add, after_bad, elements(&rs))
    });
    let want = vec![
        "bridge mvm_l2 port_arp: tap-acme . 02:00:0a:c8:00:0a . 02:00:0a:c8:00:0a . 10.200.0.10"
            .to_string(),
        "bridge mvm_l2 port_mark: tap-acme : 100000".to_string(),
        "bridge mvm_l2 port_v4: tap-acme . 02:00:0a:c8:00:0a . 10.200.0.10".to_string(),
    ];
    assert_eq!(after_add.0, want);
    assert!(after_add.1, "metadata_v4/ssh_v4 hold 10.200.0.10");
    assert_eq!(after_bad.0, after_add, "{}", after_bad.1);
    assert!(
        after_bad
            .1
            .contains("the kernel refused deleting an element bridge mvm_l2 port_v4"),
        "{}",
        after_bad.1
    );
    assert_eq!(after_delete, (Vec::new(), false));
}

/// Reconcile, stand-in guests proving the policy, drift repaired, prune
/// (`tests/host/net/isolation.sh`, in fresh network, mount and pid namespaces: a
/// service the script leaves running dies with it).
#[test]
fn reconcile_isolates_tenants_for_real() {
    if !require("reconcile_isolates_tenants_for_real", &[Need::Root]) {
        return;
    }
    Script::new("net/isolation").net().pid().checks(13);
}

/// A transaction nft refuses changes nothing: mvm's tables stay as they
/// were, rule for rule.
#[test]
fn a_refused_transaction_leaves_the_old_ruleset() {
    if !require(
        "a_refused_transaction_leaves_the_old_ruleset",
        &[Need::Root],
    ) {
        return;
    }
    let rs = ruleset::render(&NodeConfig::default_config());
    let (before, after, err) = in_netns(move || {
        mvm::host::net::nft::apply("nft", &ruleset::transaction(&rs, &[], &[], &[])).unwrap();
        let before = listed(&rs);
        // A new ruleset with one command nft refuses at the end.
        let mut other = NodeConfig::default_config();
        other.network.egress_deny = vec![];
        let mut bad = ruleset::transaction(&ruleset::render(&other), &[], &[], &[]);
        bad["nftables"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"add": {"rule": {"family": "inet", "table": "mvm", "chain": "no_such_chain", "expr": [{"accept": null}]}}}));
        let err = mvm::host::net::nft::apply("nft", &bad).unwrap_err();
        (before, listed(&rs), err)
    });
    assert!(err.contains("nothing changed"), "{err}");
    assert_eq!(before, after);
}

/// cloud-init's own Ec2 datasource (Debian's 22.4, unmodified) in a
/// stand-in guest behind a real tap detects the metadata service and reads
/// instance id, hostname, zone and network config: with the token flow on
/// an EC2-looking platform, without one under `metadata.tokens =
/// "optional"`, and is refused a tokenless read by default.
#[test]
fn cloud_init_detects_the_metadata_service() {
    if require(
        "cloud_init_detects_the_metadata_service",
        &[Need::Root, Need::CloudInit],
    ) {
        Script::new("net/cloud_init")
            .net()
            .pid()
            .arg(common::host::cloud_init())
            .checks(4);
    }
}

/// Taps deleted together (one link group, one request): every tap with
/// this node's mark goes, one with another's mark is refused and stays, a
/// missing one is fine, and a link outside the batch — even one already in
/// the group mvm would first pick — is untouched.
#[test]
fn taps_deleted_together_are_only_ours() {
    if !require("taps_deleted_together_are_only_ours", &[Need::Root]) {
        return;
    }
    use mvm::host::net::{netlink, tun};
    let (results, left) = in_netns(|| {
        let mark = "mvm:test-node";
        let names: Vec<String> = (0..6).map(|i| format!("tap-t{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            tun::create_tap(n, 100000 + i as u32, 100000 + i as u32).expect("a tap");
            let index = netlink::index_of(n).unwrap();
            let alias = if i == 4 { "someone-else" } else { mark };
            netlink::set_alias(index, alias).unwrap();
            netlink::set_link(index, true, None).unwrap();
        }
        // A bystander in the group a batch of this process would try first.
        netlink::create_bridge("keep0", [2, 0, 0, 0, 0, 9]).unwrap();
        let keep = netlink::index_of("keep0").unwrap();
        netlink::set_link_group(keep, netlink::first_link_group()).unwrap();
        let mut asked = names.clone();
        asked.push("tap-gone".into());
        let host = mvm::host::Host::linux(std::path::Path::new("/nonexistent"));
        let results: Vec<Result<(), String>> = host
            .links
            .taps_delete(&asked, mark)
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect();
        let mut left: Vec<(String, u32)> = netlink::dump()
            .unwrap()
            .into_values()
            .filter(|l| l.name != "lo")
            .map(|l| (l.name, l.link_group))
            .collect();
        left.sort();
        (results, left)
    });
    for (i, r) in results.iter().enumerate() {
        if i == 4 {
            let e = r.as_ref().expect_err("another's tap is refused");
            assert!(e.contains("someone-else"), "{e}");
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    let group = mvm::host::net::netlink::first_link_group();
    assert_eq!(
        left,
        vec![("keep0".to_string(), group), ("tap-t4".to_string(), 0)]
    );
}

/// `n` tenants' elements (`tap-t<i>`, a MAC and an IP on the default
/// subnet, mark 100000 + i), each with the metadata and SSH settings
/// `settings(i)` gives.
fn many_tenants_elements(
    n: u32,
    settings: impl Fn(u32) -> (bool, bool),
) -> Vec<(&'static str, &'static str, &'static str, serde_json::Value)> {
    (0..n)
        .flat_map(|i| {
            let mac = format!("02:00:0a:c8:{:02x}:{:02x}", i >> 8, i & 0xff);
            let ip = format!("10.200.{}.{}", 1 + i / 250, 2 + i % 250);
            let (metadata, ssh) = settings(i);
            ruleset::tenant_elements(
                &format!("tap-t{i}"),
                mac.parse().unwrap(),
                ip.parse().unwrap(),
                100000 + i,
                metadata,
                ssh,
            )
        })
        .collect()
}

/// 500 tenants' elements in one nfnetlink batch, added then deleted: every
/// acknowledgement arrives (2,000 of them would overflow the socket if each
/// carried a copy of its message, and the batch would look failed).
#[test]
fn a_big_element_batch_is_acknowledged_whole() {
    if !require("a_big_element_batch_is_acknowledged_whole", &[Need::Root]) {
        return;
    }
    use mvm::host::net::nft::{apply, list_ruleset, parse};
    use mvm::host::net::nft_batch::{apply_elements, element_bytes};
    let node = NodeConfig::default_config();
    let (added, after) = in_netns(move || {
        let rs = ruleset::render(&node);
        apply("nft", &ruleset::transaction(&rs, &[], &[], &[])).expect("the ruleset loads");
        let elements = many_tenants_elements(500, |_| (false, false));
        let count = |rs: &ruleset::Ruleset| {
            parse(&list_ruleset("nft").unwrap(), rs)
                .elements
                .into_values()
                .map(|e| e.len())
                .sum::<usize>()
        };
        let adds = element_bytes(&ruleset::element_changes(&[], &elements)).unwrap();
        apply_elements(&adds).expect("500 tenants' adds, one batch");
        let added = count(&rs);
        let deletes = element_bytes(&ruleset::element_changes(&elements, &[])).unwrap();
        apply_elements(&deletes).expect("500 tenants' deletes, one batch");
        (added, count(&rs))
    });
    assert_eq!((added, after), (1500, 0));
}

/// The probe's listing — nft's without elements, the tenant sets' elements
/// dumped over netlink beside it — reads the same as nft's whole listing:
/// 500 tenants' elements, one with a comment (nft lists it as
/// `{"elem": {"val": …}}`), an interface that is not a tenant's tap and a
/// set of someone else's in mvm's table; and with no tables, no sets.
#[test]
fn elements_dumped_over_netlink_read_as_nft_lists_them() {
    if !require(
        "elements_dumped_over_netlink_read_as_nft_lists_them",
        &[Need::Root],
    ) {
        return;
    }
    use mvm::host::net::nft::{apply, list_ruleset, parse};
    use mvm::host::net::nft_batch::{apply_elements, element_bytes, list_elements};
    let node = NodeConfig::default_config();
    let (none, whole, probed, count) = in_netns(move || {
        let none = list_elements().expect("the dumps of sets that are not there");
        let rs = ruleset::render(&node);
        apply("nft", &ruleset::transaction(&rs, &[], &[], &[])).expect("the ruleset loads");
        let elements = many_tenants_elements(500, |i| (i % 2 == 0, i % 3 == 0));
        let adds = element_bytes(&ruleset::element_changes(&[], &elements)).unwrap();
        apply_elements(&adds).expect("500 tenants' adds, one batch");
        let script = r#"
            add element bridge mvm_l2 port_v4 { "tap-commented" . 02:00:0a:c8:ff:01 . 10.200.9.1 comment "hello" }
            add element bridge mvm_l2 port_mark { "eth0" : 7 }
            add set inet mvm theirs { type ipv4_addr; elements = { 10.9.9.9 } }
        "#;
        let out = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait()
            })
            .expect("nft runs");
        assert!(out.success(), "the extra elements load");
        let whole = std::process::Command::new("nft")
            .args(["-j", "list", "ruleset"])
            .output()
            .expect("nft lists the ruleset");
        let whole: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
        let probed = list_ruleset("nft").expect("the probe lists the ruleset");
        let (whole, probed) = (parse(&whole, &rs), parse(&probed, &rs));
        let count = probed.elements.values().map(Vec::len).sum::<usize>();
        (none, whole, probed, count)
    });
    assert_eq!(none, []);
    assert_eq!(probed, whole);
    // port_v4, port_arp and port_mark for each and the commented one;
    // metadata_v4 for every other, ssh_v4 for every third.
    assert_eq!(count, 500 * 3 + 1);
    assert_eq!(
        (probed.metadata_ips.len(), probed.ssh_ips.len()),
        (250, 167)
    );
    assert!(probed.tables["inet mvm"].sets.contains_key("theirs"));
}

/// The listeners the probe asks the kernel's socket diagnostics for are
/// the ones /proc/net/tcp and tcp6 list: IPv4 and a dual-stack wildcard,
/// and not an established connection's ends.
#[test]
fn listeners_from_sock_diag_are_those_proc_lists() {
    if !require(
        "listeners_from_sock_diag_are_those_proc_lists",
        &[Need::Root],
    ) {
        return;
    }
    let (diag, proc_) = in_netns(|| {
        std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip runs");
        let v4 = std::net::TcpListener::bind("127.0.0.1:8080").expect("bind 127.0.0.1:8080");
        let v6 = std::net::TcpListener::bind("[::]:9090").expect("bind [::]:9090");
        let _conn = std::net::TcpStream::connect("127.0.0.1:8080").expect("connect");
        let mut diag = mvm::host::net::sock_diag::tcp_listeners().expect("sock_diag answers");
        // This thread's namespace: /proc/net is the main thread's.
        let mut proc_: Vec<_> = ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
            .iter()
            .flat_map(|f| {
                mvm::host::probe::procfs::tcp_listeners(&std::fs::read_to_string(f).unwrap())
            })
            .collect();
        drop((v4, v6));
        diag.sort();
        proc_.sort();
        (diag, proc_)
    });
    let want: Vec<std::net::SocketAddr> = vec![
        "127.0.0.1:8080".parse().unwrap(),
        "[::]:9090".parse().unwrap(),
    ];
    assert_eq!(proc_, want);
    assert_eq!(diag, want);
}

/// The link dump and the one-link lookup, read from the kernel's bytes,
/// carry what `ip` set: a tap's owner and group, bridge port, isolation,
/// learning, link group, alias, MAC, state, and its IPv4/IPv6 settings;
/// the FDB dump, a static entry and not a port's own addresses.
#[test]
fn links_read_from_netlink_are_what_ip_set() {
    if !require("links_read_from_netlink_are_what_ip_set", &[Need::Root]) {
        return;
    }
    let (dumped, one, missing, fdb) = in_netns(|| {
        let ip = |args: &str| {
            let ok = std::process::Command::new("ip")
                .args(args.split_whitespace())
                .status()
                .expect("ip runs")
                .success();
            assert!(ok, "ip {args}");
        };
        ip("link add br-t type bridge");
        ip("tuntap add dev tap-t mode tap user 4242 group 4343");
        ip("link set tap-t address 02:00:0a:c8:00:0a master br-t group 7 alias hello up");
        ip("link set dev tap-t type bridge_slave isolated on learning off");
        for (key, value) in [
            ("ipv4/conf/tap-t/arp_ignore", "2"),
            ("ipv4/conf/tap-t/drop_unicast_in_l2_multicast", "1"),
            ("ipv6/conf/tap-t/disable_ipv6", "1"),
            ("ipv6/conf/tap-t/accept_ra", "0"),
        ] {
            // /proc/sys/net is the writing thread's namespace's.
            std::fs::write(format!("/proc/sys/net/{key}"), value).expect("the sysctl is written");
        }
        let dumped = mvm::host::net::netlink::dump().expect("the link dump");
        let one = mvm::host::net::netlink::link("tap-t").expect("the lookup");
        let missing = mvm::host::net::netlink::link("nope").expect("a lookup of nothing");
        let ok = std::process::Command::new("bridge")
            .args([
                "fdb",
                "add",
                "02:00:0a:c8:00:0b",
                "dev",
                "tap-t",
                "master",
                "static",
            ])
            .status()
            .expect("bridge runs")
            .success();
        assert!(ok, "bridge fdb add");
        let fdb = mvm::host::net::netlink::dump_fdb().expect("the FDB dump");
        (dumped, one, missing, fdb)
    });
    let tap = &dumped["tap-t"];
    assert_eq!(one.as_ref(), Some(tap));
    assert_eq!(missing, None);
    let bridge = &dumped["br-t"];
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    assert_eq!(tap.kind.as_deref(), Some("tun"));
    assert_eq!((tap.owner, tap.group), (Some(4242), Some(4343)));
    assert_eq!(tap.master, Some(bridge.index));
    assert_eq!((tap.isolated, tap.learning), (Some(true), Some(false)));
    assert_eq!(tap.link_group, 7);
    assert_eq!(tap.alias.as_deref(), Some("hello"));
    assert_eq!(tap.mac, Some([2, 0, 10, 200, 0, 10]));
    assert!(tap.up);
    assert!(!dumped["lo"].up && dumped["lo"].kind.is_none());
    let conf: Vec<(&str, &str)> = tap
        .conf
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        conf,
        [
            ("net.ipv4.conf.tap-t.arp_ignore", "2"),
            ("net.ipv4.conf.tap-t.drop_unicast_in_l2_multicast", "1"),
            ("net.ipv6.conf.tap-t.accept_ra", "0"),
            ("net.ipv6.conf.tap-t.disable_ipv6", "1"),
        ]
    );
    let on_tap: Vec<_> = fdb.iter().filter(|e| e.ifindex == tap.index).collect();
    assert!(
        on_tap
            .iter()
            .any(|e| e.mac == [2, 0, 10, 200, 0, 11] && e.fixed),
        "{fdb:?}"
    );
    // The tap's own MAC is a permanent (not static) entry, its `self`
    // entries are left out.
    assert!(
        on_tap
            .iter()
            .all(|e| e.mac != [2, 0, 10, 200, 0, 10] || !e.fixed),
        "{fdb:?}"
    );
}
