//! One rtnetlink link dump and one IPv4 address dump, parsed into what mvm
//! needs: each link's kind, master, state, bridge-port flags and tun owner.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::collections::HashMap;
use std::net::IpAddr;

/// IFLA_TUN_OWNER / IFLA_TUN_GROUP in a tun link's IFLA_INFO_DATA.
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub up: bool,
    pub master: Option<u32>,
    pub isolated: Option<bool>,
    pub learning: Option<bool>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub ipv4: Vec<String>,
}

/// All links with their IPv4 addresses, keyed by name.
pub fn dump() -> std::io::Result<HashMap<String, Link>> {
    let socket = connect()?;
    let mut links: HashMap<u32, Link> = HashMap::new();
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Unspec;
    for reply in request(&socket, RouteNetlinkMessage::GetLink(msg), 1)? {
        if let RouteNetlinkMessage::NewLink(m) = reply {
            let l = parse_link(&m);
            links.insert(l.index, l);
        }
    }
    let mut amsg = AddressMessage::default();
    amsg.header.family = AddressFamily::Inet;
    for reply in request(&socket, RouteNetlinkMessage::GetAddress(amsg), 2)? {
        if let RouteNetlinkMessage::NewAddress(m) = reply {
            let prefix = m.header.prefix_len;
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let (Some(ip), Some(l)) = (addr, links.get_mut(&m.header.index)) {
                let s = format!("{ip}/{prefix}");
                if !l.ipv4.contains(&s) {
                    l.ipv4.push(s);
                }
            }
        }
    }
    Ok(links.into_values().map(|l| (l.name.clone(), l)).collect())
}

fn connect() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends one dump request and collects every reply until NLMSG_DONE.
fn request(
    socket: &Socket,
    payload: RouteNetlinkMessage,
    seq: u32,
) -> std::io::Result<Vec<RouteNetlinkMessage>> {
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(payload));
    packet.header.flags = NLM_F_DUMP | NLM_F_REQUEST;
    packet.header.sequence_number = seq;
    packet.finalize();
    let mut buf = vec![0; packet.header.length as usize];
    packet.serialize(&mut buf[..]);
    socket.send(&buf[..], 0)?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let size = socket.recv(&mut &mut rx[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let msg: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&rx[offset..size]).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return Err(e.to_io());
                }
                NetlinkPayload::InnerMessage(m) => out.push(m),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

fn parse_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        ..Link::default()
    };
    for attr in &m.attributes {
        match attr {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Controller(i) => l.master = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => {
                            l.kind = Some(match k {
                                InfoKind::Bridge => "bridge".into(),
                                InfoKind::Tun => "tun".into(),
                                other => other.to_string(),
                            })
                        }
                        LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                            for p in port {
                                match p {
                                    InfoBridgePort::Isolated(v) => l.isolated = Some(*v),
                                    InfoBridgePort::Learning(v) => l.learning = Some(*v),
                                    _ => {}
                                }
                            }
                        }
                        LinkInfo::Data(InfoData::Tun(nlas)) => {
                            for nla in nlas {
                                let netlink_packet_route::link::InfoTun::Other(raw) = nla else {
                                    continue;
                                };
                                let kind = netlink_packet_core::Nla::kind(raw);
                                let mut bytes = [0u8; 4];
                                if netlink_packet_core::Nla::value_len(raw) == 4 {
                                    netlink_packet_core::Nla::emit_value(raw, &mut bytes);
                                    let v = u32::from_ne_bytes(bytes);
                                    match kind {
                                        IFLA_TUN_OWNER => l.owner = (v != u32::MAX).then_some(v),
                                        IFLA_TUN_GROUP => l.group = (v != u32::MAX).then_some(v),
                                        _ => {}
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}
