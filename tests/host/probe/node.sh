#!/bin/sh
# Builds a small mvm node inside the current (throwaway) network and mount
# namespace, then prints `mvm agent observe --json`. Run by
# tests/host_probe.rs through `unshare --net --mount`; everything it makes
# dies with the namespaces, except the cgroup dirs, which the caller removes.
# Usage: probe.sh MVM STATE_DIR CGROUP_PARENT CONFIG
set -eu
mvm=$1 state=$2 parent=$3 config=$4

mount --make-rprivate /
ip link set lo up

# The bridge with the gateway address, and two taps: acme on the bridge,
# isolated, learning off; globex left detached with default port flags.
ip link add mvmbr0 type bridge
ip addr add 10.200.0.1/24 dev mvmbr0
ip link set mvmbr0 up
ip tuntap add dev tap-acme mode tap user 100000 group 100001
ip link set tap-acme master mvmbr0
bridge link set dev tap-acme isolated on learning off
ip link set tap-acme up
ip tuntap add dev tap-globex mode tap user 100002
# A link that is named like a tap but is not one.
ip link add tap-fake type veth peer name fake-peer

# mvm's tables with tenant elements, and someone else's table.
nft -f - <<'NFT'
table inet other {
	chain input {
		type filter hook input priority 0;
	}
}
table bridge mvm_l2 {
	set port_v4 {
		typeof iifname . ether saddr . ip saddr
		elements = { "tap-acme" . 02:00:0a:c8:00:0a . 10.200.0.10 }
	}
	map port_mark {
		typeof iifname : meta mark
		elements = { "tap-acme" : 100000 }
	}
	chain guest_ingress {
		type filter hook prerouting priority -200; policy drop;
	}
	chain guest_lateral {
		type filter hook forward priority -200; policy accept;
	}
}
table inet mvm {
	set metadata_v4 {
		type ipv4_addr
		elements = { 10.200.0.10 }
	}
	set ssh_v4 {
		type ipv4_addr
	}
	chain input {
		type filter hook input priority filter; policy accept;
	}
}
NFT

# The state dir: a tenant with a record and a secrets tmpfs, one with a
# corrupt record, and junk that must be reported, not followed.
mkdir -p "$state/tenants/acme/jail" "$state/tenants/acme/secrets" "$state/tenants/broken"
chmod 700 "$state/tenants/acme"
cat > "$state/tenants/acme/tenant.json" <<'REC'
{"format_version": 1, "tenant_id": "acme", "uid": 100000, "gid": 100001,
 "ip": "10.200.0.10", "mac": "02:00:0a:c8:00:0a"}
REC
mount -t tmpfs -o size=16m,mode=700,nosuid,nodev,noexec tmpfs "$state/tenants/acme/secrets"
printf '{"format_version": 1, "tenant_id": ' > "$state/tenants/broken/tenant.json"
mkdir -p "$state/tenants/Not_Valid"
ln -s /etc "$state/tenants/evil"
# A tenant dir with a filesystem mounted on it, and a plain file.
mkdir -p "$state/tenants/mounted"
mount -t tmpfs tmpfs "$state/tenants/mounted"
echo junk > "$state/tenants/plainfile"

# A tenant cgroup under a test-unique parent in the real cgroup2 tree.
cg=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
mkdir -p "$cg/$parent/acme"

# A process that looks like acme's Firecracker: comm "firecracker", --id,
# in acme's cgroup; and one that names acme but runs elsewhere (not ours).
cp /bin/sh "$state/firecracker"
"$state/firecracker" -c 'trap "kill \$!; exit 0" TERM; sleep 30 & wait' --id acme >/dev/null 2>&1 &
fc=$!
echo "$fc" > "$cg/$parent/acme/cgroup.procs"
"$state/firecracker" -c 'trap "kill \$!; exit 0" TERM; sleep 30 & wait' --id acme >/dev/null 2>&1 &
stray=$!

sleep 0.2
"$mvm" agent observe --json --config "$config"
kill "$fc" "$stray"
wait "$fc" "$stray" || true
