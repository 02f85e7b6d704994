#!/bin/bash
# Full reconcile cycle on a real kernel, inside the throwaway mount
# namespace tests/host_reconcile.rs runs it in: real tmpfs mounts, real
# cgroup directories under a test-unique parent in the real cgroup2 tree,
# a real state dir. Prints "ok: ..." per check; exits non-zero on the first
# failure with what went wrong.
# Usage: reconcile.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"
snapshot() { (cd "$state" && find . -path ./lock -prune -o -print | sort; grep " $state" /proc/self/mountinfo | cut -d' ' -f5,10- | sort) 2>/dev/null || true; }

# 1. From nothing: dirs, cgroups and secrets mounts of three tenants.
m agent reconcile --desired fixtures/desired/example.json "${targets[@]}" > "$work/out1" || { cat "$work/out1"; fail "first reconcile"; }
grep -q "Apply complete! Resources: 9 added, 0 changed, 0 destroyed." "$work/out1" || { cat "$work/out1"; fail "summary"; }
for t in acme globex initech; do
  d=$state/tenants/$t
  [ "$(stat -c %a "$d")" = 700 ] || fail "$d is not 0700"
  grep -q "^[^ ]* [^ ]* [^ ]* [^ ]* $d/secrets .*nosuid,nodev,noexec.* - tmpfs .*size=16384k,mode=700" /proc/self/mountinfo || fail "$t secrets tmpfs"
  [ -d "$cg/$parent/$t" ] || fail "$t cgroup"
  m tenant audit "$t" --verify > /dev/null || fail "$t audit chain"
done
case "$(stat -f -c %T "$state")" in
  ext2/ext3|xfs|btrfs)
    lsattr "$state/tenants/acme/audit.log" | cut -d' ' -f1 | matches a || fail "audit.log is not append-only"
    echo "append-only audit log checked" ;;
  *) echo "append-only audit log not checked: $(stat -f -c %T "$state") has no inode flags" ;;
esac
echo "ok: first reconcile created dirs, cgroups and tmpfs mounts"

# 2. Again: nothing to do, and nothing touched.
before=$(snapshot)
m agent reconcile --desired fixtures/desired/example.json "${targets[@]}" > "$work/out2"
grep -q "No changes." "$work/out2" || { cat "$work/out2"; fail "second reconcile was not a no-op"; }
[ "$before" = "$(snapshot)" ] || fail "the no-op reconcile changed the host"
echo "ok: second reconcile is a no-op"

# 3. Drift is repaired: a secrets mount remounted exec, a tenant dir chmod'ed.
mount -o remount,exec "$state/tenants/acme/secrets"
chmod 755 "$state/tenants/globex"
m agent reconcile --desired fixtures/desired/example.json "${targets[@]}" > "$work/out3" || { cat "$work/out3"; fail "repair"; }
grep -q "2 changed" "$work/out3" || { cat "$work/out3"; fail "repair summary"; }
grep " $state/tenants/acme/secrets " /proc/self/mountinfo | matches noexec || fail "noexec not restored"
[ "$(stat -c %a "$state/tenants/globex")" = 700 ] || fail "mode not restored"
echo "ok: drift repaired"

# 4. A tenant removed from desired.json is kept without --prune...
m agent reconcile --desired fixtures/desired/removed.json "${targets[@]}" > "$work/out4"
grep -q "Kept: 1 tenant" "$work/out4" || { cat "$work/out4"; fail "kept"; }
[ -d "$state/tenants/initech" ] || fail "initech was removed without --prune"
# ...and pruned with it, even with a process still in its cgroup.
sleep 300 & victim=$!
echo "$victim" > "$cg/$parent/initech/cgroup.procs"
m agent reconcile --desired fixtures/desired/removed.json --prune "${targets[@]}" > "$work/out5" || { cat "$work/out5"; fail "prune"; }
grep -q "3 destroyed" "$work/out5" || { cat "$work/out5"; fail "prune summary"; }
wait "$victim" 2>/dev/null || true
kill -0 "$victim" 2>/dev/null && fail "the process in the pruned cgroup survived"
[ -e "$state/tenants/initech" ] && fail "initech dir left behind"
[ -e "$cg/$parent/initech" ] && fail "initech cgroup left behind"
grep -q " $state/tenants/initech/" /proc/self/mountinfo && fail "initech mount left behind"
ls "$state"/archive/initech-*/audit.log > /dev/null || fail "initech audit log not archived"
m tenant audit initech --verify > "$work/audit" || { cat "$work/audit"; fail "archived audit log does not verify"; }
grep -q "archived log" "$work/audit" && grep -q "chain intact" "$work/audit" || { cat "$work/audit"; fail "archived log not read"; }
m tenant audit initech | tail -1 | matches "archive .*tenant.initech.dirs" || fail "no final archive record"
echo "ok: prune kills, unmounts, removes and archives the audit log"

# 5. SIGTERM in the middle of applying 120 tenants one at a time: running
#    steps finish, no new one starts, the summary says what was not
#    started, and the next reconcile converges.
desired_json s 120 > "$work/many.json"
"$mvm" --config "$work/node.toml" agent reconcile --desired "$work/many.json" --parallelism 1 "${targets[@]}" > "$work/out7" 2> "$work/err7" &
pid=$!
for _ in $(seq 200); do grep -q "Creation complete" "$work/out7" 2>/dev/null && break; sleep 0.02; done
kill -TERM "$pid"
if wait "$pid"; then cat "$work/out7"; fail "an interrupted reconcile exited 0"; fi
grep -q "Interrupt received" "$work/err7" || { cat "$work/err7"; fail "no interrupt message"; }
grep -q "Apply interrupted." "$work/out7" || { tail "$work/out7"; fail "no interrupted summary"; }
grep -q "not started: " "$work/out7" || fail "the summary does not list what was not started"
m agent reconcile --desired "$work/many.json" "${targets[@]}" > "$work/out8" || { cat "$work/out8"; fail "reconcile after SIGTERM"; }
m agent reconcile --desired "$work/many.json" "${targets[@]}" > "$work/out8"
grep -q "No changes." "$work/out8" || fail "not converged after SIGTERM"
echo "ok: SIGTERM stops new work, lets running steps finish, and the next run converges"

# 6. Saved plans: applied exactly; refused once the node changed.
m agent plan --desired fixtures/desired/example.json "${targets[@]}" --out "$work/plan.json" > /dev/null
m agent reconcile --plan "$work/plan.json" > "$work/out9" || { cat "$work/out9"; fail "saved plan"; }
grep -q "Apply complete!" "$work/out9" || fail "saved plan not applied"
m agent plan --desired fixtures/desired/empty.json --prune "${targets[@]}" --out "$work/plan2.json" > /dev/null
chmod 755 "$state/tenants/acme"
if m agent reconcile --plan "$work/plan2.json" > "$work/out10" 2> "$work/err10"; then fail "a stale plan was applied"; fi
grep -q "stale plan: the node changed since it was made (changed since: tenant.acme.dirs" "$work/err10" || { cat "$work/err10"; fail "stale plan message does not name what changed"; }
[ -d "$state/tenants/acme" ] || fail "the stale plan touched the node"
# A plan made with another node config is refused too.
sed 's/"parallelism": 10/"parallelism": 3/' "$work/plan.json" > "$work/plan3.json"
if m agent reconcile --plan "$work/plan3.json" > /dev/null 2> "$work/err11"; then fail "a plan with another node config was applied"; fi
grep -q "made with another node config" "$work/err11" || { cat "$work/err11"; fail "config mismatch message"; }
echo "ok: saved plan applied; stale plan refused"

# 7. Everything pruned: nothing left but the archive.
m agent reconcile --desired fixtures/desired/empty.json --prune "${targets[@]}" > "$work/out6" || { cat "$work/out6"; fail "prune all"; }
[ -z "$(ls "$state/tenants")" ] || fail "tenant dirs left: $(ls "$state/tenants")"
[ -z "$(find "$cg/$parent" -mindepth 1 -type d)" ] || fail "tenant cgroups left"
grep -q " $state/" /proc/self/mountinfo && fail "mounts left"
echo "ok: nothing left after pruning everything"
