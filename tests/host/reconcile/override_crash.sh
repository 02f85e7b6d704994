#!/bin/bash
# Crash safety of the override commands: SIGKILL `mvm tenant stop` (of
# t0, t1, t2 in turn: a stop touches only the VM, which these tree-only
# tenants do not have, so nothing is built or networked) at random points,
# 10 times; after each kill overrides.json is the old one or the new one
# (never torn or half-written), the command run again converges, and no
# temporary file outlives the next write of its file. Run in fresh mount and network namespaces.
# Usage: override_crash.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"

desired_json t 3 > "$work/three.json"
m agent reconcile --desired "$work/three.json" "${targets[@]}" > "$work/out" 2>&1 || { cat "$work/out"; fail "first reconcile"; }

for run in $(seq 1 10); do
  t=t$((run % 3))
  "$mvm" --config "$work/node.toml" tenant stop "$t" --auto-approve > /dev/null 2>&1 < /dev/null &
  pid=$!
  sleep "0.0$(( RANDOM % 40 + 1 ))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -e "$state/overrides.json" ]; then
    python3 -c 'import json, sys; o = json.load(open(sys.argv[1])); assert all(v["state"]["state"] == "stopped" for v in o["tenants"].values()), o' "$state/overrides.json" \
      || fail "run $run: overrides.json is torn: $(cat "$state/overrides.json")"
  fi
  m tenant stop "$t" --auto-approve > "$work/out" 2>&1 < /dev/null || { cat "$work/out"; fail "run $run: the stop after the kill failed"; }
  python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["tenants"][sys.argv[2]]["state"]["state"] == "stopped"' "$state/overrides.json" "$t" \
    || fail "run $run: $t is not kept stopped"
  m agent reconcile --desired "$work/three.json" "${targets[@]}" > "$work/out" 2>&1 || { cat "$work/out"; fail "run $run: reconcile failed"; }
  grep -q "No changes." "$work/out" || { cat "$work/out"; fail "run $run: not converged"; }
  m tenant audit "$t" --verify > /dev/null || fail "run $run: the audit chain of $t is broken"
  echo "converged after kill $run"
done

# A killed writer's temporary files are removed by the next command on
# the same files, even one with nothing to write (two are planted, so
# this holds whatever the kills above happened to hit).
printf 'torn' > "$state/tenants/t1/.audit.head.tmp.999999"
printf 'torn' > "$state/.overrides.json.tmp.999999"
for t in t0 t1 t2; do
  m tenant stop "$t" --auto-approve > "$work/out" 2>&1 < /dev/null || { cat "$work/out"; fail "last stop of $t"; }
done
leftover=$(find "$state" -name '.*.tmp.*')
[ -z "$leftover" ] || fail "temp files left: $leftover"
echo "ok: killed override commands never tear overrides.json, and converge"
