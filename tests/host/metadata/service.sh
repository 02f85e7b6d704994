#!/bin/bash
# The metadata service on a real kernel, in the throwaway network and mount
# namespaces tests/host_metadata.rs runs it in. The bridge's per-tap mark
# is stood in for by SO_MARK on the client socket (what the accepted
# socket sees with net.ipv4.tcp_fwmark_accept=1 either way), the tenants'
# addresses by addresses on the loopback link. Prints "ok: ..." per check.
# Usage: metadata.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"
ip link set lo up
for a in 10.200.0.1/24 10.200.0.2/32 10.200.0.3/32 10.200.0.4/32; do ip addr add "$a" dev lo; done
echo 1 > /proc/sys/net/ipv4/tcp_fwmark_accept
mkdir -p "$state/tenants/ma" "$state/tenants/mb" "$state/tenants/mc"
echo 0123456789abcdef0123456789abcdef > "$state/node-id"
for t in ma:100000:2 mb:100001:3 mc:100002:4; do
  id=${t%%:*} rest=${t#*:} uid=${rest%:*} n=${rest#*:}
  printf '{"format_version": 1, "tenant_id": "%s", "uid": %d, "gid": %d, "ip": "10.200.0.%d", "mac": "02:00:0a:c8:00:0%d"}\n' "$id" "$uid" "$uid" "$n" "$n" > "$state/tenants/$id/tenant.json"
done
cat > "$state/desired.json" <<JSON
{"tenants": [
 {"tenant_id": "ma", "metadata": true}, {"tenant_id": "mb", "metadata": true}, {"tenant_id": "mc", "metadata": false}
]}
JSON
# The common 1024-fd limit, which ~1000 held connections once exhausted.
(ulimit -n 1024; exec "$mvm" --config "$work/node.toml" metadata serve > "$work/serve.log" 2>&1) &
serve=$!
trap 'kill $serve 2>/dev/null || true; chattr -R -a "$work" 2>/dev/null || true' EXIT
client() {
  python3 - "$@" <<'PY'
import socket, sys
mark, src, method, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
headers = sys.argv[5:]
s = socket.socket()
s.settimeout(2)
if mark:
    s.setsockopt(socket.SOL_SOCKET, 36, mark)  # SO_MARK
s.bind((src, 0))
s.connect(("10.200.0.1", 8775))
req = f"{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
s.sendall(req.encode())
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
head, _, body = data.decode().partition("\r\n\r\n")
print(head.split(" ")[1], body)
PY
}
for _ in $(seq 50); do client 0 10.200.0.1 GET / > /dev/null 2>&1 && break; sleep 0.1; done
status() { client "$@" | cut -d' ' -f1; }

token=$(client 100000 10.200.0.2 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60" | cut -d' ' -f2)
[ -n "$token" ] || fail "no token for ma"
[ "$(client 100000 10.200.0.2 GET /latest/meta-data/tenant-id "X-metadata-token: $token")" = "200 ma" ] || fail "ma cannot read its tenant id"
client 100000 10.200.0.2 GET /latest/dynamic/instance-identity/document "X-metadata-token: $token" | matches '"nodeId":"0123456789abcdef0123456789abcdef"' || fail "identity document"
echo "ok: a metadata tenant gets a token and reads its own identity"

[ "$(status 100001 10.200.0.3 GET /latest/meta-data/tenant-id "X-metadata-token: $token")" = 401 ] || fail "mb replayed ma's token"
[ "$(status 100002 10.200.0.4 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60")" = 403 ] || fail "mc (metadata off) was answered"
[ "$(status 0 10.200.0.2 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60")" = 403 ] || fail "an unmarked (direct) connection was answered"
[ "$(status 100000 10.200.0.3 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60")" = 403 ] || fail "ma's mark from mb's address was answered"
echo "ok: another tenant's token, metadata off, no mark and a mark from the wrong address are refused"

[ "$(status 100000 10.200.0.2 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60" "X-Forwarded-For: 1.2.3.4")" = 400 ] || fail "X-Forwarded-For accepted"
[ "$(status 100000 10.200.0.2 PUT /latest/api/token "X-metadata-token-ttl-seconds: 0")" = 400 ] || fail "TTL 0 accepted"
[ "$(status 100000 10.200.0.2 DELETE /latest/api/token)" = 405 ] || fail "DELETE accepted"
[ "$(status 100000 10.200.0.2 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60" "Transfer-Encoding: chunked")" = 413 ] || fail "a chunked body accepted"
[ "$(status 100000 10.200.0.2 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60" "Content-Length: 5")" = 413 ] || fail "a body accepted"
[ "$(status 100000 10.200.0.2 GET /latest/meta-data/mac "X-metadata-token: $token" "X-Pad: $(printf 'a%.0s' $(seq 9000))")" = 431 ] || fail "a 9 KB head accepted"
[ "$(status 100000 10.200.0.2 GET /latest/meta-data/mac "X-metadata-token: $token" "X-metadata-token: $token")" = 400 ] || fail "a repeated token header accepted"
[ "$(status 100000 10.200.0.2 GET /latest/meta-data/nope "X-metadata-token: $token")" = 404 ] || fail "unknown path"
codes=$(python3 - "$token" <<'PY'
import socket, sys, collections
seen = collections.Counter()
for _ in range(300):
    s = socket.socket(); s.settimeout(2)
    s.setsockopt(socket.SOL_SOCKET, 36, 100000)
    s.bind(("10.200.0.2", 0)); s.connect(("10.200.0.1", 8775))
    s.sendall(f"GET /latest/meta-data/mac HTTP/1.1\r\nX-metadata-token: {sys.argv[1]}\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    seen[data.split(b" ")[1].decode()] += 1
print(dict(seen))
PY
)
grep -q "'429'" <<< "$codes" || fail "no rate limit: $codes"
echo "ok: X-Forwarded-For, bad TTLs and methods refused; unknown paths 404; a tenant is rate-limited"
grep -q "$token" "$work/serve.log" && fail "the service logged a token"
ss -ltn | matches "169.254.169.254" && fail "169.254.169.254 is bound on the host"
echo "ok: no token in the service's output; 169.254.169.254 never bound"

# hold N MARK SRC SECONDS: N connections from SRC with MARK held open for
# SECONDS; prints how many the service left open.
hold() {
  python3 - "$@" <<'PY'
import resource, socket, sys, time
n, mark, src, secs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 64)), hard))
held = []
for _ in range(n):
    s = socket.socket(); s.settimeout(0.5)
    s.setsockopt(socket.SOL_SOCKET, 36, mark)
    s.bind((src, 0))
    try:
        s.connect(("10.200.0.1", 8775)); held.append(s)
    except OSError:
        s.close()
print("ready", flush=True)
time.sleep(secs)
still = 0
for s in held:
    s.setblocking(False)
    try:
        still += s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        still += 1
    except OSError:
        pass
print(f"open={still}", flush=True)
PY
}
# 1,100 connections held by one guest: the service keeps at most 16 of
# them (counted as the service's own open fds: a connection the client
# thinks open may still wait in the kernel's accept queue), never runs
# out of fds, and answers another tenant meanwhile.
fds() { ls "/proc/$serve/fd" | wc -l; }
base=$(fds)
hold 1100 100000 10.200.0.2 4 > "$work/held" 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q ready "$work/held" && break; sleep 0.1; done
[ "$(status 100001 10.200.0.3 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60")" = 200 ] || { cat "$work/serve.log"; fail "mb was not answered while ma held 1,100 connections"; }
sleep 1
kept=$(( $(fds) - base ))
wait "$holder"
kill -0 "$serve" 2>/dev/null || { tail "$work/serve.log"; fail "the service died of held connections"; }
[ "$kept" -le 16 ] || fail "the service kept $kept of ma's connections open (at most 16)"
[ "$(status 100000 10.200.0.2 PUT /latest/api/token "X-metadata-token-ttl-seconds: 60")" = 200 ] || fail "ma is not answered once it let go"
echo "ok: 1,100 held connections from one guest: at most 16 kept, the service survives and answers the others"

# A flood of refused requests (bodies: 413) costs a peer its rate limit
# and logs at most 20 lines per 10 s, plus one saying the rest are not.
before=$(grep -c " 10.200.0.2 mark=" "$work/serve.log" || true)
flood=$(python3 <<'PY'
import socket, collections
seen = collections.Counter()
for _ in range(2000):
    s = socket.socket(); s.settimeout(2)
    s.setsockopt(socket.SOL_SOCKET, 36, 100000)
    s.bind(("10.200.0.2", 0)); s.connect(("10.200.0.1", 8775))
    s.sendall(b"PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\nContent-Length: 5\r\n\r\nhello")
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except OSError:
        pass
    seen[data.split(b" ")[1].decode() if data else "none"] += 1
print(dict(seen))
PY
)
grep -q "'429'" <<< "$flood" || fail "refused requests bypass the rate limit: $flood"
after=$(grep -c " 10.200.0.2 mark=" "$work/serve.log" || true)
[ $((after - before)) -le 44 ] || fail "2,000 refused requests made $((after - before)) log lines"
grep -q "the rest of this window is not logged" "$work/serve.log" || fail "the log cap is not said"
echo "ok: refused requests are rate-limited before they are read; a peer's log lines are capped"

# The log never grows past its cap: emptied, with a line saying so.
kill "$serve"; wait "$serve" 2>/dev/null || true
"$mvm" --config "$work/node.toml" metadata serve --log-max-bytes 4096 > "$work/serve2.log" 2>&1 &
serve=$!
for _ in $(seq 50); do client 0 10.200.0.1 GET / > /dev/null 2>&1 && break; sleep 0.1; done
for src in 100000:10.200.0.2 100001:10.200.0.3 100002:10.200.0.4; do
  for _ in $(seq 25); do status "${src%%:*}" "${src#*:}" PUT /latest/api/token > /dev/null || true; done
done
size=$(stat -c %s "$work/serve2.log")
[ "$size" -le 4096 ] || fail "the log is $size bytes, over its 4096-byte cap"
grep -q "reached its cap of 4096 bytes and was emptied" "$work/serve2.log" || { cat "$work/serve2.log"; fail "the emptying is not said"; }
echo "ok: the log stays under its size cap"
