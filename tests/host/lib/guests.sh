# Shared set-up of the stand-in guest scripts (tests/host/net/), sourced
# after common.sh with `here` set to the script's directory: background
# processes killed and named network namespaces removed on exit, this
# network namespace's own /sys, named namespaces on a tmpfs of this mount
# namespace (nothing of them left on the host's /run), and
# `stand_in_guest`.
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  for n in $(ip netns list 2>/dev/null | awk '{print $1}'); do ip netns del "$n" 2>/dev/null || true; done
  chattr -R -a "$work" 2>/dev/null || true
}
trap cleanup EXIT
bg() { "$@" > /dev/null 2>&1 & pids+=($!); }
ip link set lo up
mount -t sysfs sysfs /sys
mkdir -p /run/netns
mount -t tmpfs tmpfs /run/netns

# stand_in_guest ID N: a guest for tenant ID with address 10.200.0.N and
# MAC 02:00:0a:c8:00:0N — network namespace g-ID whose eth0 is a veth
# into p-ID, where guest.py pumps its frames through the tenant's real tap
# as Firecracker would, so they reach the host only through the tap.
stand_in_guest() {
  local id=$1 n=$2
  ip netns add "g-$id"
  ip netns add "p-$id"
  ip -n "p-$id" link add "vh-$id" type veth peer name eth0 netns "g-$id"
  # The pump's end has no stack of its own (it would answer the guest's
  # IPv6 multicast itself).
  ip netns exec "p-$id" sysctl -qw "net.ipv6.conf.vh-$id.disable_ipv6=1"
  ip -n "p-$id" link set "vh-$id" up
  ip -n "g-$id" link set lo up
  ip -n "g-$id" link set eth0 address "02:00:0a:c8:00:0$n"
  ip -n "g-$id" addr add "10.200.0.$n/24" dev eth0
  # A veth leaves TCP/UDP checksums to "hardware"; frames pumped raw into
  # a tap must carry them, as a virtio-net guest's do.
  ip netns exec "g-$id" ethtool -K eth0 tx off > /dev/null
  ip -n "g-$id" link set eth0 up
  ip -n "g-$id" route add default via 10.200.0.1
  bg python3 "$here/guest.py" pump "tap-$id" "p-$id" "vh-$id"
}
