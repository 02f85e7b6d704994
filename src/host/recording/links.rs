//! `Links` on the recording host: the bridge, taps, neighbours and
//! sysctls in the model.

use super::{Call, RecordingHost};
use crate::host::{HostError, HostResult};
use crate::host::{Links, TapSpec};

/// The refusal of a link another owner marked, as the real host words it.
fn not_ours(name: &str, alias: Option<&String>) -> HostError {
    HostError::other_on(
        "manage",
        name,
        format!("refusing: its alias is {alias:?}, not this node's mark"),
    )
}

impl Links for RecordingHost {
    fn bridge_ensure(
        &self,
        name: &str,
        mac: [u8; 6],
        addresses: &[ipnet::Ipv4Net],
        mark: &str,
    ) -> HostResult {
        let call = Call::BridgeEnsure {
            name: name.to_string(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            mark: mark.to_string(),
        };
        let (n, mark) = (name.to_string(), mark.to_string());
        self.record(call, |m| {
            match m.links.get(&n) {
                Some((kind, _)) if *kind != "bridge" => {
                    return Err(HostError::other_on(
                        "use",
                        &n,
                        "a link with this name exists and is not a bridge",
                    ));
                }
                Some(_) if m.aliases.get(&n) != Some(&mark) => {
                    return Err(not_ours(&n, m.aliases.get(&n)));
                }
                _ => {}
            }
            m.links.insert(n.clone(), ("bridge", None));
            m.aliases.insert(n.clone(), mark);
            let d = m.link_data.entry(n).or_default();
            d.mac = Some(mac);
            d.addresses = addresses.iter().map(|a| a.to_string()).collect();
            Ok(())
        })
    }
    fn bridge_delete(&self, name: &str, _mac: [u8; 6], mark: &str) -> HostResult {
        let (n, mark) = (name.to_string(), mark.to_string());
        self.record(Call::LinkDelete(name.to_string()), |m| {
            if m.links.contains_key(&n) && m.aliases.get(&n) != Some(&mark) {
                return Err(not_ours(&n, m.aliases.get(&n)));
            }
            if m.links.remove(&n).is_some() {
                m.aliases.remove(&n);
                m.link_data.remove(&n);
                m.neighbours.retain(|(b, _), _| *b != n);
                // Its ports lose their master, as the kernel does.
                for (_, master) in m.links.values_mut() {
                    if master.as_deref() == Some(n.as_str()) {
                        *master = None;
                    }
                }
            }
            Ok(())
        })
    }
    fn tap_ensure(&self, tap: &TapSpec) -> HostResult {
        let call = Call::TapEnsure {
            name: tap.name.clone(),
            owner: tap.owner,
            group: tap.group,
            master: tap.master.clone(),
            mac: tap.mac,
            sysctls: tap.sysctls.clone(),
            neighbour: tap.neighbour,
            mark: tap.alias.clone(),
        };
        let t = tap.clone();
        self.record(call, |m| {
            if m.links.get(&t.master).map(|l| l.0) != Some("bridge") {
                return Err(HostError::other_on(
                    "attach",
                    &t.name,
                    format!("the bridge {} does not exist", t.master),
                ));
            }
            if let Some(a) = m.aliases.get(&t.name)
                && *a != t.alias
            {
                return Err(not_ours(&t.name, Some(a)));
            }
            m.links
                .insert(t.name.clone(), ("tap", Some(t.master.clone())));
            m.aliases.insert(t.name.clone(), t.alias.clone());
            m.sysctls.extend(t.sysctls.iter().cloned());
            m.neighbours.insert((t.master.clone(), t.neighbour), t.mac);
            let d = m.link_data.entry(t.name.clone()).or_default();
            d.owner = Some(t.owner);
            d.group = Some(t.group);
            d.fdb = Some(t.mac);
            Ok(())
        })
    }
    fn tap_delete(&self, name: &str, mark: &str) -> HostResult {
        let (n, mark) = (name.to_string(), mark.to_string());
        self.record(Call::LinkDelete(name.to_string()), |m| {
            if let Some(a) = m.aliases.get(&n)
                && *a != mark
            {
                return Err(not_ours(&n, Some(a)));
            }
            m.links.remove(&n);
            m.aliases.remove(&n);
            m.link_data.remove(&n);
            // Its own sysctls go with it, as the kernel's do.
            let own = format!(".{n}.");
            m.sysctls.retain(|k, _| !k.contains(&own));
            Ok(())
        })
    }
    fn neighbour_delete(&self, bridge: &str, ip: std::net::Ipv4Addr) -> HostResult {
        let call = Call::NeighbourDelete {
            name: bridge.to_string(),
            ip,
        };
        let b = bridge.to_string();
        self.record(call, |m| {
            m.neighbours.remove(&(b, ip));
            Ok(())
        })
    }
    fn sysctl_write(&self, name: &str, value: &str) -> HostResult {
        let call = Call::SysctlWrite {
            name: name.to_string(),
            value: value.to_string(),
        };
        let (n, v) = (name.to_string(), value.to_string());
        self.record(call, |m| {
            m.sysctls.insert(n, v);
            Ok(())
        })
    }
}
