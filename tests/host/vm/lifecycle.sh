#!/bin/bash
# A tenant end to end on a real kernel, in the throwaway network and mount
# namespaces tests/host_vm.rs runs it in: Nix builds its artifact from the
# fixture flake (with a real kernel), the jailer starts the real
# Firecracker as the tenant's uid in its cgroup on its tap; a second run is
# a no-op; a vcpus change restarts exactly that VM; prune leaves no
# process, mount, cgroup, tap, jail or socket. Guests cannot boot here, so
# a running Firecracker answering its API is the end of the line.
# Usage: vm.sh MVM WORKDIR CGROUP_PARENT FIRECRACKER_DIR KERNEL
set -euo pipefail
mvm=$1 work=$2 parent=$3 fcdir=$(realpath "$4") kernel=$5
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/vm.sh"
tenant() {
  printf '{"tenants": [{"tenant_id": "va", "flake_ref": "path:%s", "profile": "minimal", "vcpus": %d, "mem_mib": 256, "state": "running", "data_mib": 8}]}\n' "$flake" "$1" > "$work/d$1.json"
}
tenant 1; tenant 2
echo '{"tenants": []}' > "$work/none.json"
# Running Firecrackers (an exited one may linger as a zombie where init
# does not reap promptly).
fcs() {
  ps -eo pid=,stat=,args= | awk '$2 !~ /^Z/ && $3 == "/firecracker" {
    for (i = 4; i < NF; i++) if ($i == "--id" && $(i + 1) == "va") print $1 }'
}

m agent reconcile --desired "$work/d1.json" > "$work/out1" 2>&1 || { cat "$work/out1"; fail "first reconcile"; }
pid=$(fcs)
[ "$(echo "$pid" | wc -w)" = 1 ] || fail "expected one Firecracker, found: $pid"
uid=$(grep -o '"uid": [0-9]*' "$state/tenants/va/tenant.json" | grep -o '[0-9]*')
grep -q "^Uid:	$uid	" "/proc/$pid/status" || fail "Firecracker does not run as the tenant's uid $uid"
grep -q "^0::/$parent/va$" "/proc/$pid/cgroup" || fail "Firecracker is not in the tenant cgroup: $(cat /proc/$pid/cgroup)"
[ "$(stat -c %i "/proc/$pid/root/vm.json")" = "$(stat -c %i "$state/tenants/va/jail/firecracker/va/root/vm.json")" ] || fail "Firecracker is not chrooted in the tenant's jail"
[ "$(stat -c %U "/proc/$pid/root/vm.json")" = root ] || fail "the config in the jail is not root's"
sock=$state/tenants/va/jail/firecracker/va/root/run/firecracker.socket
python3 - "$sock" <<'PY' || fail "the API does not answer"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
assert b'"id":"va"' in s.recv(4096)
PY
start=$(grep '"resource":"tenant.va.vm","result":"ok"' "$state/tenants/va/audit.log") || fail "no audit record of the VM"
fields=(
  '"timestamp":' '"tenant_id":"va"' '"node_id":' '"command":'
  '"flake_ref":"path:' '"lock":"sha256-'
  '"vmlinux_store_path":"/nix/store/' '"rootfs.ext4_store_path":"/nix/store/'
  '"config.json_store_path":"/nix/store/' '"vmlinux_sha256":' '"fc_config_sha256":'
  '"ip":"10.200.0.' '"mac":"02:00:' '"vcpus":"1"' '"mem_mib":"256"' '"pid":'
)
for field in "${fields[@]}"; do
  grep -qF "$field" <<< "$start" || fail "the start's audit record lacks $field: $start"
done
# The limits the start's record names are exactly those the cgroup step
# wrote and the cgroup has: on this hybrid host, whose cgroup2 tree lacks
# memory/cpu/pids, none — never a recomputed claim.
python3 - "$state/tenants/va/audit.log" "$cg/$parent/va" <<'PY' || fail "the start's audit record claims limits the cgroup step did not write"
import json, os, sys
log, cgdir = sys.argv[1:]
recs = [json.loads(l) for l in open(log)]
ok = lambda r: [x for x in recs if x["resource"] == r and x["result"] == "ok"]
vm, cg = ok("tenant.va.vm")[0]["details"], ok("tenant.va.cgroup")[-1]["details"]
keys = ("memory_max", "cpu_max", "cpuset_cpus", "pids_max")
claimed = {k: vm[k] for k in keys if k in vm}
written = {k: cg[k] for k in keys if k in cg}
assert claimed == written, (claimed, written)
for k, v in claimed.items():
    f = os.path.join(cgdir, k.replace("_", ".", 1))
    assert open(f).read().strip() == v, (f, v)
PY
grep -q " $state/tenants/va/jail/firecracker/va/root/secrets.img " /proc/self/mountinfo || fail "the secrets image is not bound into the jail"
data=$state/tenants/va/data.ext4
[ "$(stat -c '%u %a' "$data")" = "$uid 600" ] || fail "the data volume is not the tenant's 0600 file: $(stat -c '%u %a' "$data")"
jroot=$state/tenants/va/jail/firecracker/va/root
awk -v p="$jroot/data.ext4" '$5 == p { print $6 }' /proc/self/mountinfo | matches '^rw,nosuid,nodev,noexec' || fail "the data volume is not bound read-write, nosuid,nodev,noexec into the jail"
# The jail root is a tmpfs of its own, bounded: all the tenant's
# Firecracker can write. Filled as the tenant, it stops at its size and
# inode count, and nothing lands on the state filesystem.
awk -v p="$jroot" '$5 == p' /proc/self/mountinfo | matches 'nosuid.* - tmpfs .*size=65536k,nr_inodes=4096' || fail "the jail root is not a bounded tmpfs: $(awk -v p="$jroot" '$5 == p' /proc/self/mountinfo)"
used_before=$(df --output=used -B1 "$state" | tail -1)
# As the tenant, from inside (the jail's parent is root's 0700, as
# Firecracker sees only its chroot): fill the bytes, then the inodes.
python3 - "$jroot" "$uid" > "$work/fill" <<'PY' || fail "filling the jail as the tenant: $(cat "$work/fill")"
import errno, os, sys
root = os.open(sys.argv[1], os.O_DIRECTORY)
uid = int(sys.argv[2])
os.setgroups([]); os.setgid(uid); os.setuid(uid)
fd = os.open("fill", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=root)
block, written = b"\0" * (1 << 20), 0
try:
    while written < 200 << 20:
        written += os.write(fd, block)
except OSError as e:
    assert e.errno == errno.ENOSPC, e
os.close(fd)
made = 0
try:
    while made < 10000:
        os.mkdir("d%d" % made, dir_fd=root); made += 1
except OSError as e:
    assert e.errno == errno.ENOSPC, e
print(written, made)
PY
read -r written made < "$work/fill"
[ "$written" -le $((64 << 20)) ] || fail "the tenant wrote $written bytes into its jail"
[ "$made" -lt 4096 ] || fail "the tenant made $made directories in its jail"
[ "$(( $(df --output=used -B1 "$state" | tail -1) - used_before ))" -lt $((8 << 20)) ] || fail "filling the jail used the state filesystem"
rm -rf "$jroot"/d[0-9]* "$jroot/fill"
[ "$(stat -c %i "$data")" = "$(stat -c %i "$jroot/data.ext4")" ] || fail "the jail's data.ext4 is not the tenant's volume"
dumpe2fs -h "$data" 2>/dev/null | matches "^Filesystem volume name: *data$" || fail "the data volume is not an ext4 labelled data"
debugfs -R 'stat /' "$data" 2>/dev/null | matches "User: *$uid *Group: *$uid" || fail "the volume's root is not the tenant's: $(debugfs -R 'stat /' "$data" 2>/dev/null | grep User)"
[ ! -e "$data.new" ] || fail "a temporary volume was left"
echo kept > "$work/marker"
debugfs -w -R "write $work/marker marker" "$data" > /dev/null 2>&1 || fail "cannot write into the data volume"
echo "ok: Firecracker runs as the tenant in its cgroup, jailed on a bounded tmpfs (64 MiB, 4096 inodes), answering its API; its data volume is an ext4 whose root is the tenant's"

m agent reconcile --desired "$work/d1.json" > "$work/out2" 2>&1
grep -q "No changes." "$work/out2" || { cat "$work/out2"; fail "second reconcile was not a no-op"; }
[ "$(fcs)" = "$pid" ] || fail "the VM changed on a no-op run"
echo "ok: second reconcile is a no-op"

m agent reconcile --desired "$work/d2.json" > "$work/out3" 2>&1 || { cat "$work/out3"; fail "vcpus change"; }
grep -q "tenant.va.vm must be replaced" "$work/out3" || { cat "$work/out3"; fail "a vcpus change did not replace the VM"; }
new=$(fcs)
[ "$(echo "$new" | wc -w)" = 1 ] && [ "$new" != "$pid" ] || { tail -30 "$work/out3"; fail "after a vcpus change: old $pid, now: $new"; }
grep -q '"vcpu_count": 2' "$state/tenants/va/jail/firecracker/va/root/vm.json" || fail "the new VM's config is not the planned one"
[ "$(grep -c '"fc_config_sha256"' "$state/tenants/va/revisions.json")" = 2 ] || fail "revisions.json does not hold both starts"
grep -q '"hostname":' <<< "$start" || fail "the start's audit record lacks the host name"
[ "$(debugfs -R 'cat /marker' "$data" 2>/dev/null)" = kept ] || fail "the data volume did not survive the restart"
m tenant revisions va > "$work/revs" || fail "tenant revisions"
[ "$(grep -c "path:$flake" "$work/revs")" = 2 ] || { cat "$work/revs"; fail "tenant revisions does not list both starts"; }
m tenant revisions va --json | matches '"fc_config_sha256"' || fail "tenant revisions --json"
echo "ok: a vcpus change restarts exactly that VM, keeping its data volume; both starts are in revisions.json"

m tenant stop va > "$work/stop" 2>&1 || { cat "$work/stop"; fail "tenant stop"; }
[ -z "$(fcs)" ] || fail "tenant stop left a Firecracker: $(fcs)"
grep -q '"state": "stopped"' "$state/overrides.json" || fail "the stop is not kept as an override"
m tenant list | matches "^va  *stopped .* stopped " || { m tenant list; fail "tenant list does not show va stopped"; }
[ -e "$data" ] && [ -e "$state/tenants/va/tenant.json" ] || fail "tenant stop removed more than the VM"
m tenant start va > "$work/start" 2>&1 || { cat "$work/start"; fail "tenant start"; }
[ "$(fcs | wc -w)" = 1 ] || fail "tenant start: expected one Firecracker, found: $(fcs)"
[ "$(debugfs -R 'cat /marker' "$data" 2>/dev/null)" = kept ] || fail "the data volume did not survive stop and start"
m tenant start va > "$work/start2" 2>&1 && grep -q "No changes." "$work/start2" || { cat "$work/start2"; fail "a second start is not a no-op"; }
m tenant stop ghost > "$work/ghost" 2>&1 && fail "stopped a tenant that is not desired"
grep -q "tenant ghost is not in the desired state the last reconcile applied" "$work/ghost" || { cat "$work/ghost"; fail "the refusal does not say why"; }
echo "ok: tenant stop and start stop and start exactly that VM, keeping the rest; a tenant not desired is refused"

m agent reconcile --desired "$work/none.json" --prune > "$work/out4" 2>&1 || { cat "$work/out4"; fail "prune"; }
[ -z "$(fcs)" ] || fail "Firecracker left running: $(fcs)"
grep -q " $state/" /proc/self/mountinfo && fail "mounts left: $(grep " $state/" /proc/self/mountinfo)"
[ -e "$cg/$parent/va" ] && fail "cgroup left"
ip link show tap-va > /dev/null 2>&1 && fail "tap left"
[ -e "$state/tenants/va" ] && fail "tenant tree (jail, socket) left"
echo "ok: prune leaves no process, mount, cgroup, tap, jail or socket"

# Without a jailer: Firecracker runs directly (as root, no chroot), still
# in the tenant's cgroup, and the plan and the audit record say so.
sed "s|^jailer = .*|jailer = \"$work/no-such-jailer\"|" "$work/node.toml" > "$work/nojailer.toml"
printf '{"tenants": [{"tenant_id": "vb", "flake_ref": "path:%s", "profile": "minimal", "vcpus": 1, "mem_mib": 128, "state": "running"}]}\n' "$flake" > "$work/vb.json"
n() { "$mvm" --config "$work/nojailer.toml" "$@"; }
n agent reconcile --desired "$work/vb.json" > "$work/out5" 2> "$work/err5" || { cat "$work/out5" "$work/err5"; fail "reconcile without a jailer"; }
grep -q "VMs will run Firecracker directly, as root" "$work/out5" || { cat "$work/out5"; fail "the plan does not warn about the missing jailer"; }
grep -q "^warning: no jailer at .*VMs will run Firecracker directly" "$work/err5" || { cat "$work/err5"; fail "no warning about the missing jailer on stderr"; }
vb=$(ps -eo pid=,stat=,args= | awk '$2 !~ /^Z/ && $3 ~ /firecracker$/ { for (i = 4; i < NF; i++) if ($i == "--api-sock" && index($(i + 1), "/vb/")) print $1 }')
[ "$(echo "$vb" | wc -w)" = 1 ] || fail "expected one direct Firecracker for vb, found: $vb"
grep -q "^0::/$parent/vb$" "/proc/$vb/cgroup" || fail "the direct Firecracker is not in the tenant cgroup: $(cat /proc/$vb/cgroup)"
grep -q '"resource":"tenant.vb.vm","result":"ok".*"jailer":"false"' "$state/tenants/vb/audit.log" || fail "the audit record does not say jailer false"
n agent reconcile --desired "$work/none.json" --prune > "$work/out6" 2>&1 || { cat "$work/out6"; fail "prune without a jailer"; }
kill -0 "$vb" 2>/dev/null && ! grep -q '^State:	Z' "/proc/$vb/status" && fail "the direct Firecracker survived the prune"
echo "ok: without a jailer Firecracker runs directly, in its cgroup, and plan and audit say so"
