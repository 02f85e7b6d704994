#!/bin/bash
# Dev mode beside running tenants, with the real Firecracker, in the
# throwaway network, mount and pid namespaces tests/host_vm.rs runs it in:
# two tenants run (jailed, on their taps, with their rules); `mvm dev up`
# builds the fixture flake and boots it in Firecracker while another mvm
# holds the node lock; status, console, down; then every file of every
# tenant, the taps, the nft ruleset and the audit logs are byte-identical
# to before, and dev mode left nothing.
# Usage: dev.sh MVM WORKDIR CGROUP_PARENT FIRECRACKER_DIR KERNEL
set -euo pipefail
mvm=$1 work=$2 parent=$3 fcdir=$(realpath "$4") kernel=$5
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/vm.sh"
printf '{"tenants": [{"tenant_id": "da", "flake_ref": "path:%s", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}, {"tenant_id": "db", "flake_ref": "path:%s", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "metadata": true}]}\n' "$flake" "$flake" > "$work/d.json"
m agent reconcile --desired "$work/d.json" > "$work/out" 2>&1 || { cat "$work/out"; fail "reconcile of the tenants"; }

# Everything of the tenants' and the node's that dev mode must not touch.
snapshot() {
  {
    # Not the tenants' running logs (their pumps write them as their VMs
    # run), nor the FIFOs bound into the jails (reading one blocks).
    (cd "$state" && find . \( -path ./dev -o -path './tenants/*/logs' -o -path './tenants/*/root/fc.*' \) -prune -o -type f -print0 | sort -z | xargs -0 sha256sum)
    (cd "$state" && find . -path ./dev -prune -o -printf '%p %m %u %g %y\n' | sort)
    # Every link's details, less the bridge's running timers.
    ip -d link show | sed -E 's/(hello|tcn|topology_change|gc|hold|message_age|forward_delay)_timer +[0-9.]+//g'
    ip addr show | grep -v "valid_lft"
    nft list ruleset | grep -v "counter packets"
    bridge fdb show | sort
    ls "$cg/$parent"
    for t in da db; do cat "$cg/$parent/$t/cgroup.procs"; done
    pgrep -a -f "^/firecracker --id d[ab] " | sort || true
  } > "$1"
}
# Once the links settle (a tap goes UP when its Firecracker opens it, the
# bridge's IPv6 address leaves "tentative"): two snapshots a second apart
# agree.
snapshot "$work/before"
for _ in $(seq 15); do
  sleep 1
  snapshot "$work/again"
  cmp -s "$work/before" "$work/again" && break
  mv "$work/again" "$work/before"
done
cmp -s "$work/before" "$work/again" || fail "the tenants' links never settled"
[ -s "$work/before" ] || fail "empty snapshot"
grep -q "tenants/da/audit.log" "$work/before" || fail "the snapshot lacks da's audit log"

# Another mvm holds the node lock for the whole of dev mode.
exec 9> "$state/lock"
flock -n 9 || fail "cannot take the node lock for the test"

# The starter flake the tenants were built from was written by `mvm dev
# init` (lib/vm.sh); it never overwrites, and wants a real busybox.
[ -x "$flake/tools/busybox" ] && [ -s "$flake/vmlinux" ] && [ -f "$flake/flake.nix" ] || fail "dev init wrote an incomplete flake"
m dev init "$flake" --kernel "$kernel" > "$work/init" 2>&1 && fail "dev init overwrote a flake"
grep -q "is not empty" "$work/init" || fail "dev init into a full dir: $(cat "$work/init")"
m dev init "$work/other" --kernel "$kernel" --busybox "$work/d.json" > "$work/init" 2>&1 && fail "dev init took a JSON file for busybox"
grep -q "is not an ELF executable" "$work/init" || fail "dev init with a bad busybox: $(cat "$work/init")"
[ -e "$work/other" ] && fail "a refused dev init left $work/other"
echo "ok: dev init wrote the starter flake the tenants run; it refuses a non-empty dir and a busybox that is not one, writing nothing"

m dev status > "$work/st0" || fail "dev status with nothing up"
grep -q "No developer VM is up." "$work/st0" || fail "dev status: $(cat "$work/st0")"
m dev up --flake "path:$flake" --vcpus 1 --mem-mib 128 > "$work/up" 2> "$work/up.err" || { cat "$work/up" "$work/up.err"; fail "dev up"; }
grep -q "DEV MODE — NOT HARDENED" "$work/up.err" || fail "no banner: $(cat "$work/up.err")"
pid=$(grep -o '"pid": [0-9]*' "$state/dev/dev.json" | grep -o '[0-9]*')
[ -n "$pid" ] && kill -0 "$pid" || fail "no developer VM process"
tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--id mvm-developer-vm --api-sock $state/dev/run/fc.sock --config-file $state/dev/vm.json" \
  || fail "unexpected argv: $(tr '\0' ' ' < "/proc/$pid/cmdline")"
grep -q '"kernel_image_path": "/nix/store/' "$state/dev/vm.json" || fail "the config does not boot the build: $(cat "$state/dev/vm.json")"
grep -q "network-interfaces" "$state/dev/vm.json" && fail "the developer VM has a network"
echo "ok: dev up builds the flake and runs Firecracker from it, with a banner, while the node lock is held"

m dev status > "$work/st1"
grep -q "Developer VM: running, API answering" "$work/st1" || { cat "$work/st1"; fail "dev status"; }
m dev status --json | python3 -c 'import json, sys; d = json.load(sys.stdin)["dev"]; assert d["running"] and d["api_answers"] and d["record"]["pid"] == int(sys.argv[1]), d' "$pid" \
  || fail "dev status --json"
m dev up --flake "path:$flake" > "$work/up2" 2>&1 && fail "a second dev up was accepted"
grep -q "a developer VM already runs (pid $pid" "$work/up2" || fail "the second dev up: $(cat "$work/up2")"
m dev console > "$work/console" || fail "dev console"
cmp -s "$work/console" "$state/dev/console.log" || fail "dev console does not print the console"
echo "ok: dev status says running with its API answering (text and JSON); a second up is refused naming the first; console prints the console"

m dev down > "$work/down" || { cat "$work/down"; fail "dev down"; }
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
[ -z "$(ps -o stat= -p "$pid" | grep -v Z)" ] || fail "the developer VM still runs"
[ -e "$state/dev" ] && fail "dev down left $state/dev"
m dev status | grep -q "No developer VM is up." || fail "dev status after down"
echo "ok: dev down stops the VM and removes <state>/dev/"

exec 9>&-
snapshot "$work/after"
diff "$work/before" "$work/after" > "$work/diff" || { cat "$work/diff"; fail "dev mode changed the tenants' state, links, rules or audit logs"; }
m agent reconcile --desired "$work/d.json" > "$work/out" 2>&1 || { cat "$work/out"; fail "reconcile after dev mode"; }
grep -q "No changes." "$work/out" || { cat "$work/out"; fail "the tenants drifted under dev mode"; }
echo "ok: the tenants' files, audit logs, taps, FDB, nft ruleset, cgroups and VMs are byte-identical, and reconcile finds nothing to do"
