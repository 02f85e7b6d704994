#!/bin/bash
# Two reconciles at once: the first waits at its confirmation prompt (on a
# pseudo-terminal) holding the node lock; a second with --lock-timeout 0
# fails at once naming it; a third with a timeout waits, then applies once
# the first is answered "no".
# Usage: lock.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"
args="agent reconcile --desired fixtures/desired/example.json --target tenant.*.dirs --target tenant.*.cgroup --target tenant.*.secrets"

mkfifo "$work/answer"
script -qfec "$mvm --config $work/node.toml $args" /dev/null < "$work/answer" > "$work/first.out" 2>&1 &
first=$!
exec 3> "$work/answer"
for _ in $(seq 100); do grep -q "^pid" "$state/lock" 2>/dev/null && break; sleep 0.1; done
grep -q "^pid" "$state/lock" || fail "the first reconcile never took the lock"
holder=$(cut -d' ' -f2 < "$state/lock")

if m agent reconcile --desired fixtures/desired/example.json "${targets[@]}" --lock-timeout 0 > "$work/out2" 2> "$work/err2" < /dev/null; then
  fail "the second reconcile ran while the first held the lock"
fi
grep -q "is held by pid $holder (.*agent reconcile" "$work/err2" || { cat "$work/err2"; fail "the refusal does not name the holder"; }
echo "ok: second reconcile refused, naming the first (pid $holder)"

m agent reconcile --desired fixtures/desired/example.json "${targets[@]}" --lock-timeout 30s > "$work/out3" 2> "$work/err3" < /dev/null &
third=$!
for _ in $(seq 50); do grep -q "Waiting for the node lock" "$work/err3" && break; sleep 0.1; done
grep -q "Waiting for the node lock, held by pid $holder" "$work/err3" || { cat "$work/err3"; fail "the third did not say whom it waits for"; }
echo no >&3
exec 3>&-
wait "$first" && fail "the first applied although answered no"
grep -q "Apply cancelled." "$work/first.out" || { cat "$work/first.out"; fail "the first did not cancel"; }
wait "$third" || { cat "$work/out3" "$work/err3"; fail "the third failed"; }
grep -q "Apply complete!" "$work/out3" || { cat "$work/out3"; fail "the third did not apply"; }
echo "ok: third waited for the lock, then applied"

echo '{"tenants": []}' > "$work/none.json"
m agent reconcile --desired "$work/none.json" --prune "${targets[@]}" > "$work/out4" 2>&1 || { cat "$work/out4"; fail "cleanup prune"; }
