//! Listening TCP sockets from the kernel's socket diagnostics (`sock_diag`
//! netlink), asked for listeners only. Reading `/proc/net/tcp` instead
//! walks the whole established-connection hash table, which the kernel
//! sizes by the host's memory and shares between namespaces: 15 ms on a
//! 24 GiB machine with no connection at all, on every probe.

use super::nlmsg::{NLM_F_DUMP, NLM_F_REQUEST, dump, header};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN: u32 = 10;

/// Every listening TCP socket of this network namespace, IPv4 and IPv6
/// (a dual-stack wildcard is an IPv6 one, as in `/proc/net/tcp6`).
pub fn tcp_listeners() -> std::io::Result<Vec<SocketAddr>> {
    let socket = super::nlmsg::socket(netlink_sys::protocols::NETLINK_SOCK_DIAG)?;
    let mut out = Vec::new();
    for (seq, family) in [(1, nix::libc::AF_INET), (2, nix::libc::AF_INET6)] {
        let req = request(family as u8, seq);
        dump(&socket, &req, seq, |msg| out.extend(listener(msg)))?;
    }
    Ok(out)
}

/// A `SOCK_DIAG_BY_FAMILY` dump request (`inet_diag_req_v2`) for `family`'s
/// TCP sockets in the listening state.
fn request(family: u8, seq: u32) -> Vec<u8> {
    let mut body = vec![family, nix::libc::IPPROTO_TCP as u8, 0, 0];
    body.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    body.resize(56, 0); // inet_diag_sockid: any socket
    let mut req = Vec::new();
    header(
        &mut req,
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        body.len(),
    );
    req.extend_from_slice(&body);
    req
}

/// The local address of one answer (`inet_diag_msg`: family, state, …,
/// then the socket id: source port and address in network order).
fn listener(msg: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes(msg.get(4..6)?.try_into().ok()?);
    let ip = match (i32::from(*msg.first()?), u32::from(*msg.get(1)?)) {
        (_, state) if state != TCP_LISTEN => return None,
        (nix::libc::AF_INET, _) => {
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(msg.get(8..12)?).ok()?))
        }
        (nix::libc::AF_INET6, _) => {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(msg.get(8..24)?).ok()?))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_read_from_its_diag_message() {
        // inet_diag_msg of 10.200.0.1:80 listening, as the kernel sends it.
        let mut m = vec![nix::libc::AF_INET as u8, 10, 0, 0, 0, 80, 0, 0];
        m.extend_from_slice(&[10, 200, 0, 1]);
        m.resize(72, 0);
        assert_eq!(listener(&m), Some("10.200.0.1:80".parse().unwrap()));
        let mut v6 = vec![nix::libc::AF_INET6 as u8, 10, 0, 0, 0x1f, 0x90, 0, 0];
        v6.resize(72, 0);
        assert_eq!(listener(&v6), Some("[::]:8080".parse().unwrap()));
        // Not listening, or cut short: nothing.
        m[1] = 1;
        assert_eq!(listener(&m), None);
        assert_eq!(listener(&v6[..20]), None);
        // The request asks for TCP listeners of one family, any socket.
        let r = request(nix::libc::AF_INET6 as u8, 2);
        assert_eq!(r.len(), 16 + 56);
        assert_eq!(&r[16..20], &[nix::libc::AF_INET6 as u8, 6, 0, 0]);
        assert_eq!(r[20..24], (1u32 << 10).to_ne_bytes());
    }
}
