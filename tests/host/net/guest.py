#!/usr/bin/env python3
"""Stand-in guests for the network tests.

    pump TAP NETNS IFACE  frames between a tenant's real tap (opened here)
                          and the veth end IFACE in network namespace NETNS,
                          exactly what Firecracker does with a tap; the veth
                          end lives in its own namespace so the guest's
                          frames reach the host only through the tap
    serve-tcp ADDR PORT   accept, reply with the peer's address, close
    serve-udp ADDR PORT   answer each datagram with the peer's address
    tcp ADDR PORT [SRC]   connect (from SRC, `ip` or `ip:port`); print the
                          reply; exit 1 on failure
    udp ADDR PORT [SRC]   send one datagram; print the reply; exit 1 on none
    ping ADDR             one ICMP echo; exit 1 on no reply
    garp IFACE MAC IP     send a gratuitous ARP claiming IP for MAC
    tcp6 ADDR%IFACE PORT  IPv6 connect; exit 1 on failure
    imds ADDR [PORT [SRC]]
                          the IMDSv2 flow: PUT a token, GET tenant-id; print it
    token ADDR            PUT a token (port 80); print it
    status ADDR METHOD PATH [NAME:VALUE...]
                          one request to port 80; print its status code
    status-from SRC ADDR METHOD PATH [NAME:VALUE...]
                          the same from local address SRC
    l2-udp IFACE DSTMAC SRC DST PORT [SPORT]
                          one UDP datagram from SRC (any address: spoofing
                          is the point) to DST:PORT in an Ethernet frame to
                          DSTMAC, built by hand; exit 0 if an answer comes
                          back to this guest
    l2-ping IFACE DSTMAC DST
                          the same for an ICMP echo from the guest's address
    l2-ping6 IFACE DSTMAC
                          an ICMPv6 echo to ff02::1 from the guest's
                          link-local address; exit 0 on any answer
    l2-ra IFACE DSTMAC    a router advertisement (default route, prefix
                          2001:db8:66::/64) to ff02::1
    l2-na IFACE DSTMAC    an unsolicited neighbour advertisement
    listen-udp PORT       print the source of the first datagram to PORT;
                          exit 1 on none within 1.5 s
    hold-udp ADDR PORT SPORT
                          a connected UDP socket from SPORT: one exchange,
                          then wait 3 s and print "error N" if an ICMP
                          error reached it, else "clean"
    icmp-unreach VICTIM QSRC QSPORT QDST QDPORT
                          a forged port-unreachable to VICTIM quoting the
                          UDP flow QSRC:QSPORT -> QDST:QDPORT
    count-arp IFACE SECONDS
                          print how many ARP requests IFACE sees

Every wait is bounded (1 s), so a dropped packet is a quick failure.
"""
import fcntl
import os
import select
import socket
import struct
import sys

TIMEOUT = 1.0


def pump(tap, netns, iface):
    tun = os.open("/dev/net/tun", os.O_RDWR)
    # TUNSETIFF, IFF_TAP | IFF_NO_PI
    fcntl.ioctl(tun, 0x400454CA, struct.pack("16sH", tap.encode(), 0x0002 | 0x1000))
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ns = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    if libc.setns(ns, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    raw.bind((iface, 0))
    while True:
        ready, _, _ = select.select([tun, raw], [], [])
        if tun in ready:
            raw.send(os.read(tun, 65536))
        if raw in ready:
            frame, addr = raw.recvfrom(65536)
            if addr[2] != socket.PACKET_OUTGOING:
                os.write(tun, frame)


def serve_tcp(addr, port):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(16)
    while True:
        c, peer = s.accept()
        try:
            c.sendall(peer[0].encode() + b"\n")
        finally:
            c.close()


def serve_udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(peer[0].encode(), peer)


def source(src):
    """SRC as `ip` or `ip:port`."""
    ip, _, port = src.partition(":")
    return (ip, int(port or 0))


def tcp(addr, port, src=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    if src:
        s.bind(source(src))
    s.connect((addr, int(port)))
    print(s.recv(100).decode().strip())


def udp(addr, port, src=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    if src:
        s.bind(source(src))
    s.sendto(b"q", (addr, int(port)))
    print(s.recvfrom(100)[0].decode())


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(TIMEOUT)
    ident = os.getpid() & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"mvm"
    packet = struct.pack("!BBHHH", 8, 0, checksum(body), ident, 1) + b"mvm"
    s.sendto(packet, (addr, 0))
    while True:
        data, peer = s.recvfrom(1024)
        icmp = data[(data[0] & 0x0F) * 4:]
        if peer[0] == addr and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            print("reply from", addr)
            return


def garp(iface, mac, ip):
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    m = bytes.fromhex(mac.replace(":", ""))
    i = socket.inet_aton(ip)
    frame = b"\xff" * 6 + m + b"\x08\x06"
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + m + i + b"\xff" * 6 + i
    for _ in range(3):
        raw.send(frame)


def tcp6(addr, port):
    host, _, scope = addr.partition("%")
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect((host, int(port), 0, socket.if_nametoindex(scope) if scope else 0))
    print(s.recv(100).decode().strip())


def request(addr, port, method, path, headers, src=None):
    """(status, body) of one HTTP/1.1 request."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    if src:
        s.bind(source(src))
    s.connect((addr, int(port)))
    req = f"{method} {path} HTTP/1.1\r\nHost: {addr}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    s.sendall(req.encode())
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


def http(addr, port, method, path, headers, src=None):
    status, body = request(addr, port, method, path, headers, src)
    if status != 200:
        raise OSError(f"{method} {path}: {status} {body.strip()}")
    return body


def imds(addr, port=80, src=None):
    token = http(addr, port, "PUT", "/latest/api/token", [("X-metadata-token-ttl-seconds", "60")], src)
    print(http(addr, port, "GET", "/latest/meta-data/tenant-id", [("X-metadata-token", token)], src))


def token(addr):
    print(http(addr, 80, "PUT", "/latest/api/token", [("X-metadata-token-ttl-seconds", "60")]))


def status(addr, method, path, *headers):
    """The status code of METHOD PATH with HEADERS given as `name:value`."""
    print(request(addr, 80, method, path, [h.split(":", 1) for h in headers])[0])


def status_from(src, addr, method, path, *headers):
    """`status` from the local address SRC."""
    print(request(addr, 80, method, path, [h.split(":", 1) for h in headers], src)[0])


def mac_of(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def l2send(iface, dstmac, ethertype, payload):
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    frame = bytes.fromhex(dstmac.replace(":", "")) + mac_of(iface) + struct.pack("!H", ethertype)
    raw.send(frame + payload)


def ipv4(src, dst, proto, body):
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0x6d76, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    return head + body


def l2_udp(iface, dstmac, src, dst, port, sport=None):
    sport = int(sport or 40000 + (os.getpid() % 20000))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.bind(("0.0.0.0", sport))
    body = b"q"
    udp = struct.pack("!HHHH", sport, int(port), 8 + len(body), 0) + body
    l2send(iface, dstmac, 0x0800, ipv4(src, dst, 17, udp))
    print(s.recvfrom(100)[1][0])


def l2_ping(iface, dstmac, dst):
    src = local_v4(iface)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(TIMEOUT)
    ident = (os.getpid() + 7) & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"mvm"
    icmp = struct.pack("!BBHHH", 8, 0, checksum(body), ident, 1) + b"mvm"
    l2send(iface, dstmac, 0x0800, ipv4(src, dst, 1, icmp))
    while True:
        data, peer = s.recvfrom(1024)
        reply = data[(data[0] & 0x0F) * 4:]
        if reply[0] == 0 and struct.unpack("!H", reply[4:6])[0] == ident:
            print("reply from", peer[0])
            return


def local_v4(iface):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    req = struct.pack("256s", iface.encode())
    return socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, req)[20:24])  # SIOCGIFADDR


def link_local(iface):
    with open("/proc/net/if_inet6") as f:
        for line in f:
            addr, _, _, scope, _, name = line.split()
            if name == iface and scope == "20":
                return bytes.fromhex(addr)
    raise OSError(f"{iface} has no IPv6 link-local address")


ALL_NODES = socket.inet_pton(socket.AF_INET6, "ff02::1")


def ipv6_icmp(src, dst, body):
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", checksum(pseudo + body)) + body[4:]
    return struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + src + dst + body


def l2_ping6(iface, dstmac):
    src = link_local(iface)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.settimeout(TIMEOUT)
    ident = (os.getpid() + 11) & 0xFFFF
    body = struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"mvm"
    l2send(iface, dstmac, 0x86DD, ipv6_icmp(src, ALL_NODES, body))
    while True:
        data, peer = s.recvfrom(1024)
        if data[0] == 129 and struct.unpack("!H", data[4:6])[0] == ident:
            print("reply from", peer[0])
            return


def l2_ra(iface, dstmac):
    src = link_local(iface)
    prefix = socket.inet_pton(socket.AF_INET6, "2001:db8:66::")
    body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    body += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + prefix
    body += struct.pack("!BB", 1, 1) + mac_of(iface)
    for _ in range(3):
        l2send(iface, dstmac, 0x86DD, ipv6_icmp(src, ALL_NODES, body))


def l2_na(iface, dstmac):
    src = link_local(iface)
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, "fe80::66")
    body += struct.pack("!BB", 2, 1) + mac_of(iface)
    for _ in range(3):
        l2send(iface, dstmac, 0x86DD, ipv6_icmp(src, ALL_NODES, body))


def listen_udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.5)
    s.bind(("0.0.0.0", int(port)))
    print(s.recvfrom(100)[1][0], flush=True)


def hold_udp(addr, port, sport):
    import time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.bind(("0.0.0.0", int(sport)))
    s.connect((addr, int(port)))
    s.send(b"q")
    s.recv(100)
    print("ready", flush=True)
    time.sleep(3)
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    print(f"error {err}" if err else "clean", flush=True)


def icmp_unreach(victim, qsrc, qsport, qdst, qdport):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    inner_udp = struct.pack("!HHHH", int(qsport), int(qdport), 9, 0)
    inner = ipv4(qsrc, qdst, 17, inner_udp + b"q")[:28]
    body = struct.pack("!BBHI", 3, 3, 0, 0) + inner
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    for _ in range(3):
        s.sendto(body, (victim, 0))


def count_arp(iface, seconds):
    import time
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    raw.bind((iface, 0))
    raw.settimeout(0.2)
    n, end = 0, time.time() + float(seconds)
    while time.time() < end:
        try:
            frame = raw.recv(100)
        except socket.timeout:
            continue
        if struct.unpack("!H", frame[20:22])[0] == 1:
            n += 1
    print(n, flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {
        "pump": pump,
        "serve-tcp": serve_tcp,
        "serve-udp": serve_udp,
        "tcp": tcp,
        "udp": udp,
        "ping": ping,
        "garp": garp,
        "tcp6": tcp6,
        "imds": imds,
        "token": token,
        "status": status,
        "status-from": status_from,
        "l2-udp": l2_udp,
        "l2-ping": l2_ping,
        "l2-ping6": l2_ping6,
        "l2-ra": l2_ra,
        "l2-na": l2_na,
        "listen-udp": listen_udp,
        "hold-udp": hold_udp,
        "icmp-unreach": icmp_unreach,
        "count-arp": count_arp,
    }[cmd]
    try:
        fn(*args)
    except (OSError, socket.timeout) as e:
        print(f"{cmd} {' '.join(args)}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
