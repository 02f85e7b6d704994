//! rtnetlink, spoken directly (the `netlink-packet-route` messages the
//! `rtnetlink` crate is built on, over a blocking socket; no `ip` or
//! `bridge` subprocesses). Reads: one link dump, one IPv4 address dump and
//! one bridge FDB dump, parsed into what mvm needs — each link's kind,
//! master, state, bridge-port flags and tun owner. Writes: the bridge,
//! addresses, link state and master, bridge-port flags, static FDB entries.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoKind, InfoPortData, InfoPortKind, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

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
    /// The link's group (IFLA_GROUP; 0 is the default group).
    pub link_group: u32,
    pub ipv4: Vec<String>,
    pub mac: Option<[u8; 6]>,
    /// IFLA_IFALIAS, where set.
    pub alias: Option<String>,
    /// The link's own IPv4 and IPv6 settings the dump carries
    /// (IFLA_AF_SPEC), by sysctl name (`net.ipv4.conf.<link>.arp_ignore`):
    /// only those mvm manages on a tap.
    pub conf: std::collections::BTreeMap<String, String>,
}

/// All links with their IPv4 addresses, keyed by name.
pub fn dump() -> std::io::Result<HashMap<String, Link>> {
    let socket = connect()?;
    let mut links: HashMap<u32, Link> = HashMap::new();
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Unspec;
    // Without each link's counters (IFLA_STATS64 and the IPv6 statistics):
    // a third of a tap's message, and nothing the probe reads. A kernel
    // that does not know the flag ignores it.
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    // Read from the message bytes: a library parse of every attribute of
    // 500 taps' messages was most of the probe's netlink time.
    let req = serialized(
        RouteNetlinkMessage::GetLink(msg),
        NLM_F_DUMP | NLM_F_REQUEST,
        1,
    );
    super::nlmsg::dump(&socket, &req, 1, |payload| {
        if let Some(l) = parse_link(payload) {
            links.insert(l.index, l);
        }
    })?;
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

/// `payload` as one request's bytes.
fn serialized(payload: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(payload));
    packet.header.flags = flags;
    packet.header.sequence_number = seq;
    packet.finalize();
    let mut buf = vec![0; packet.header.length as usize];
    packet.serialize(&mut buf[..]);
    buf
}

/// Sends one dump request and collects every reply until NLMSG_DONE.
fn request(
    socket: &Socket,
    payload: RouteNetlinkMessage,
    seq: u32,
) -> std::io::Result<Vec<RouteNetlinkMessage>> {
    socket.send(&serialized(payload, NLM_F_DUMP | NLM_F_REQUEST, seq), 0)?;

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

/// One link by name (RTM_GETLINK for that name, not a dump of every
/// link); `None` when there is none.
pub fn link(name: &str) -> std::io::Result<Option<Link>> {
    use super::nlmsg::NLMSG_ERROR;
    const RTM_NEWLINK: u16 = 16;
    let socket = connect()?;
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    socket.send(
        &serialized(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST, 1),
        0,
    )?;
    let mut rx = vec![0u8; 64 * 1024];
    let size = socket.recv(&mut &mut rx[..], 0)?;
    match super::nlmsg::messages(&rx[..size]).next() {
        Some((RTM_NEWLINK, _, payload)) => parse_link(payload).map(Some).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a short RTM_NEWLINK answer",
            )
        }),
        Some((NLMSG_ERROR, _, payload)) => match super::nlmsg::status(payload) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
            Ok(()) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "an acknowledgement instead of the link",
            )),
        },
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "unexpected answer to RTM_GETLINK",
        )),
    }
}

/// A static entry in a bridge's forwarding database.
#[derive(Debug, Clone, PartialEq)]
pub struct FdbEntry {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// A static entry (`bridge fdb add … static`, NUD_NOARP), as mvm adds
    /// them — not learned, and not the port's own address (NUD_PERMANENT),
    /// which the bridge needs to deliver frames to itself.
    pub fixed: bool,
}

/// The bridge forwarding database, every port's entries.
pub fn dump_fdb() -> std::io::Result<Vec<FdbEntry>> {
    fdb(None)
}

/// The entries of one bridge port (the kernel filters: a strict-checked
/// dump request with the port's index).
pub fn dump_fdb_port(index: u32) -> std::io::Result<Vec<FdbEntry>> {
    let entries = fdb(Some(index))?;
    Ok(entries.into_iter().filter(|e| e.ifindex == index).collect())
}

fn fdb(port: Option<u32>) -> std::io::Result<Vec<FdbEntry>> {
    let socket = connect()?;
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    if let Some(index) = port {
        socket.set_netlink_get_strict_chk(true)?;
        msg.header.ifindex = index;
    }
    // Read from the message bytes, as the link dump is: ndmsg (family,
    // pads, ifindex, state, flags, type), then NDA_LLADDR.
    const NDA_LLADDR: u16 = 2;
    const NTF_SELF: u8 = 0x02;
    const NUD_NOARP: u16 = 0x40;
    let mut out = Vec::new();
    let req = serialized(
        RouteNetlinkMessage::GetNeighbour(msg),
        NLM_F_DUMP | NLM_F_REQUEST,
        3,
    );
    super::nlmsg::dump(&socket, &req, 3, |payload| {
        let Some(head) = payload.get(..12) else {
            return;
        };
        let mac = super::nlmsg::attrs(&payload[12..])
            .find(|&(k, v)| k == NDA_LLADDR && v.len() == 6)
            .and_then(|(_, v)| <[u8; 6]>::try_from(v).ok());
        // A port's own address (`self`) is not a forwarding entry.
        if let Some(mac) = mac
            && head[10] & NTF_SELF == 0
        {
            out.push(FdbEntry {
                ifindex: u32::from_ne_bytes(head[4..8].try_into().expect("4 bytes")),
                mac,
                fixed: u16::from_ne_bytes(head[8..10].try_into().expect("2 bytes")) == NUD_NOARP,
            });
        }
    })?;
    Ok(out)
}

/// Sends one request and waits for its acknowledgement.
fn ack(payload: RouteNetlinkMessage, flags: u16) -> std::io::Result<()> {
    let socket = connect()?;
    socket.send(
        &serialized(payload, NLM_F_REQUEST | NLM_F_ACK | flags, 1),
        0,
    )?;
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let size = socket.recv(&mut &mut rx[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let msg: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&rx[offset..size]).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?;
            if let NetlinkPayload::Error(e) = msg.payload {
                return match e.code {
                    None => Ok(()),
                    Some(_) => Err(e.to_io()),
                };
            }
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

/// The index of the link `name`; `None` when there is none.
pub fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// Creates the bridge `name` with the MAC `mac` (a bridge without one
/// takes its lowest port's, and changes it as ports come and go — under
/// every guest's ARP cache); one that exists is fine.
pub fn create_bridge(name: &str, mac: [u8; 6]) -> std::io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    match ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Sets a link's MAC address.
pub fn set_mac(index: u32, mac: [u8; 6]) -> std::io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    ack(RouteNetlinkMessage::NewLink(msg), 0)
}

/// Sets a link up (or down) and, if given, its master.
pub fn set_link(index: u32, up: bool, master: Option<u32>) -> std::io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.change_mask = LinkFlags::Up;
    if up {
        msg.header.flags = LinkFlags::Up;
    }
    if let Some(m) = master {
        msg.attributes.push(LinkAttribute::Controller(m));
    }
    ack(RouteNetlinkMessage::NewLink(msg), 0)
}

/// Deletes a link; one that is gone is fine.
pub fn delete_link(index: u32) -> std::io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    match ack(RouteNetlinkMessage::DelLink(msg), 0) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(()),
        other => other,
    }
}

/// Puts a link in the link group `group` (IFLA_GROUP).
pub fn set_link_group(index: u32, group: u32) -> std::io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Group(group));
    ack(RouteNetlinkMessage::NewLink(msg), 0)
}

/// The link group this process puts links to delete together in first
/// ("mvm" and the low byte of its pid).
pub fn first_link_group() -> u32 {
    0x6d76_6d00 | (std::process::id() & 0xff)
}

/// A link group none of `links` is in, from `first_link_group` on (never
/// 0, every link's default).
pub fn free_link_group(links: &HashMap<String, Link>) -> u32 {
    let used: std::collections::HashSet<u32> = links.values().map(|l| l.link_group).collect();
    let mut group = first_link_group();
    while group == 0 || used.contains(&group) {
        group = group.wrapping_add(1);
    }
    group
}

/// Deletes every link in the link group `group` in one request: the
/// kernel unregisters them together and waits for one RCU grace period
/// for all of them, where deleting one by one waits once per link (about
/// 20 ms each here). Group 0, everyone's default, is refused here.
pub fn delete_link_group(group: u32) -> std::io::Result<()> {
    if group == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "link group 0 is every link's default group",
        ));
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    ack(RouteNetlinkMessage::DelLink(msg), 0)
}

fn address_msg(index: u32, ip: Ipv4Addr, prefix: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V4(ip)));
    msg
}

/// Adds an IPv4 address to a link (replacing one that is there).
pub fn add_address(index: u32, ip: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    ack(
        RouteNetlinkMessage::NewAddress(address_msg(index, ip, prefix)),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Removes an IPv4 address from a link; one that is gone is fine.
pub fn delete_address(index: u32, ip: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    match ack(
        RouteNetlinkMessage::DelAddress(address_msg(index, ip, prefix)),
        0,
    ) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EADDRNOTAVAIL) => Ok(()),
        other => other,
    }
}

/// Sets a bridge port's `isolated` and `learning` flags.
pub fn set_bridge_port(index: u32, isolated: bool, learning: bool) -> std::io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![
            InfoBridgePort::Isolated(isolated),
            InfoBridgePort::Learning(learning),
        ])),
    ]));
    ack(RouteNetlinkMessage::NewLink(msg), 0)
}

fn fdb_msg(index: u32, mac: [u8; 6]) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Noarp;
    msg.header.flags = NeighbourFlags::Controller;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg
}

/// `bridge fdb replace <mac> dev <port> master static`.
pub fn fdb_replace(index: u32, mac: [u8; 6]) -> std::io::Result<()> {
    ack(
        RouteNetlinkMessage::NewNeighbour(fdb_msg(index, mac)),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Removes a port's FDB entry for `mac`; one that is gone is fine.
pub fn fdb_delete(index: u32, mac: [u8; 6]) -> std::io::Result<()> {
    match ack(RouteNetlinkMessage::DelNeighbour(fdb_msg(index, mac)), 0) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Sets a link's alias (IFLA_IFALIAS).
pub fn set_alias(index: u32, alias: &str) -> std::io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::IfAlias(alias.to_string()));
    ack(RouteNetlinkMessage::NewLink(msg), 0)
}

fn neighbour_msg(index: u32, ip: Ipv4Addr, mac: Option<[u8; 6]>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    if let Some(mac) = mac {
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    msg
}

/// `ip neigh replace <ip> lladdr <mac> dev <link> nud permanent`.
pub fn neighbour_replace(index: u32, ip: Ipv4Addr, mac: [u8; 6]) -> std::io::Result<()> {
    ack(
        RouteNetlinkMessage::NewNeighbour(neighbour_msg(index, ip, Some(mac))),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Removes a link's neighbour entry for `ip`; one that is gone is fine.
pub fn neighbour_delete(index: u32, ip: Ipv4Addr) -> std::io::Result<()> {
    match ack(
        RouteNetlinkMessage::DelNeighbour(neighbour_msg(index, ip, None)),
        0,
    ) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// The permanent IPv4 neighbour entries of the link `index` (one
/// kernel-filtered dump): address to MAC.
pub fn dump_permanent_neighbours(index: u32) -> std::io::Result<HashMap<Ipv4Addr, [u8; 6]>> {
    let socket = connect()?;
    socket.set_netlink_get_strict_chk(true)?;
    // A neighbour dump filters by attribute (NDA_IFINDEX); its header's
    // ifindex must be zero under strict checking.
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.attributes.push(NeighbourAttribute::IfIndex(index));
    let mut out = HashMap::new();
    for reply in request(&socket, RouteNetlinkMessage::GetNeighbour(msg), 4)? {
        let RouteNetlinkMessage::NewNeighbour(m) = reply else {
            continue;
        };
        if m.header.ifindex != index || m.header.state != NeighbourState::Permanent {
            continue;
        }
        let mut ip = None;
        let mut mac = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => ip = Some(*v),
                NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                    let mut x = [0u8; 6];
                    x.copy_from_slice(b);
                    mac = Some(x);
                }
                _ => {}
            }
        }
        if let (Some(ip), Some(mac)) = (ip, mac) {
            out.insert(ip, mac);
        }
    }
    Ok(out)
}

/// The main table's IPv4 routes with a destination prefix (not the
/// default route): `(output link index, network)`.
pub fn dump_routes() -> std::io::Result<Vec<(Option<u32>, ipnet::Ipv4Net)>> {
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
    let socket = connect()?;
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    let mut out = Vec::new();
    for reply in request(&socket, RouteNetlinkMessage::GetRoute(msg), 5)? {
        let RouteNetlinkMessage::NewRoute(m) = reply else {
            continue;
        };
        let mut table = u32::from(m.header.table);
        let (mut dst, mut oif) = (None, None);
        for a in &m.attributes {
            match a {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let len = m.header.destination_prefix_length;
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) || len == 0 {
            continue;
        }
        if let Some(net) = dst.and_then(|d| ipnet::Ipv4Net::new(d, len).ok()) {
            out.push((oif, net.trunc()));
        }
    }
    Ok(out)
}

fn parse_link(payload: &[u8]) -> Option<Link> {
    use super::nlmsg::attrs;
    const IFF_UP: u32 = 0x1;
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MASTER: u16 = 10;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_IFALIAS: u16 = 20;
    const IFLA_AF_SPEC: u16 = 26;
    const IFLA_GROUP: u16 = 27;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_INFO_DATA: u16 = 2;
    const IFLA_INFO_PORT_KIND: u16 = 4;
    const IFLA_INFO_PORT_DATA: u16 = 5;
    const IFLA_BRPORT_LEARNING: u16 = 8;
    const IFLA_BRPORT_ISOLATED: u16 = 33;
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    const IFLA_INET_CONF: u16 = 1;
    const IFLA_INET6_CONF: u16 = 2;
    // (family, setting, index in the family's devconf array of i32).
    const CONF: [(u16, &str, &str, usize); 4] = [
        (AF_INET, "ipv4", "arp_ignore", 18),
        (AF_INET, "ipv4", "drop_unicast_in_l2_multicast", 29),
        (AF_INET6, "ipv6", "disable_ipv6", 26),
        (AF_INET6, "ipv6", "accept_ra", 3),
    ];
    let u32_of = |v: &[u8]| v.try_into().ok().map(u32::from_ne_bytes);
    // A string attribute, without its NUL.
    let string = |v: &[u8]| String::from_utf8_lossy(super::nlmsg::until_nul(v)).into_owned();
    // ifinfomsg: family, pad, type, index, flags, change.
    let head = payload.get(..16)?;
    let mut l = Link {
        index: u32_of(&head[4..8])?,
        up: u32_of(&head[8..12])? & IFF_UP != 0,
        ..Link::default()
    };
    let mut conf: Vec<(&str, &str, i32)> = Vec::new();
    for (kind, v) in attrs(&payload[16..]) {
        match kind {
            IFLA_IFNAME => l.name = string(v),
            IFLA_MASTER => l.master = u32_of(v),
            IFLA_GROUP => l.link_group = u32_of(v).unwrap_or(0),
            IFLA_IFALIAS if !string(v).is_empty() => l.alias = Some(string(v)),
            IFLA_ADDRESS if v.len() == 6 => l.mac = v.try_into().ok(),
            IFLA_AF_SPEC => {
                for (family, spec) in attrs(v) {
                    let want = match family {
                        AF_INET => IFLA_INET_CONF,
                        AF_INET6 => IFLA_INET6_CONF,
                        _ => continue,
                    };
                    let Some((_, values)) = attrs(spec).find(|&(k, _)| k == want) else {
                        continue;
                    };
                    for &(f, fam, key, i) in &CONF {
                        if let (true, Some(b)) = (f == family, values.get(i * 4..i * 4 + 4)) {
                            let value = i32::from_ne_bytes(b.try_into().expect("4 bytes"));
                            conf.push((fam, key, value));
                        }
                    }
                }
            }
            IFLA_LINKINFO => {
                let info: Vec<(u16, &[u8])> = attrs(v).collect();
                let of = |k: u16| info.iter().find(|&&(kind, _)| kind == k).map(|&(_, v)| v);
                l.kind = of(IFLA_INFO_KIND).map(string);
                if l.kind.as_deref() == Some("tun")
                    && let Some(data) = of(IFLA_INFO_DATA)
                {
                    for (k, v) in attrs(data) {
                        let v = u32_of(v).filter(|&v| v != u32::MAX);
                        match k {
                            IFLA_TUN_OWNER => l.owner = v,
                            IFLA_TUN_GROUP => l.group = v,
                            _ => {}
                        }
                    }
                }
                if of(IFLA_INFO_PORT_KIND).map(string).as_deref() == Some("bridge")
                    && let Some(data) = of(IFLA_INFO_PORT_DATA)
                {
                    for (k, v) in attrs(data) {
                        match (k, v.first()) {
                            (IFLA_BRPORT_ISOLATED, Some(&b)) => l.isolated = Some(b != 0),
                            (IFLA_BRPORT_LEARNING, Some(&b)) => l.learning = Some(b != 0),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // The name comes with the same message, in any order.
    for (family, key, value) in conf {
        l.conf.insert(
            format!("net.{family}.conf.{}.{key}", l.name),
            value.to_string(),
        );
    }
    Some(l)
}
