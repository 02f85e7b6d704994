#!/bin/bash
# Benchmark: the metadata service as a guest sees it, as root in throwaway
# network, mount and pid namespaces, release build. One tenant behind a
# real tap (frames carried by tests/host/net/guest.py's pump, as
# Firecracker would), the bridge, the nft ruleset and the service all
# started by `mvm agent reconcile`. Measures, from the guest:
#   - the IMDSv2 flow (PUT a token, GET the identity document) per second,
#     one connection per request, as a guest's client does;
#   - the latency of one GET through 169.254.169.254:80 (nft redirect)
#     and of the same GET straight to the listener (a bench-only nft rule
#     lets it through): the difference is what the redirect adds.
# The tenant's rate limit is raised for the run (node.toml
# metadata.rate_per_sec) so it measures the service, not the limit.
#   sudo benches/metadata.sh [SECONDS] [SAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5} samples=${2:-3000}
if [ "${MVM_BENCH_INNER:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, taps, nft)" >&2; exit 1; }
  cargo build --release -q
  exec env MVM_BENCH_INNER=1 unshare --net --mount --pid --fork --kill-child --mount-proc -- "$0" "$secs" "$samples"
fi
mount --make-rprivate /
mkdir -p /run/netns
mount -t tmpfs tmpfs /run/netns
ip link set lo up
work=$(mktemp -d)
trap 'chattr -R -a "$work"; rm -rf "$work"' EXIT
cat > "$work/node.toml" <<TOML
state_dir = "$work/state"
[metadata]
address = "169.254.169.254"
port = 8775
rate_per_sec = 100000
burst = 100000
TOML
cat > "$work/d.json" <<JSON
{"tenants": [{"tenant_id": "ma", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "ip": "10.200.0.2", "mac": "02:00:0a:c8:00:02", "metadata": true}]}
JSON
mvm() { ./target/release/mvm --config "$work/node.toml" "$@"; }
mvm agent reconcile --desired "$work/d.json" --target 'tenant.*.tap' --target 'tenant.*.nft' --target node.metadata > "$work/out" 2>&1 || { cat "$work/out"; exit 1; }

# The guest: a veth end in its own namespace, the other end in a third,
# its frames pumped to the tap (as tests/host/net/isolation.sh does).
ip netns add g-ma
ip netns add p-ma
ip -n p-ma link add vh-ma type veth peer name eth0 netns g-ma
ip -n p-ma link set vh-ma up
ip -n g-ma link set lo up
ip -n g-ma link set eth0 address 02:00:0a:c8:00:02
ip -n g-ma addr add 10.200.0.2/24 dev eth0
# Frames pumped raw into a tap must carry their checksums.
ip netns exec g-ma ethtool -K eth0 tx off > /dev/null
ip -n g-ma link set eth0 up
ip -n g-ma route add default via 10.200.0.1
python3 tests/host/net/guest.py pump tap-ma p-ma vh-ma &
pump=$!
# Bench only: the listener straight from the guest, to compare with.
nft insert rule inet mvm tenant_to_host tcp dport 8775 accept

ip netns exec g-ma python3 - "$secs" "$samples" <<'PY'
import socket, sys, time

secs, samples = float(sys.argv[1]), int(sys.argv[2])


def request(addr, port, method, path, headers):
    s = socket.create_connection((addr, port), timeout=2)
    s.sendall((f"{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode())
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if status != 200:
        raise SystemExit(f"{method} {path}: {status} {body!r}")
    return body.decode()


def token(addr, port):
    return request(addr, port, "PUT", "/latest/api/token", [("X-metadata-token-ttl-seconds", "300")])


for _ in range(50):
    try:
        token("169.254.169.254", 80)
        break
    except OSError:
        time.sleep(0.1)

# 1. The IMDSv2 flow, back to back.
flows, end = 0, time.perf_counter() + secs
while time.perf_counter() < end:
    tok = token("169.254.169.254", 80)
    doc = request("169.254.169.254", 80, "GET", "/latest/dynamic/instance-identity/document", [("X-metadata-token", tok)])
    assert '"tenantId":"ma"' in doc, doc
    flows += 1
print(f"IMDSv2 flow (PUT token + GET identity document) from one guest: "
      f"{flows / secs:.0f} flows/s = {2 * flows / secs:.0f} requests/s over {secs:.0f} s")

# 2. One GET: redirected vs straight to the listener, interleaved.
tok = token("169.254.169.254", 80)
paths = {"redirect (169.254.169.254:80)": ("169.254.169.254", 80), "direct (10.200.0.1:8775)": ("10.200.0.1", 8775)}
lat = {k: [] for k in paths}
for _ in range(samples):
    for k, (addr, port) in paths.items():
        t = time.perf_counter()
        request(addr, port, "GET", "/latest/meta-data/tenant-id", [("X-metadata-token", tok)])
        lat[k].append((time.perf_counter() - t) * 1e6)
pct = lambda v, p: sorted(v)[int(len(v) * p / 100)]
for k, v in lat.items():
    print(f"GET tenant-id {k}: p50 {pct(v, 50):.0f} us, p99 {pct(v, 99):.0f} us ({samples} samples)")
r, d = lat["redirect (169.254.169.254:80)"], lat["direct (10.200.0.1:8775)"]
print(f"added by the redirect: p50 {pct(r, 50) - pct(d, 50):+.0f} us, p99 {pct(r, 99) - pct(d, 99):+.0f} us")
PY
# Prune: the service stops with the last metadata tenant.
kill "$pump"
echo '{"tenants": []}' > "$work/none.json"
mvm agent reconcile --desired "$work/none.json" --prune --target 'tenant.*.tap' --target 'tenant.*.nft' --target node.metadata > "$work/out" 2>&1 || { cat "$work/out"; exit 1; }
