#!/bin/bash
# Crash safety: SIGKILL `mvm agent reconcile` at random points, 20 times,
# alternating between building 30 tenants and pruning them; after each kill
# a new reconcile must converge (exit 0, then a no-op), every state file
# must stay readable, and at the end nothing may be left behind.
# Usage: crash.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"

desired_json t 30 > "$work/many.json"
echo '{"tenants": []}' > "$work/none.json"

for run in $(seq 1 20); do
  if [ $((run % 2)) = 1 ]; then desired=$work/many.json; prune=(); else desired=$work/none.json; prune=(--prune); fi
  "$mvm" --config "$work/node.toml" agent reconcile --desired "$desired" "${prune[@]}" "${targets[@]}" > /dev/null 2>&1 &
  pid=$!
  # A random point: from before the lock to the middle of applying.
  sleep "0.0$(( RANDOM % 60 + 1 ))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true

  m agent reconcile --desired "$desired" "${prune[@]}" "${targets[@]}" > "$work/out" 2>&1 || { cat "$work/out"; fail "run $run: reconcile after the kill failed"; }
  # Where the kill landed: what the recovery run still had to do.
  recovered=$(grep -o "Resources: .*" "$work/out" || echo "No changes")
  m agent reconcile --desired "$desired" "${prune[@]}" "${targets[@]}" > "$work/out" 2>&1 || { cat "$work/out"; fail "run $run: second reconcile failed"; }
  grep -q "No changes." "$work/out" || { cat "$work/out"; fail "run $run: not converged"; }
  m agent observe --json > "$work/observed.json"
  grep -q '"record_error": "' "$work/observed.json" && fail "run $run: a state file is unreadable"
  for t in "$state"/tenants/*/; do
    [ -e "$t" ] || continue
    m tenant audit "$(basename "$t")" --verify > /dev/null || fail "run $run: audit chain of $(basename "$t") broken"
  done
  echo "converged after kill $run (recovery: $recovered)"
done

m agent reconcile --desired "$work/none.json" --prune "${targets[@]}" > "$work/out" 2>&1 || { cat "$work/out"; fail "final prune"; }
[ -z "$(ls "$state/tenants")" ] || fail "tenant dirs left"
[ -z "$(find "$cg/$parent" -mindepth 1 -type d)" ] || fail "cgroups left"
grep -q " $state/" /proc/self/mountinfo && fail "mounts left"
leftover=$(find "$state" -name '.*.tmp.*')
[ -z "$leftover" ] || fail "temp files left: $leftover"
echo "ok: nothing leaked"
