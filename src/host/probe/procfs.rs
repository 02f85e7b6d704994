//! Reading /proc: Firecracker processes (pid, start time, tenant id) in one
//! scan, and listening TCP sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
    /// Field 3 is `Z`: exited, not yet reaped.
    pub zombie: bool,
}

/// Parses `/proc/<pid>/stat`. The comm field may itself contain spaces and
/// parentheses, so it is taken between the first '(' and the last ')'.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    // Fields after the comm start at field 3 (state).
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let start_time = rest.get(22 - 3)?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        start_time,
        zombie: rest.first() == Some(&"Z"),
    })
}

/// The value after `--id` in a NUL-separated command line.
pub fn id_arg(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let i = args.iter().position(|a| *a == b"--id")?;
    args.get(i + 1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
}

/// Processes whose comm is `comm` (truncated to the kernel's 15 bytes), with
/// their `--id` argument.
pub fn scan(proc_root: &Path, comm: &str) -> std::io::Result<Vec<(ProcStat, Option<String>)>> {
    let want: String = comm.chars().take(15).collect();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Processes may exit between readdir and read: skip them.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(stat) = parse_stat(&stat) else {
            continue;
        };
        // A zombie is a VM that has exited (its parent, init or a
        // sandbox's, has not reaped it yet).
        if stat.comm != want || stat.zombie {
            continue;
        }
        let id = std::fs::read(entry.path().join("cmdline"))
            .ok()
            .and_then(|c| id_arg(&c));
        out.push((stat, id));
    }
    Ok(out)
}

/// The listening sockets in `/proc/net/tcp` or `/proc/net/tcp6` text.
/// Lines that do not parse are skipped.
pub fn tcp_listeners(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[3] != "0A" {
            continue;
        }
        let Some((addr, p)) = f[1].split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(p, 16) else {
            continue;
        };
        // The kernel prints the network-order address as native u32 words.
        let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
            .map(|i| {
                addr.get(i * 8..i * 8 + 8)
                    .and_then(|w| u32::from_str_radix(w, 16).ok())
                    .map(u32::to_ne_bytes)
            })
            .collect();
        let ip = match (addr.len(), words) {
            (8, Some(w)) => IpAddr::V4(Ipv4Addr::from(w[0])),
            (32, Some(w)) => {
                let bytes: [u8; 16] = w.concat().try_into().expect("4 words of 4 bytes");
                IpAddr::V6(Ipv6Addr::from(bytes))
            }
            _ => continue,
        };
        out.push(SocketAddr::new(ip, port));
    }
    out
}

/// Of `listeners`, the one that holds `want` — at that address, at the
/// same address v4-mapped, or at a wildcard on its port — if any.
pub fn holder(listeners: &[SocketAddr], want: SocketAddr) -> Option<SocketAddr> {
    let same = |a: &SocketAddr| match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4) == Some(want.ip()),
        ip => ip == want.ip(),
    };
    let on_port = || listeners.iter().filter(|a| a.port() == want.port());
    on_port()
        .find(|a| same(a))
        .or_else(|| on_port().find(|a| a.ip().is_unspecified()))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let s = "4242 (fire cracker) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 100";
        let p = parse_stat(s).unwrap();
        assert_eq!(p.pid, 4242);
        assert_eq!(p.comm, "fire cracker");
        assert_eq!(p.start_time, 987654);
    }

    #[test]
    fn id_from_cmdline() {
        assert_eq!(
            id_arg(b"/firecracker\0--id\0acme\0--start-time-us\x001\0"),
            Some("acme".into())
        );
        assert_eq!(id_arg(b"/firecracker\0"), None);
    }

    #[test]
    fn listener() {
        let t = "  sl  local_address rem_address   st\n   0: 0100C80A:2247 00000000:0000 0A 0\n   1: 0100007F:0050 00000000:0000 0A 0\n   2: garbage\n   3: 0100007F:2247 00000000:0000 01 0\n";
        let l = tcp_listeners(t);
        assert_eq!(
            l,
            [
                "10.200.0.1:8775".parse().unwrap(),
                "127.0.0.1:80".parse().unwrap()
            ]
        );
        let want: SocketAddr = "10.200.0.1:8775".parse().unwrap();
        assert_eq!(holder(&l, want), Some(want));
        assert_eq!(holder(&l, "10.200.0.1:9999".parse().unwrap()), None);
        // Another address on the port does not hold it; a wildcard does.
        let other = tcp_listeners("h\n 0: 0100007F:2247 00000000:0000 0A 0\n");
        assert_eq!(holder(&other, want), None);
        let v6 = "h\n 0: 00000000000000000000000000000000:2247 00000000000000000000000000000000:0000 0A 0\n 1: 0000000000000000FFFF00000100C80A:2247 00000000000000000000000000000000:0000 0A 0\n";
        let l6 = tcp_listeners(v6);
        assert_eq!(l6[0], "[::]:8775".parse().unwrap());
        assert_eq!(l6[1], "[::ffff:10.200.0.1]:8775".parse().unwrap());
        assert_eq!(holder(&l6, want), Some(l6[1]));
        assert_eq!(holder(&l6[..1], want), Some(l6[0]));
    }
}
