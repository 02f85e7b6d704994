#!/bin/bash
# Crash safety with VMs: SIGKILL `mvm agent reconcile` at random points, 20
# times, alternating between starting three tenants' VMs and stopping them;
# after each kill a new reconcile must converge (exit 0, then a no-op) with
# exactly one Firecracker per running tenant and none per stopped one;
# nothing is left at the end.
# Usage: vmcrash.sh MVM WORKDIR CGROUP_PARENT FIRECRACKER_DIR KERNEL
set -euo pipefail
mvm=$1 work=$2 parent=$3 fcdir=$(realpath "$4") kernel=$5
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/vm.sh"
desired() {
  printf '{"tenants": ['
  for i in 0 1 2; do
    [ "$i" -gt 0 ] && printf ','
    printf '{"tenant_id": "c%d", "flake_ref": "path:%s", "profile": "minimal", "vcpus": 1, "mem_mib": 128, "state": "%s"}' "$i" "$flake" "$1"
  done
  printf ']}\n'
}
desired running > "$work/running.json"
desired stopped > "$work/stopped.json"
echo '{"tenants": []}' > "$work/none.json"
vms() {
  ps -eo pid=,stat=,args= | awk -v id="$1" '$2 !~ /^Z/ && $3 == "/firecracker" {
    for (i = 4; i < NF; i++) if ($i == "--id" && $(i + 1) == id) print $1 }' | wc -l
}
m agent reconcile --desired "$work/stopped.json" > "$work/out" 2>&1 || { cat "$work/out"; fail "setup"; }
for run in $(seq 1 20); do
  if [ $((run % 2)) = 1 ]; then goal=running want=1; else goal=stopped want=0; fi
  "$mvm" --config "$work/node.toml" agent reconcile --desired "$work/$goal.json" > /dev/null 2>&1 &
  pid=$!
  sleep "0.$(( RANDOM % 25 ))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # A child the killed run had just forked may hold the node lock until it
  # execs (every fd mvm opens is close-on-exec): wait for it, as an agent
  # would; a VM holding it would make this time out.
  m agent reconcile --lock-timeout 10s --desired "$work/$goal.json" > "$work/out" 2>&1 || { cat "$work/out"; fail "run $run: reconcile after the kill failed"; }
  recovered=$(grep -o "Resources: .*" "$work/out" || echo "No changes")
  m agent reconcile --desired "$work/$goal.json" > "$work/out" 2>&1 || { cat "$work/out"; fail "run $run: second reconcile failed"; }
  grep -q "No changes." "$work/out" || { cat "$work/out"; fail "run $run: not converged"; }
  for t in c0 c1 c2; do
    [ "$(vms "$t")" = "$want" ] || fail "run $run: tenant $t has $(vms "$t") Firecrackers, want $want"
  done
  echo "converged after kill $run ($goal; recovery: $recovered)"
done
m agent reconcile --desired "$work/none.json" --prune > "$work/out" 2>&1 || { cat "$work/out"; fail "final prune"; }
for t in c0 c1 c2; do [ "$(vms "$t")" = 0 ] || fail "a VM of $t is left"; done
grep -q " $state/" /proc/self/mountinfo && fail "mounts left"
[ -e "$cg/$parent" ] && fail "cgroups left"
echo "ok: nothing leaked"
