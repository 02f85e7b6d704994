#!/bin/bash
# A tenant directory swapped with a link to a canary directory, over and
# over, while 50 reconciles and prunes run: whatever each run manages or
# refuses, the canary must be left byte for byte as it was — no file
# written, moved, appended to, flagged, mounted over or removed in it.
# Runs in the throwaway mount namespace tests/host_reconcile.rs gives it.
# Usage: race.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"

canary=$work/canary
mkdir -p "$canary/jail" "$canary/secrets"
echo '{"format_version": 1}' > "$canary/tenant.json"
echo 'canary log' > "$canary/audit.log"
echo 'keep' > "$canary/jail/file"
canary_sum() { (cd "$canary" && find . -printf '%p %y %m %s %n %U %G\n' | sort && find . -type f -exec sha256sum {} + | sort && lsattr -R . 2>/dev/null | sort) | sha256sum; }
before=$(canary_sum)
# Four tenants, each swapped by its own loop, all pointing at one canary.
desired_json r 4 > "$work/r.json"
echo '{"tenants": []}' > "$work/empty.json"

# The swapper: move the real tenant dir aside, put a link to the canary in
# its place, then put things back — as fast as it can.
swapper() {
  set +e
  local t=$state/tenants/$1
  while :; do
    if [ -d "$t" ] && [ ! -L "$t" ]; then
      mv -T "$t" "$t.x" 2>/dev/null && ln -sfn "$canary" "$t" 2>/dev/null
      rm -f "$t" 2>/dev/null; mv -T "$t.x" "$t" 2>/dev/null || true
    else
      mkdir -p "$state/tenants" 2>/dev/null; ln -sfn "$canary" "$t" 2>/dev/null
      [ -L "$t" ] && rm -f "$t" 2>/dev/null
    fi
  done
}
m agent reconcile --desired "$work/r.json" "${targets[@]}" > /dev/null
swaps=()
for r in r0 r1 r2 r3; do swapper "$r" & swaps+=($!); done
trap 'kill "${swaps[@]}" 2>/dev/null || true; chattr -R -a "$work" 2>/dev/null || true' EXIT
refused=0
for i in $(seq 50); do
  if [ $((i % 2)) = 1 ]; then
    m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > "$work/run.out" 2>&1 || refused=$((refused + 1))
  else
    m agent reconcile --desired "$work/r.json" "${targets[@]}" > "$work/run.out" 2>&1 || refused=$((refused + 1))
  fi
  [ "$before" = "$(canary_sum)" ] || { cat "$work/run.out"; ls -laR "$canary"; fail "run $i changed the canary"; }
done
kill "${swaps[@]}" 2>/dev/null || fail "a swapper died early"; wait "${swaps[@]}" 2>/dev/null || true
awk -v c="$canary" 'index($5, c) == 1 { found = 1 } END { exit found }' /proc/self/mountinfo || fail "something is mounted in the canary"
[ "$before" = "$(canary_sum)" ] || fail "the canary changed"
echo "ok: the canary is untouched after 50 runs ($refused refused a planted link)"

# Put things back and clean up.
for r in r0 r1 r2 r3; do
  t=$state/tenants/$r
  [ -L "$t" ] && rm -f "$t"
  [ -d "$t.x" ] && [ ! -e "$t" ] && mv -T "$t.x" "$t"
done
chattr -R -a "$state" 2>/dev/null || true
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > /dev/null 2>&1 || true
