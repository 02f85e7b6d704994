#!/bin/bash
# Tenant networking on a real kernel, inside the throwaway network and
# mount namespaces tests/host_net.rs runs it in: reconcile builds the
# bridge, taps and rules; stand-in guests — a network namespace per tenant
# whose traffic goes through the tenant's real tap, pumped by guest.py
# as Firecracker would — prove each flow of the policy, allowed and
# denied; hand-made drift is planned and repaired; prune removes it all; a
# foreign nft table and a foreign bridge port survive every run. Prints
# "ok: ..." per check group; exits non-zero on the first failure.
# Usage: net.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"
here=$(cd "$(dirname "$0")" && pwd)
g() { python3 "$here/guest.py" "$@"; }
source "$here/../lib/guests.sh"
net=(--target 'tenant.*.tap' --target 'tenant.*.nft' --target node.metadata)

cat > "$work/d.json" <<JSON
{"tenants": [
 {"tenant_id": "na", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "ip": "10.200.0.2", "mac": "02:00:0a:c8:00:02", "metadata": true},
 {"tenant_id": "nb", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "ip": "10.200.0.3", "mac": "02:00:0a:c8:00:03", "ssh_from_gateway": true, "metadata": true},
 {"tenant_id": "nc", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "ip": "10.200.0.4", "mac": "02:00:0a:c8:00:04"}
]}
JSON
echo '{"tenants": []}' > "$work/none.json"

# Someone else's nftables table: mvm must never touch it.
nft add table inet foreign
nft add chain inet foreign keep
nft add rule inet foreign keep counter comment '"not mvm"'
foreign=$(nft list table inet foreign)

# 1. From nothing, then nothing to do.
m agent reconcile --desired "$work/d.json" "${net[@]}" > "$work/out1" 2>&1 || { cat "$work/out1"; fail "first reconcile"; }
grep -q "Apply complete! Resources: 12 added" "$work/out1" || { cat "$work/out1"; fail "first summary"; }
m agent reconcile --desired "$work/d.json" "${net[@]}" > "$work/out2" 2>&1
grep -q "No changes." "$work/out2" || { cat "$work/out2"; fail "second reconcile was not a no-op"; }
for t in na nb nc; do
  j=$(bridge -j -d link show dev "tap-$t")
  grep -q '"isolated":true' <<< "$j" || fail "tap-$t is not isolated: $j"
  grep -q '"learning":false' <<< "$j" || fail "tap-$t learns: $j"
  grep -q '"master":"mvmbr0"' <<< "$j" || fail "tap-$t is not on mvmbr0: $j"
  uid=$(grep -o '"uid": [0-9]*' "$state/tenants/$t/tenant.json" | grep -o '[0-9]*')
  [ "$(cat "/sys/class/net/tap-$t/owner")" = "$uid" ] || fail "tap-$t is not owned by $uid"
  [ "$(cat "/sys/class/net/tap-$t/group")" = "$uid" ] || fail "tap-$t group is not $uid"
done
bridge fdb show dev tap-na | matches "02:00:0a:c8:00:02 master mvmbr0 static" || { bridge fdb show; cat "$work/out1"; fail "no static FDB entry for na"; }
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || fail "forwarding is off"
[ "$(cat /proc/sys/net/ipv4/conf/mvmbr0/send_redirects)" = 0 ] || fail "redirects on the bridge"
[ "$(nft list table inet foreign)" = "$foreign" ] || fail "the foreign table changed"
m net verify > "$work/verify1" || { cat "$work/verify1"; fail "net verify fails right after reconcile"; }
grep -q "against $state/desired.json" "$work/verify1" || { cat "$work/verify1"; fail "verify does not default to the applied desired state"; }
echo "ok: reconcile built the bridge, isolated taps with static FDB entries and the rules; second run no-op; net verify passes"

# 2. Stand-in guests behind the real taps.
for t in na:2 nb:3 nc:4; do
  id=${t%:*} n=${t#*:}
  stand_in_guest "$id" "$n"
  bg ip netns exec "g-$id" python3 "$here/guest.py" serve-tcp 0.0.0.0 22
  bg ip netns exec "g-$id" python3 "$here/guest.py" serve-udp 0.0.0.0 9999
done
# "Outside" (a public address, egress allowed) and a LAN (in egress_deny).
for side in out:198.51.100 lan:192.168.50; do
  ns=${side%:*} p=${side#*:}
  ip netns add "$ns"
  ip link add "${ns}0" type veth peer name eth0 netns "$ns"
  ip addr add "$p.1/24" dev "${ns}0"
  ip link set "${ns}0" up
  ip -n "$ns" addr add "$p.2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add 10.200.0.0/24 via "$p.1"
  bg ip netns exec "$ns" python3 "$here/guest.py" serve-tcp 0.0.0.0 8080
done
# The host: DNS on the gateway, another service, the metadata listener,
# an IPv6 listener.
bg g serve-udp 10.200.0.1 53
bg g serve-tcp 0.0.0.0 8080
bg g serve-tcp :: 5555
bg g serve-udp 10.200.0.1 9998
guest() { ip netns exec "g-$1" python3 "$here/guest.py" "${@:2}"; }
ok() { "$@" > /dev/null 2>&1 || fail "should be allowed: $*"; }
no() { ! "$@" > /dev/null 2>&1 || fail "should be denied: $*"; }
for _ in $(seq 50); do guest na ping 10.200.0.1 > /dev/null 2>&1 && break; sleep 0.1; done

ok guest na ping 10.200.0.1
ok guest na udp 10.200.0.1 53
no guest na tcp 10.200.0.1 8080
no guest na tcp 192.168.50.1 8080
echo "ok: a tenant reaches gateway DNS and ping, no other host port or address"

[ "$(guest na tcp 198.51.100.2 8080)" = 198.51.100.1 ] || fail "egress is not masqueraded"
no guest na tcp 192.168.50.2 8080
no ip netns exec out python3 "$here/guest.py" tcp 10.200.0.3 22
echo "ok: egress masqueraded, egress_deny refused, nothing inbound from outside"

for probe in "tcp 10.200.0.3 22" "udp 10.200.0.3 9999" "ping 10.200.0.3"; do
  # shellcheck disable=SC2086
  no guest na $probe
done
ip -n g-na route add 10.200.0.3/32 via 10.200.0.1
for probe in "tcp 10.200.0.3 22" "udp 10.200.0.3 9999" "ping 10.200.0.3"; do
  # shellcheck disable=SC2086
  no guest na $probe
done
ip -n g-na route del 10.200.0.3/32 via 10.200.0.1
echo "ok: tenant to tenant denied, directly and through the gateway"

# The real metadata service, started by reconcile (node.metadata) with
# the rest of the network. Killed, and its port then held by something
# else (a dual-stack wildcard, seen only in /proc/net/tcp6): the restart
# is blocked, named, and the other process left alone.
svc=$(grep -o '"pid": [0-9]*' "$state/metadata.json" | grep -o '[0-9]*')
kill -9 "$svc"
# Gone (not a zombie still holding its port) before the port is taken;
# waits are polled, never a fixed sleep, so a loaded machine is no race.
for _ in $(seq 100); do [ -z "$(ps -o stat= -p "$svc" | grep -v Z)" ] && ! ss -ltn | matches ":8775 " && break; sleep 0.05; done
python3 -c 'import socket, time; s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); s.bind(("::", 8775)); s.listen(); time.sleep(60)' &
squatter=$!
for _ in $(seq 100); do ss -ltn | matches ":8775 " && break; sleep 0.05; done
ss -ltnp | matches "python3.*pid=$squatter," || { ss -ltnp; fail "the squatter could not take the port"; }
m agent reconcile --desired "$work/d.json" "${net[@]}" --target node.metadata > "$work/outsq" 2>&1 && { cat "$work/outsq"; fail "the service started on a taken port"; }
grep -q "something other than the service mvm started listens at \[::\]:8775" "$work/outsq" || { cat "$work/outsq"; fail "a taken port is not named"; }
kill -0 "$squatter" || fail "mvm killed a process it did not start"
kill "$squatter"; wait "$squatter" 2>/dev/null || true
# Then with its log hard-linked to a file elsewhere: refused, the file
# untouched, no process and no record left.
echo canary > "$work/canary"
ln -f "$work/canary" "$state/metadata.log"
m agent reconcile --desired "$work/d.json" "${net[@]}" --target node.metadata > "$work/outln" 2>&1 && { cat "$work/outln"; fail "the service started with a hard-linked log"; }
grep -q "not a regular file with one link" "$work/outln" || { cat "$work/outln"; fail "the hard-linked log is not named"; }
[ "$(cat "$work/canary")" = canary ] || fail "the linked file was written"
[ -e "$state/metadata.json" ] && fail "a record of a service that never started"
pgrep -f "metadata serve" > /dev/null && fail "a service process was left"
rm "$state/metadata.log"
m agent reconcile --desired "$work/d.json" "${net[@]}" --target node.metadata > "$work/outm" 2>&1 || { cat "$work/outm"; fail "starting the metadata service"; }
[ "$(guest na imds 169.254.169.254)" = na ] || { guest na imds 169.254.169.254; cat "$state/metadata.log"; fail "na cannot read its identity through the redirect"; }
no guest nc imds 169.254.169.254
no guest na imds 10.200.0.1 8775
ss -ltn | matches "169.254.169.254" && fail "169.254.169.254 is bound on the host"
tok=$(guest na token 169.254.169.254)
[ "$(guest nb status 169.254.169.254 GET /latest/meta-data/tenant-id "X-metadata-token:$tok")" = 401 ] || fail "nb replayed na's token"
[ "$(guest na status 169.254.169.254 PUT /latest/api/token X-metadata-token-ttl-seconds:60 X-Forwarded-For:1.2.3.4)" = 400 ] || fail "X-Forwarded-For accepted"
# nc let through by hand (its address added to the member set): the
# service, which reads the applied desired state, still refuses it.
nft add element inet mvm metadata_v4 '{ 10.200.0.4 }'
[ "$(guest nc status 169.254.169.254 PUT /latest/api/token X-metadata-token-ttl-seconds:60)" = 403 ] || fail "nc (metadata off) was answered"
nft delete element inet mvm metadata_v4 '{ 10.200.0.4 }'
# nc claiming na's address is dropped at L2 before it reaches the service
# (no answer at all, not even the service's 403, and no line in its log).
ip -n g-nc addr add 10.200.0.2/32 dev eth0
no guest nc status-from 10.200.0.2 169.254.169.254 PUT /latest/api/token X-metadata-token-ttl-seconds:60
ip -n g-nc addr del 10.200.0.2/32 dev eth0
grep -q " 10.200.0.2 mark=.* tenant=- " "$state/metadata.log" && fail "the spoofed request reached the service"
grep -q " 10.200.0.4 mark=.* tenant=- PUT /latest/api/token 403" "$state/metadata.log" || { cat "$state/metadata.log"; fail "the refusal of nc is not logged"; }
grep -qF "$tok" "$state/metadata.log" && fail "a token is in the service's log"
md=$(grep -o '"pid": [0-9]*' "$state/metadata.json" | grep -o '[0-9]*')
# Every thread, not just the first: capabilities are per thread.
[ "$(ls "/proc/$md/task" | wc -l)" -gt 1 ] || fail "the service should have worker threads"
for t in /proc/$md/task/*; do
  grep -q "^CapEff:	0000000000000004$" "$t/status" || fail "a service thread keeps capabilities: $(grep Cap "$t/status")"
  grep -q "^CapBnd:	0000000000000004$" "$t/status" || fail "a service thread keeps a bounding set: $(grep CapBnd "$t/status")"
  grep -q "^Uid:	65534	65534	65534	65534$" "$t/status" || fail "a service thread runs as $(grep Uid "$t/status")"
  grep -qE "^Groups:\s*$" "$t/status" || fail "a service thread keeps groups: $(grep Groups "$t/status")"
done
kill -9 "$md"
m agent plan --desired "$work/d.json" "${net[@]}" --target node.metadata > "$work/planm" 2>&1 || true
grep -q "node.metadata" "$work/planm" || { cat "$work/planm"; fail "a dead metadata service is not drift"; }
m agent reconcile --desired "$work/d.json" "${net[@]}" --target node.metadata > "$work/outm2" 2>&1 || { cat "$work/outm2"; fail "restarting the metadata service"; }
[ "$(guest na imds 169.254.169.254)" = na ] || fail "the restarted service does not answer"
echo "ok: metadata only for member tenants, only through the redirect; identity from the tap's mark; tokens bound to the tenant; a spoofed address dropped; restarted after being killed; runs as nobody with only CAP_DAC_READ_SEARCH"

ok g tcp 10.200.0.3 22
no g tcp 10.200.0.2 22
no g tcp 10.200.0.3 9999
echo "ok: SSH from the gateway only where enabled, nothing else inbound"

ip -n g-na link set eth0 address 02:00:0a:c8:00:09
no guest na ping 10.200.0.1
ip -n g-na link set eth0 address 02:00:0a:c8:00:02
ip -n g-na addr add 10.200.0.3/32 dev eth0
no guest na udp 10.200.0.1 53 10.200.0.3
ip -n g-na addr del 10.200.0.3/32 dev eth0
no guest na udp 10.200.0.1 53 10.200.0.2:67
guest na garp eth0 02:00:0a:c8:00:02 10.200.0.3
ip neigh show 10.200.0.3 | matches 02:00:0a:c8:00:02 && fail "ARP spoofing poisoned the host"
ok g tcp 10.200.0.3 22
ok guest na ping 10.200.0.1
echo "ok: spoofed MAC, IP, ARP and DHCP server replies are dropped at L2"

# Frames to IEEE link-local group addresses: the bridge hands most of
# them to the host stack on the tap itself, past bridge prerouting and
# every inet rule keyed on the bridge. The same hand-built frames to the
# bridge's own MAC are answered (so the helper works), to a group address
# never: not UDP or ICMP to a closed host port, not with a spoofed
# source (the host would answer nb for na), not ICMPv6, and a router
# advertisement changes no host route or address.
bmac=$(cat /sys/class/net/mvmbr0/address)
ok guest na l2-udp eth0 "$bmac" 10.200.0.2 10.200.0.1 53
ok guest na l2-ping eth0 "$bmac" 10.200.0.1
no guest na l2-udp eth0 "$bmac" 10.200.0.2 10.200.0.1 9998
for dst in 01:80:c2:00:00:00 01:80:c2:00:00:02 01:80:c2:00:00:03 01:80:c2:00:00:0e 01:80:c2:00:00:0f; do
  no guest na l2-udp eth0 "$dst" 10.200.0.2 10.200.0.1 9998
  no guest na l2-ping eth0 "$dst" 192.168.50.1
  no guest na l2-ping6 eth0 "$dst"
  ip netns exec g-nb python3 "$here/guest.py" listen-udp 40999 > "$work/spoofed" 2>&1 &
  listener=$!
  sleep 0.2
  guest na l2-udp eth0 "$dst" 10.200.0.3 10.200.0.1 53 40999 > /dev/null 2>&1 || true
  wait "$listener" && fail "the host answered nb for a frame na sent to $dst with nb's address: $(cat "$work/spoofed")"
  guest na l2-ra eth0 "$dst"
  guest na l2-na eth0 "$dst"
done
guest na l2-ra eth0 33:33:00:00:00:01
sleep 0.5
ip -6 route show | matches "dev tap-" && fail "a guest's router advertisement changed a host route: $(ip -6 route show | grep tap-)"
ip -6 addr show | matches "2001:db8:66" && fail "a guest's router advertisement gave the host an address"
ip -6 neigh show | matches "dev tap-" && fail "a guest's neighbour advertisement reached the host"
for t in na nb nc; do
  [ -z "$(ip -6 addr show dev "tap-$t")" ] || fail "tap-$t has IPv6 addresses: $(ip -6 addr show dev "tap-$t")"
  [ -z "$(ip -4 addr show dev "tap-$t")" ] || fail "tap-$t has IPv4 addresses"
done
echo "ok: frames to link-local group MACs (UDP, ICMP, ICMPv6, RA, NA, spoofed sources) never reach the host stack on a tap"

# A forged ICMP error quoting another tenant's flow (nb's DNS to the
# gateway), routed through the gateway, is dropped before conntrack
# could call it related.
ip -n g-na route add 10.200.0.3/32 via 10.200.0.1
ip netns exec g-nb python3 "$here/guest.py" hold-udp 10.200.0.1 53 40053 > "$work/hold" 2>&1 &
holder=$!
for _ in $(seq 20); do grep -q ready "$work/hold" && break; sleep 0.1; done
guest na icmp-unreach 10.200.0.3 10.200.0.3 40053 10.200.0.1 53
wait "$holder" || true
ip -n g-na route del 10.200.0.3/32 via 10.200.0.1
grep -q clean "$work/hold" || fail "a forged ICMP error from na reached nb's socket: $(cat "$work/hold")"

# The host's ARP for one tenant is not flooded to the others: the bridge
# has a permanent neighbour entry for each.
ip neigh show 10.200.0.3 dev mvmbr0 | matches "lladdr 02:00:0a:c8:00:03 PERMANENT" || fail "no permanent neighbour entry for nb: $(ip neigh show dev mvmbr0)"
ip neigh flush dev mvmbr0
ip netns exec g-nc python3 "$here/guest.py" count-arp eth0 1.5 > "$work/arps" 2>&1 &
counter=$!
sleep 0.3
ok g tcp 10.200.0.3 22
wait "$counter"
[ "$(cat "$work/arps")" = 0 ] || fail "nc saw $(cat "$work/arps") ARP requests from the host for nb"
echo "ok: tenant to tenant through the gateway dropped before conntrack (no forged ICMP error); the host's ARP for a tenant reaches no other tap"

ll=$(ip -6 addr show dev mvmbr0 scope link | awk '/inet6/ {print $2}' | cut -d/ -f1)
if [ -n "$ll" ]; then
  no guest na tcp6 "$ll%eth0" 5555
  echo "ok: IPv6 from a tap is dropped"
else
  echo "ok: IPv6 not checked (the bridge has no link-local address here)"
fi

# 3. Drift, planned and repaired.
ip link add fp0 type veth peer name fp1
ip link set fp0 master mvmbr0
ip link del tap-nb
handle=$(nft -a list chain inet mvm tenant_out | grep 'egress_deny' | grep -o 'handle [0-9]*' | grep -o '[0-9]*')
nft delete rule inet mvm tenant_out handle "$handle"
echo 1 > /proc/sys/net/ipv4/conf/all/send_redirects
nft delete element inet mvm metadata_v4 '{ 10.200.0.2 }'
# A static FDB entry planted on a tenant's port (another MAC it could receive for).
bridge fdb add 02:00:0a:c8:00:99 dev tap-nc master static
m net verify --json > "$work/verify2" && fail "net verify passed a drifted node"
for item in '"check": "tenant.na.nft: element inet mvm metadata_v4: 10.200.0.2"' '"check": "tenant.nb.tap"' '"check": "tenant.nc.tap' '"check": "node.nft: rule inet mvm tenant_out: ip daddr' 'sysctl net.ipv4.conf.all.send_redirects' 'unexpected: fp0'; do
  grep -qF "$item" "$work/verify2" || { cat "$work/verify2"; fail "net verify does not name: $item"; }
done
m agent plan --desired "$work/d.json" "${net[@]}" > "$work/plan3" 2>&1 || true
grep -q "tenant.nb.tap will be created" "$work/plan3" || { cat "$work/plan3"; fail "a deleted tap is not planned"; }
grep -q '+ "inet mvm tenant_out: ip daddr' "$work/plan3" || { cat "$work/plan3"; fail "a deleted rule is not planned"; }
grep -q 'net.ipv4.conf.all.send_redirects' "$work/plan3" || { cat "$work/plan3"; fail "a changed sysctl is not planned"; }
m agent reconcile --desired "$work/d.json" "${net[@]}" > "$work/out3" 2>&1 || { cat "$work/out3"; fail "repair"; }
m agent reconcile --desired "$work/d.json" "${net[@]}" > "$work/out4" 2>&1
grep -q "No changes." "$work/out4" || { cat "$work/out4"; fail "not converged after repair"; }
bridge fdb show dev tap-nc | matches 02:00:0a:c8:00:99 && fail "the planted FDB entry was not removed"
bridge fdb show dev tap-nc | matches "02:00:0a:c8:00:04 master mvmbr0 static" || fail "nc's own FDB entry is gone"
[ "$(cat /proc/sys/net/ipv4/conf/all/send_redirects)" = 0 ] || fail "sysctl not repaired"
bg g pump tap-nb p-nb vh-nb
sleep 0.3
no guest na tcp 192.168.50.2 8080
ok g tcp 10.200.0.3 22
ok guest na imds 169.254.169.254
[ "$(cat /sys/class/net/fp0/master/ifindex 2>/dev/null)" = "$(cat /sys/class/net/mvmbr0/ifindex)" ] || fail "the foreign bridge port was detached"
[ "$(nft list table inet foreign)" = "$foreign" ] || fail "the foreign table changed"
m net verify > "$work/verify3" && fail "net verify passed with a foreign port on the bridge"
[ "$(grep -c FAIL "$work/verify3")" = 1 ] || { cat "$work/verify3"; fail "after repair only the foreign port should fail"; }
ip link del fp0
m net verify > "$work/verify4" || { cat "$work/verify4"; fail "net verify fails after repair"; }
echo "ok: a deleted tap, a deleted rule and a changed sysctl are named by net verify, planned and repaired; foreign table and port survive"

# 4. A tap's own settings are checked and repaired: IPv6 turned back on
# is named by net verify.
if [ -e /proc/sys/net/ipv6/conf/tap-nc/disable_ipv6 ]; then
  echo 0 > /proc/sys/net/ipv6/conf/tap-nc/disable_ipv6
  m net verify --json > "$work/verify5" && fail "net verify passed with IPv6 on a tap"
  grep -qF 'net.ipv6.conf.tap-nc.disable_ipv6' "$work/verify5" || { cat "$work/verify5"; fail "net verify does not name the tap's disable_ipv6"; }
  m agent reconcile --desired "$work/d.json" "${net[@]}" > "$work/out6" 2>&1 || { cat "$work/out6"; fail "repairing a tap's sysctl"; }
  [ "$(cat /proc/sys/net/ipv6/conf/tap-nc/disable_ipv6)" = 1 ] || fail "the tap's disable_ipv6 was not repaired"
fi

# 5. Only what this node created is its own. A second node on this host
# (its own state dir, the same bridge name) is refused the bridge and the
# tables, and its prune touches nothing of the first; a host bridge mvm
# did not create (an address on it, another MAC) is refused and survives.
sed "s|^state_dir = .*|state_dir = \"$work/state2\"|" "$work/node.toml" > "$work/node2.toml"
n2() { "$mvm" --config "$work/node2.toml" "$@"; }
cat > "$work/d2.json" <<JSON
{"tenants": [{"tenant_id": "za", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "ip": "10.200.0.9"}]}
JSON
net_of_node1() { nft -s list table inet mvm; nft -s list table bridge mvm_l2; ip addr show mvmbr0; ip -d link show mvmbr0 | grep -o "alias .*"; ip neigh show dev mvmbr0 nud permanent | sort; }
before=$(net_of_node1)
n2 agent reconcile --desired "$work/d2.json" "${net[@]}" > "$work/n2a" 2>&1 && { cat "$work/n2a"; fail "a second node took over the first's bridge and tables"; }
grep -q "mvmbr0 exists with the alias \"mvm node $state\"" "$work/n2a" || { cat "$work/n2a"; fail "the second node does not name whose bridge it is"; }
grep -q "belong to another mvm node" "$work/n2a" || { cat "$work/n2a"; fail "the second node does not name whose tables they are"; }
n2 agent reconcile --desired "$work/none.json" --prune "${net[@]}" > "$work/n2b" 2>&1 || { cat "$work/n2b"; fail "the second node's prune"; }
[ "$(net_of_node1)" = "$before" ] || { diff <(echo "$before") <(net_of_node1); fail "the second node changed the first's network"; }
for t in na nb nc; do ip link show "tap-$t" > /dev/null 2>&1 || fail "the second node's prune deleted tap-$t"; done
ip link show tap-za > /dev/null 2>&1 && fail "the second node made a tap on the first's bridge"
ip link add br-host type bridge
ip addr add 192.0.2.1/24 dev br-host
ip link set br-host up
host_before=$(ip addr show br-host)
sed "s|^state_dir = .*|state_dir = \"$work/state3\"|" "$work/node.toml" > "$work/node3.toml"
printf '[bridge]\nname = "br-host"\nsubnet = "10.203.0.0/24"\ngateway = "10.203.0.1"\ndns = ["10.203.0.1"]\n' >> "$work/node3.toml"
cat > "$work/d3.json" <<JSON
{"tenants": [{"tenant_id": "zb", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}]}
JSON
"$mvm" --config "$work/node3.toml" agent reconcile --desired "$work/d3.json" "${net[@]}" > "$work/n3a" 2>&1 && { cat "$work/n3a"; fail "a host bridge mvm did not create was taken over"; }
grep -q "br-host exists and mvm did not create it" "$work/n3a" || { cat "$work/n3a"; fail "the host bridge is not named"; }
"$mvm" --config "$work/node3.toml" agent reconcile --desired "$work/none.json" --prune "${net[@]}" > "$work/n3b" 2>&1 || { cat "$work/n3b"; fail "prune on the host-bridge node"; }
[ "$(ip addr show br-host)" = "$host_before" ] || fail "the host bridge was changed: $(ip addr show br-host)"
# And a subnet over an address the host has (192.0.2.0/24 on br-host).
sed "s|^state_dir = .*|state_dir = \"$work/state4\"|" "$work/node.toml" > "$work/node4.toml"
printf '[bridge]\nname = "mvmbr4"\nsubnet = "192.0.2.0/25"\ngateway = "192.0.2.126"\ndns = ["192.0.2.126"]\n' >> "$work/node4.toml"
echo '{"tenants": [{"tenant_id": "zc", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}]}' > "$work/d4.json"
"$mvm" --config "$work/node4.toml" agent plan --desired "$work/d4.json" "${net[@]}" > "$work/n4a" 2>&1 || true
grep -q "overlaps what the host already has: 192.0.2.0/24 on br-host (address)" "$work/n4a" || { cat "$work/n4a"; fail "an overlapping subnet is not refused naming the link"; }
ip link del br-host
echo "ok: a tap's sysctls are verified and repaired; another node's bridge, taps and tables and a host bridge are never managed or deleted; a subnet over a host network is refused"

# 6. Prune: everything of mvm's goes, the foreign table stays.
kill "${pids[@]}" 2>/dev/null || true
md=$(grep -o '"pid": [0-9]*' "$state/metadata.json" | grep -o '[0-9]*')
m agent reconcile --desired "$work/none.json" --prune "${net[@]}" --target node.metadata > "$work/out5" 2>&1 || { cat "$work/out5"; fail "prune"; }
kill -0 "$md" 2>/dev/null && ! grep -q '^State:	Z' "/proc/$md/status" && fail "the metadata service survived the last metadata tenant"
ip link show | matches 'tap-' && fail "taps left"
ip link show mvmbr0 > /dev/null 2>&1 && { cat "$work/out5"; fail "bridge left"; }
nft list tables | matches mvm && fail "mvm tables left"
[ "$(nft list table inet foreign)" = "$foreign" ] || fail "the foreign table changed"
echo "ok: prune removed bridge, taps and tables; the foreign table survived"
