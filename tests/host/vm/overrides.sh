#!/bin/bash
# The operator's overrides end to end with the real jailer and Firecracker
# and two revisions of the offline fixture flake, in the throwaway network
# and mount namespaces tests/host_vm.rs runs it in: a pin replaces exactly
# that VM and holds against the control plane's next reconcile; rollback
# returns to the first revision's exact store paths and config; a stop
# holds; release hands the tenant back; a tenant created by hand runs as
# its uid and is destroyed whole; a control-plane tenant cannot be
# destroyed; a conflict is blocked, naming both sources.
# Usage: overrides.sh MVM WORKDIR CGROUP_PARENT FIRECRACKER_DIR KERNEL
set -euo pipefail
mvm=$1 work=$2 parent=$3 fcdir=$(realpath "$4") kernel=$5
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/vm.sh"
# A second revision of the flake: another config.json, so another build.
flake_b=$work/flake-b
cp -r "$flake" "$flake_b"
sed -i 's/panic=1"}/panic=1 revision=b"}/' "$flake_b/flake.nix"
doc() {
  printf '{"tenants": [{"tenant_id": "va", "flake_ref": "path:%s", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}%s]}\n' "$flake" "${1:-}" > "$work/doc.json"
}
doc
echo '{"tenants": []}' > "$work/none.json"
fcs() {
  ps -eo pid=,stat=,args= | awk -v id="$1" '$2 !~ /^Z/ && $3 == "/firecracker" {
    for (i = 4; i < NF; i++) if ($i == "--id" && $(i + 1) == id) print $1 }'
}
artifact() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["artifact"]["store_path"])' "$state/tenants/$1/tenant.json"; }
yes_m() { m "$@" --auto-approve < /dev/null; }

m agent reconcile --desired "$work/doc.json" > "$work/out" 2>&1 || { cat "$work/out"; fail "first reconcile"; }
first=$(artifact va) first_pid=$(fcs va)
[ -n "$first_pid" ] || fail "va does not run"

yes_m tenant pin va --flake "path:$flake_b" > "$work/out" 2>&1 || { cat "$work/out"; fail "pin"; }
grep -q "tenant.va.vm must be replaced" "$work/out" || { cat "$work/out"; fail "the pin does not replace the VM"; }
second=$(artifact va)
[ "$second" != "$first" ] || fail "the pin did not build the second revision"
[ -n "$(fcs va)" ] && [ "$(fcs va)" != "$first_pid" ] || fail "the VM was not restarted onto the pin"
m agent reconcile --desired "$work/doc.json" > "$work/out" 2>&1 || { cat "$work/out"; fail "reconcile with the pin"; }
grep -q "No changes." "$work/out" && grep -q "va: pinned by hand to path:$flake_b" "$work/out" || { cat "$work/out"; fail "the pin does not hold against the control plane, or is not shown"; }
echo "ok: a pin replaces exactly that VM and holds against the control plane's reconcile"

yes_m tenant rollback va --steps 1 > "$work/out" 2>&1 || { cat "$work/out"; fail "rollback"; }
[ "$(artifact va)" = "$first" ] || fail "rollback did not return to the first revision's store path"
python3 - "$state/tenants/va/revisions.json" <<'PY' || fail "rollback's config is not the first revision's"
import json, sys
revs = json.load(open(sys.argv[1]))
assert revs[-1]["fc_config_sha256"] == revs[0]["fc_config_sha256"], revs
assert revs[-1]["lock"] == revs[0]["lock"] and revs[-1]["files"] == revs[0]["files"], revs
PY
yes_m tenant rollback va --steps 9 > "$work/out" 2>&1 && fail "a rollback past the history was taken"
grep -q "reaches none" "$work/out" || { cat "$work/out"; fail "the refusal does not say why"; }
yes_m tenant unpin va > "$work/out" 2>&1 || { cat "$work/out"; fail "unpin"; }
m agent plan --desired "$work/doc.json" | matches "No changes." || fail "unpin does not converge to the control plane's"
echo "ok: rollback returns to the first revision's store paths and config; unpin hands the revision back"

yes_m tenant stop va > "$work/out" 2>&1 || { cat "$work/out"; fail "stop"; }
m agent reconcile --desired "$work/doc.json" > "$work/out" 2>&1 || { cat "$work/out"; fail "reconcile after the stop"; }
[ -z "$(fcs va)" ] || fail "the control plane's reconcile restarted a stopped tenant"
yes_m tenant release va > "$work/out" 2>&1 || { cat "$work/out"; fail "release"; }
[ -n "$(fcs va)" ] || fail "release did not hand va back (running)"
echo "ok: a stop holds against the control plane until release"

yes_m tenant create vb --flake "path:$flake" --profile minimal --vcpus 1 --mem-mib 128 > "$work/out" 2>&1 || { cat "$work/out"; fail "create"; }
pid=$(fcs vb)
uid=$(grep -o '"uid": [0-9]*' "$state/tenants/vb/tenant.json" | grep -o '[0-9]*')
[ -n "$pid" ] && grep -q "^Uid:	$uid	" "/proc/$pid/status" || fail "vb does not run as its uid"
m agent reconcile --desired "$work/doc.json" --prune > "$work/out" 2>&1 || { cat "$work/out"; fail "prune with a local tenant"; }
[ -n "$(fcs vb)" ] || fail "--prune removed a tenant created by hand"
yes_m tenant destroy va > "$work/out" 2>&1 && fail "destroyed a control-plane tenant"
grep -q "would bring it back" "$work/out" || { cat "$work/out"; fail "the refusal does not say why"; }
yes_m tenant destroy vb > "$work/out" 2>&1 || { cat "$work/out"; fail "destroy"; }
[ -z "$(fcs vb)" ] && [ ! -e "$state/tenants/vb" ] && ! ip link show tap-vb > /dev/null 2>&1 || fail "destroy left something of vb"
ls "$state/archive" | matches '^vb-' || fail "vb's audit log was not archived"
echo "ok: a tenant created by hand runs as its uid, survives --prune and is destroyed whole; a control-plane tenant is not"

yes_m tenant create vc --flake "path:$flake" --profile minimal --vcpus 1 --mem-mib 128 > "$work/out" 2>&1 || { cat "$work/out"; fail "create vc"; }
doc ', {"tenant_id": "vc", "flake_ref": "path:'"$flake"'", "profile": "minimal", "vcpus": 2, "mem_mib": 128, "state": "running"}'
m agent plan --desired "$work/doc.json" > "$work/out" 2>&1 || true
grep -q "tenant vc is both in the control plane's desired state and created by hand" "$work/out" || { cat "$work/out"; fail "the conflict is not blocked and named"; }
echo "ok: a conflict between the control plane and a tenant created by hand is blocked, naming both"

m agent reconcile --desired "$work/none.json" --prune > /dev/null 2>&1 || true
