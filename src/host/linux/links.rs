//! `Links` on the real machine: the bridge, taps and sysctls over
//! rtnetlink.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::host::net::netlink;
use crate::host::{HostError, HostResult, Links, TapSpec};
use std::os::unix::fs::OpenOptionsExt;

use super::LinuxHost;

/// Refuses a link whose alias is set and is not `mark` (another mvm node's,
/// or other software's). An unmarked link is the caller's to judge: the
/// bridge by its fixed MAC, a tap by the plan (from the tenant's record).
fn owned(at: &Path, alias: Option<&str>, mark: &str) -> HostResult {
    match alias {
        Some(a) if a != mark => Err(HostError::other(
            "manage",
            at,
            format!(
                "refusing: its alias is {a:?}, not this node's mark {mark:?} (another mvm node or other software created it)"
            ),
        )),
        _ => Ok(()),
    }
}

/// Refuses a bridge that is not this node's: another alias, or none and
/// not mvm's fixed MAC (an mvm bridge from before marks has that MAC).
fn bridge_owned(at: &Path, l: &netlink::Link, mac: [u8; 6], mark: &str) -> HostResult {
    owned(at, l.alias.as_deref(), mark)?;
    if l.alias.is_none() && l.mac != Some(mac) {
        return Err(HostError::other(
            "manage",
            at,
            "refusing: a bridge of this name exists without mvm's mark or MAC (mvm did not create it); set bridge.name in node.toml to a bridge of mvm's own",
        ));
    }
    Ok(())
}

impl Links for LinuxHost {
    fn bridge_ensure(
        &self,
        name: &str,
        mac: [u8; 6],
        addresses: &[ipnet::Ipv4Net],
        mark: &str,
    ) -> HostResult {
        let at = Path::new(name);
        let err = |action, e: io::Error| HostError::new(action, at, e);
        let links = netlink::dump().map_err(|e| err("read the links for", e))?;
        if let Some(l) = links.get(name) {
            if l.kind.as_deref() != Some("bridge") {
                return Err(HostError::other(
                    "use",
                    at,
                    format!(
                        "a link named {name} exists and is a {}, not a bridge; rename it or set bridge.name in node.toml",
                        l.kind.as_deref().unwrap_or("device of unknown kind")
                    ),
                ));
            }
            bridge_owned(at, l, mac, mark)?;
        }
        netlink::create_bridge(name, mac).map_err(|e| err("create bridge", e))?;
        let index = netlink::index_of(name).ok_or_else(|| {
            HostError::other("find", at, "the bridge vanished after it was created")
        })?;
        if links.get(name).and_then(|l| l.alias.as_deref()) != Some(mark) {
            netlink::set_alias(index, mark).map_err(|e| err("mark", e))?;
        }
        if links.contains_key(name) && links.get(name).and_then(|l| l.mac) != Some(mac) {
            netlink::set_mac(index, mac).map_err(|e| err("set the MAC of", e))?;
        }
        let have = links.get(name).map(|l| l.ipv4.clone()).unwrap_or_default();
        for a in &have {
            let Ok(net) = a.parse::<ipnet::Ipv4Net>() else {
                continue;
            };
            if !addresses.contains(&net) {
                netlink::delete_address(index, net.addr(), net.prefix_len())
                    .map_err(|e| err("remove an address from", e))?;
            }
        }
        for net in addresses {
            if !have.contains(&net.to_string()) {
                netlink::add_address(index, net.addr(), net.prefix_len())
                    .map_err(|e| err("add an address to", e))?;
            }
        }
        netlink::set_link(index, true, None).map_err(|e| err("set up", e))
    }

    fn bridge_delete(&self, name: &str, mac: [u8; 6], mark: &str) -> HostResult {
        let at = Path::new(name);
        match netlink::link(name).map_err(|e| HostError::new("read the link", at, e))? {
            None => Ok(()),
            Some(l) => {
                bridge_owned(at, &l, mac, mark)?;
                netlink::delete_link(l.index).map_err(|e| HostError::new("delete link", at, e))
            }
        }
    }

    fn tap_ensure(&self, tap: &TapSpec) -> HostResult {
        let at = Path::new(&tap.name);
        let err = |action, e: io::Error| HostError::new(action, at, e);
        let link = netlink::link(&tap.name).map_err(|e| err("read the link", e))?;
        match &link {
            Some(l) if l.kind.as_deref() != Some("tun") => {
                return Err(HostError::other(
                    "use",
                    at,
                    "a link with this tenant's tap name exists and is not a tap; delete it",
                ));
            }
            Some(l) => owned(at, l.alias.as_deref(), &tap.alias)?,
            None => {}
        }
        match &link {
            // Attaching to a tap a running VM holds fails (EBUSY): only
            // touch the device when its owner is not already right.
            Some(l) if l.owner == Some(tap.owner) && l.group == Some(tap.group) => {}
            _ => crate::host::net::tun::create_tap(&tap.name, tap.owner, tap.group)
                .map_err(|e| err("create tap", e))?,
        }
        let master = netlink::index_of(&tap.master).ok_or_else(|| {
            HostError::other(
                "attach",
                at,
                format!("the bridge {} does not exist", tap.master),
            )
        })?;
        let index = netlink::index_of(&tap.name)
            .ok_or_else(|| HostError::other("find", at, "the tap vanished after it was created"))?;
        if link.as_ref().and_then(|l| l.alias.as_deref()) != Some(tap.alias.as_str()) {
            netlink::set_alias(index, &tap.alias).map_err(|e| err("mark", e))?;
        }
        // Before the tap is up: IPv6 off before it could get an address.
        for (k, v) in &tap.sysctls {
            self.sysctl_write(k, v)?;
        }
        netlink::set_link(index, true, Some(master)).map_err(|e| err("attach and set up", e))?;
        netlink::set_bridge_port(index, true, false)
            .map_err(|e| err("set isolated on and learning off on", e))?;
        let fdb = netlink::dump_fdb_port(index)
            .map_err(|e| err("read the forwarding database for", e))?;
        for e in fdb
            .iter()
            .filter(|e| e.ifindex == index && e.fixed && e.mac != tap.mac)
        {
            netlink::fdb_delete(index, e.mac).map_err(|x| err("remove a stale FDB entry of", x))?;
        }
        netlink::fdb_replace(index, tap.mac).map_err(|e| err("add the static FDB entry of", e))?;
        netlink::neighbour_replace(master, tap.neighbour, tap.mac)
            .map_err(|e| HostError::on("add the tenant's neighbour entry to", &tap.master, e))
    }

    fn tap_delete(&self, name: &str, mark: &str) -> HostResult {
        let at = Path::new(name);
        match netlink::link(name).map_err(|e| HostError::new("read the link", at, e))? {
            None => Ok(()),
            Some(l) => {
                owned(at, l.alias.as_deref(), mark)?;
                netlink::delete_link(l.index).map_err(|e| HostError::new("delete link", at, e))
            }
        }
    }

    /// One dump of the links; each of ours (by mark) goes in a link group
    /// no link is in, then one request deletes the group — about 20 ms of
    /// RCU waiting for the whole batch instead of per tap. Should the
    /// group delete fail, each tap is deleted alone, with its own result.
    fn taps_delete(&self, names: &[String], mark: &str) -> Vec<HostResult> {
        if names.len() < 2 {
            return names.iter().map(|n| self.tap_delete(n, mark)).collect();
        }
        let links = match netlink::dump() {
            Ok(l) => l,
            Err(e) => {
                return names
                    .iter()
                    .map(|n| {
                        Err(HostError::other(
                            "read the links for",
                            Path::new(n),
                            e.to_string(),
                        ))
                    })
                    .collect();
            }
        };
        let group = netlink::free_link_group(&links);
        let mut out: Vec<HostResult> = Vec::with_capacity(names.len());
        let mut grouped: Vec<(usize, u32)> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let at = Path::new(name);
            let r = match links.get(name) {
                None => Ok(()),
                Some(l) => owned(at, l.alias.as_deref(), mark).and_then(|()| {
                    netlink::set_link_group(l.index, group)
                        .map_err(|e| HostError::new("mark for deletion", at, e))
                        .map(|()| grouped.push((i, l.index)))
                }),
            };
            out.push(r);
        }
        if !grouped.is_empty() && netlink::delete_link_group(group).is_err() {
            for (i, index) in grouped {
                out[i] = netlink::delete_link(index)
                    .map_err(|e| HostError::new("delete link", Path::new(&names[i]), e));
            }
        }
        out
    }

    fn neighbour_delete(&self, bridge: &str, ip: std::net::Ipv4Addr) -> HostResult {
        match netlink::index_of(bridge) {
            None => Ok(()),
            Some(index) => netlink::neighbour_delete(index, ip)
                .map_err(|e| HostError::on("remove a neighbour entry from", bridge, e)),
        }
    }

    fn sysctl_write(&self, name: &str, value: &str) -> HostResult {
        let path = PathBuf::from(format!("/proc/sys/{}", name.replace('.', "/")));
        let valid = name.starts_with("net.")
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && value.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(HostError::other(
                "write",
                &path,
                "refusing: not a net.* sysctl and a plain value",
            ));
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| HostError::new("open", &path, e))?;
        f.write_all(format!("{value}\n").as_bytes())
            .map_err(|e| HostError::new("write", &path, e))
    }
}
