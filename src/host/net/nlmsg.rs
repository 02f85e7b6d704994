//! Raw netlink messages for what mvm reads without a library's message
//! types (links, FDB entries, nftables elements and their batch's
//! acknowledgements, listening sockets): walk a buffer's messages and
//! attributes, read an error's errno, and run one dump to its end.

use netlink_sys::Socket;

pub const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_DUMP: u16 = 0x300;

/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER`.
const ATTR_FLAGS: u16 = 0xc000;

/// A socket of `protocol`, bound and connected to the kernel, whose
/// receives give up after 5 s.
pub fn socket(protocol: isize) -> std::io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    socket.set_non_blocking(false)?;
    let timeout = nix::sys::time::TimeVal::new(5, 0);
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)?;
    Ok(socket)
}

/// Sends `request` (one message, sequence number `seq`) and hands each
/// answer's payload to `each` until the dump is done. The kernel's
/// refusal is `Err` with its errno (`raw_os_error`).
pub fn dump(
    socket: &Socket,
    request: &[u8],
    seq: u32,
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    socket.send(request, 0)?;
    // The kernel fills a dump's messages up to 32 KiB at most.
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        for (kind, msg_seq, payload) in messages(&rx[..n]) {
            if msg_seq != seq {
                continue;
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => return status(payload),
                _ => each(payload),
            }
        }
    }
}

/// What an `NLMSG_ERROR` message's payload says: an acknowledgement
/// (code 0) or the kernel's refusal, with its errno (`raw_os_error`).
pub fn status(payload: &[u8]) -> std::io::Result<()> {
    let code = payload
        .get(..4)
        .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
    match code {
        0 => Ok(()),
        c => Err(std::io::Error::from_raw_os_error(-c)),
    }
}

/// The bytes of a NUL-padded string attribute before its first NUL.
pub fn until_nul(v: &[u8]) -> &[u8] {
    &v[..v.iter().position(|&c| c == 0).unwrap_or(v.len())]
}

/// Appends a netlink header for a message of `body_len` bytes after it.
pub fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, body_len: usize) {
    buf.extend_from_slice(&((16 + body_len) as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
}

/// The netlink messages in `buf`: type, sequence number, payload.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let head = buf.get(off..off + 16)?;
        let len = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(head[4..6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(head[8..12].try_into().expect("4 bytes"));
        let payload = buf.get(off + 16..off + len.max(16))?;
        off += (len.max(16) + 3) & !3;
        Some((kind, seq, payload))
    })
}

/// The netlink attributes in `buf`: kind (without the nested and byte
/// order flags), value.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let head = buf.get(off..off + 4)?;
        let len = u16::from_ne_bytes(head[..2].try_into().expect("2 bytes")) as usize;
        let kind = u16::from_ne_bytes(head[2..4].try_into().expect("2 bytes")) & !ATTR_FLAGS;
        let value = buf.get(off + 4..off + len.max(4))?;
        off += (len.max(4) + 3) & !3;
        Some((kind, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_attributes_are_walked_to_their_ends() {
        // Two attributes: a 1-byte value (padded to 4), a nested 4-byte one.
        let body = [5, 0, 1, 0, 0xaa, 0, 0, 0, 8, 0, 2, 0x80, 1, 2, 3, 4];
        let mut buf = Vec::new();
        header(&mut buf, 20, NLM_F_REQUEST, 7, body.len());
        buf.extend_from_slice(&body);
        header(&mut buf, 3, 0, 8, 0);
        // A truncated header at the end is not a message.
        buf.extend_from_slice(&[1, 2, 3]);
        let msgs: Vec<_> = messages(&buf).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].0, msgs[0].1, msgs[0].2), (20, 7, &body[..]));
        assert_eq!((msgs[1].0, msgs[1].1, msgs[1].2.len()), (3, 8, 0));
        let a: Vec<_> = attrs(&body).collect();
        assert_eq!(a, [(1, &[0xaa][..]), (2, &[1, 2, 3, 4][..])]);
        // The nested attribute's length says 8 but only 4 bytes of it are
        // here: it is left out, not read past the end.
        let a: Vec<_> = attrs(&body[..12]).collect();
        assert_eq!(a, [(1, &[0xaa][..])]);
        // A zero length still moves on.
        assert_eq!(attrs(&[0, 0, 9, 0]).count(), 1);
    }
}
