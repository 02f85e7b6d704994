#!/bin/bash
# Tenant secrets with the real jailer and Firecracker, in the throwaway
# network and mount namespaces tests/host_vm.rs runs it in: `set` leaves
# every VM alone; `rotate` replaces exactly that tenant's VM, whose jail
# then holds the new generation's image (read back through a loop mount)
# and the old generation is gone; nothing staged is no change; 10 kills of
# `rotate` at random points converge on the next one with the live
# generation whole; and a canary value appears in no output of any command,
# no file under the state dir or /tmp outside the tmpfs, and no sampled
# cmdline or environment of mvm, the jailer or Firecracker. The canary in
# a file name appears only where names are documented to: `set`'s and
# `tenant status`' output and the tenant's audit log.
# Usage: secrets.sh MVM WORKDIR CGROUP_PARENT FIRECRACKER_DIR KERNEL
set -euo pipefail
mvm=$1 work=$2 parent=$3 fcdir=$(realpath "$4") kernel=$5
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/vm.sh"

canary=mvmcanary$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
name_canary=namecanary$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The operator's input is on a tmpfs of its own, left out of the search.
mkdir -p "$work/in"
mount -t tmpfs -o size=16m tmpfs "$work/in"
input() { # input DIR VALUE: a flat directory of two secrets
  mkdir -p "$work/in/$1"
  printf '%s' "$2" > "$work/in/$1/db-password"
  printf '%s' "$2-key" > "$work/in/$1/$name_canary"
}
out=$work/outputs
mkdir -p "$out"
n=0
# r CMD...: runs mvm, keeping its stdout and stderr for the search.
r() { n=$((n + 1)); echo "$*" > "$work/commands.$n"; m "$@" > "$out/$n.out" 2> "$out/$n.err" < /dev/null; }
last() { cat "$out/$n.out" "$out/$n.err"; }

printf '{"tenants": [%s, %s]}\n' \
  '{"tenant_id": "sa", "flake_ref": "path:'"$flake"'", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "metadata": true}' \
  '{"tenant_id": "sb", "flake_ref": "path:'"$flake"'", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}' > "$work/doc.json"
fcs() {
  ps -eo pid=,stat=,args= | awk -v id="$1" '$2 !~ /^Z/ && $3 == "/firecracker" {
    for (i = 4; i < NF; i++) if ($i == "--id" && $(i + 1) == id) print $1 }'
}
# Every 20 ms, the cmdline and environment of mvm, the jailer, Firecracker
# and the metadata service.
( while :; do
    for p in $(pgrep -f 'firecracker|jailer|target/.*/mvm' || true); do
      cat "/proc/$p/cmdline" "/proc/$p/environ" 2>/dev/null || true
      echo
    done
    sleep 0.02
  done > "$work/samples" 2>/dev/null ) &
sampler=$!
trap 'kill $sampler 2>/dev/null || true; chattr -R -a "$work" 2>/dev/null || true' EXIT

r agent reconcile --desired "$work/doc.json" || { last; fail "first reconcile"; }
sa=$(fcs sa) sb=$(fcs sb)
[ -n "$sa" ] && [ -n "$sb" ] || fail "the VMs do not run"
jail_image=$state/tenants/sa/jail/firecracker/sa/root/secrets.img
tmpfs=$state/tenants/sa/secrets
in_jail() { # in_jail VALUE: the jail's secrets image holds VALUE as db-password
  mkdir -p "$work/mnt"
  mount -o loop,ro "$jail_image" "$work/mnt"
  local ok=0
  [ "$(cat "$work/mnt/db-password")" = "$1" ] || ok=1
  umount "$work/mnt"
  return $ok
}

input g1 "$canary"
r tenant secrets set sa --from-file "$work/in/g1" --auto-approve || { last; fail "set"; }
[ "$(fcs sa)" = "$sa" ] && [ "$(fcs sb)" = "$sb" ] || fail "set restarted a VM"
r tenant status sa
last | matches "staged 1 (db-password [0-9]* B, $name_canary" || { last; fail "status does not show the staged generation"; }
echo "ok: set stages generation 1 and leaves every VM running as it was"

r tenant secrets rotate sa --auto-approve || { last; fail "rotate"; }
last | matches "Rotating tenant sa's secrets: generation none -> 1" || { last; fail "rotate does not say what it rotates"; }
last | matches 'secrets *= "(sensitive) none" -> "(sensitive) generation 1, 2 files"' || { last; fail "the plan does not show the generation change"; }
[ -n "$(fcs sa)" ] && [ "$(fcs sa)" != "$sa" ] || fail "sa was not replaced"
[ "$(fcs sb)" = "$sb" ] || fail "rotating sa touched sb"
in_jail "$canary" || fail "sa's jail does not hold generation 1"
r tenant status sa
last | matches "live generation 1 (db-password" || { last; fail "status does not show generation 1 live"; }

input g2 "$canary-two"
r tenant secrets set sa --from-file "$work/in/g2" --auto-approve || { last; fail "second set"; }
[ -d "$tmpfs/gen-1" ] || fail "set removed the live generation"
r tenant secrets rotate sa --auto-approve || { last; fail "second rotate"; }
in_jail "$canary-two" || fail "sa's jail does not hold generation 2"
[ ! -e "$tmpfs/gen-1" ] && [ -d "$tmpfs/gen-2" ] || fail "the old generation was not removed: $(ls -A "$tmpfs")"
[ "$(fcs sb)" = "$sb" ] || fail "rotating sa touched sb"
echo "ok: rotate replaces exactly sa's VM onto the new generation, which its jail holds, and removes the old one"

pid=$(fcs sa)
r tenant secrets rotate sa --auto-approve || { last; fail "rotate with nothing staged"; }
last | matches "Nothing staged for tenant sa: its VM runs generation 2, the newest" || { last; fail "rotate with nothing staged does not say so"; }
[ "$(fcs sa)" = "$pid" ] || fail "rotate with nothing staged restarted the VM"
echo "ok: rotate with nothing staged changes nothing and exits 0"

# Everything else an operator runs, for the search.
r agent plan --desired "$work/doc.json"
r agent plan --desired "$work/doc.json" --json
r agent plan --desired "$work/doc.json" --out "$work/plan.json"
r agent reconcile --desired "$work/doc.json" --auto-approve
r tenant status sa --json
r tenant list
r tenant list --json
r tenant audit sa
r tenant audit sa --json
r node info
r node info --json
r net verify || true
r tenant revisions sa --json
printf '{"tenants": [%s]}\n' '{"tenant_id": "sc", "flake_ref": "path:/nonexistent/flake", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}' > "$work/broken.json"
r agent reconcile --desired "$work/broken.json" --auto-approve && fail "a build of a missing flake succeeded"

# 10 kills of rotate at random points; the next rotate converges.
killed=0
for run in $(seq 1 10); do
  input "k$run" "$canary-k$run"
  r tenant secrets set sa --from-file "$work/in/k$run" --auto-approve || { last; fail "run $run: set"; }
  "$mvm" --config "$work/node.toml" tenant secrets rotate sa --auto-approve > /dev/null 2>&1 < /dev/null &
  pid=$!
  sleep "$(( RANDOM % 2 )).$(printf %02d $(( RANDOM % 100 )))"
  kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
  wait "$pid" 2>/dev/null || true
  r tenant secrets rotate sa --auto-approve || { last; fail "run $run: rotate after the kill"; }
  r agent plan --desired "$work/doc.json" --target tenant.sa.vm
  last | matches "No changes." || { last; fail "run $run: not converged"; }
  in_jail "$canary-k$run" || fail "run $run: the VM does not run on the newest generation"
  live=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["vm"]["secrets"]["generation"])' "$state/tenants/sa/tenant.json")
  [ "$(ls "$tmpfs" | tr '\n' ' ')" = "gen-$live secrets.img " ] || fail "run $run: the tmpfs holds $(ls -A "$tmpfs")"
  e2fsck -fn "$tmpfs/gen-$live/secrets.img" > /dev/null 2>&1 || fail "run $run: the live image is not whole"
  m tenant audit sa --verify > /dev/null || fail "run $run: the audit chain is broken"
  echo "converged after kill $run"
done
echo "($killed of the 10 kills landed before rotate finished)"
echo "ok: killed rotates converge on the next one, with the live generation whole"

kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
# The search: every output, every file under the state dir and /tmp that
# is not on another filesystem (the tmpfs, the jail) or the checkout
# itself, every sample.
python3 - "$canary" "$name_canary" "$out" "$state" "$work/in" "$work/samples" "$PWD" <<'PY' || fail "a secret leaked"
import os, sys
canary, name, out, state, skip, samples, repo = sys.argv[1:8]
value, name_b = canary.encode(), name.encode()
hits, seen = [], 0
def scan(path, allow_name):
    global seen
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    seen += 1
    if value in data:
        hits.append(f"value in {path}")
    if name_b in data and not allow_name(path, data):
        hits.append(f"name in {path}")
def same_fs(p, dev):
    # Other tests make and remove files in /tmp meanwhile.
    try:
        return os.lstat(p).st_dev == dev
    except OSError:
        return False
def walk(root, allow_name):
    dev = os.stat(root).st_dev
    for d, dirs, files in os.walk(root):
        # The checkout (and its build outputs) may be in /tmp: mvm never
        # writes there.
        dirs[:] = [x for x in dirs if same_fs(os.path.join(d, x), dev) and os.path.join(d, x) not in (skip, repo)]
        for f in files:
            p = os.path.join(d, f)
            if same_fs(p, dev) and os.path.isfile(p) and not os.path.islink(p):
                scan(p, allow_name)
# The search finds what is there: the operator's input holds the value,
# and the samples caught the jailed Firecrackers.
assert value in open(os.path.join(skip, "g1", "db-password"), "rb").read(), "the search cannot see the value"
sampled = open(samples, "rb").read()
assert b"/firecracker\0--id" in sampled, f"no Firecracker was sampled ({len(sampled)} bytes)"
for f in sorted(os.listdir(out)):
    scan(os.path.join(out, f), lambda p, d: True)
walk(state, lambda p, d: p.endswith("/audit.log"))
walk("/tmp", lambda p, d: p.startswith(out + "/") or p.endswith("/audit.log"))
scan(samples, lambda p, d: False)
if hits:
    print("\n".join(hits), file=sys.stderr)
    sys.exit(1)
print(f"searched {seen} files", file=sys.stderr)
PY
# A file's name shows only in the outputs that document names: set's,
# status' and the audit log's.
python3 - "$name_canary" "$out" "$work" <<'PY' || fail "a file name shows where names are not documented"
import os, sys
name, out, work = sys.argv[1].encode(), sys.argv[2], sys.argv[3]
bad = []
for f in os.listdir(out):
    n = f.split(".")[0]
    if name in open(os.path.join(out, f), "rb").read():
        cmd = open(os.path.join(work, f"commands.{n}")).read()
        if not cmd.startswith(("tenant secrets set", "tenant status", "tenant audit")):
            bad.append(cmd.strip())
if bad:
    print("\n".join(bad))
    sys.exit(1)
PY
echo "ok: the canary appears in no output, no file outside the tmpfs, no cmdline or environment"
