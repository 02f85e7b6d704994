#!/bin/bash
# Benchmark: the tenant network of N tenants (bridge, taps, nft tables and
# elements), as root in throwaway network and mount namespaces, release
# build: reconcile from scratch, the no-op reconcile, adding one more
# tenant, removing one, and the nft transaction sizes.
#   sudo benches/net.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500} rounds=${2:-3}
if [ "${MVM_BENCH_INNER:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, taps, nft)" >&2; exit 1; }
  cargo build --release -q
  exec env MVM_BENCH_INNER=1 unshare --net --mount -- "$0" "$n" "$rounds"
fi
mount --make-rprivate /
ip link set lo up
work=$(mktemp -d)
trap 'chattr -R -a "$work"; rm -rf "$work"' EXIT
cat > "$work/node.toml" <<TOML
state_dir = "$work/state"
[bridge]
subnet = "10.200.0.0/16"
gateway = "10.200.0.1"
dns = ["10.200.0.1"]
TOML
desired() {
  printf '{"tenants": ['
  for i in $(seq 0 $(($1 - 1))); do
    [ "$i" -gt 0 ] && printf ','
    printf '{"tenant_id": "t%d", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "metadata": true}' "$i"
  done
  printf ']}\n'
}
desired "$n" > "$work/n.json"
desired $((n + 1)) > "$work/n1.json"
echo '{"tenants": []}' > "$work/none.json"
m() { ./target/release/mvm --config "$work/node.toml" agent reconcile "$@" --target 'tenant.*.tap' --target 'tenant.*.nft' > "$work/out" 2>&1 || { cat "$work/out"; exit 1; }; }
t() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "($e - $s) * 1000" | bc; }
echo "tenants=$n (network resources: bridge, nft tables, $n taps, $n element sets)"
for r in $(seq "$rounds"); do
  a=$(t m --desired "$work/n.json")
  b=$(t m --desired "$work/n.json")
  grep -q "No changes." "$work/out" || { echo "no-op run was not a no-op" >&2; exit 1; }
  c=$(t m --desired "$work/n1.json")
  grep -q "3 added" "$work/out" || { cat "$work/out"; echo "adding one tenant did not add its dirs, tap and elements" >&2; exit 1; }
  d=$(t m --desired "$work/n.json" --prune)
  grep -q "3 destroyed" "$work/out" || { cat "$work/out"; echo "removing one tenant did not destroy 3" >&2; exit 1; }
  # What each step took, as the apply reported it.
  e=$(t m --desired "$work/none.json" --prune)
  printf 'round %d: from scratch %.0f ms, no-op %.0f ms, +1 tenant %.0f ms, -1 tenant %.0f ms, prune all %.0f ms\n' "$r" "$a" "$b" "$c" "$d" "$e"
done
# Transaction sizes: the full ruleset, and one tenant's elements.
./target/release/mvm --config "$work/node.toml" agent plan --desired "$work/n.json" --json --target 'tenant.*.nft' > "$work/plan.json"
python3 - "$work/plan.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
for c in plan["resource_changes"]:
    if c["address"] == "node.nft":
        a = c["after"]
        print(f"node.nft transaction: {len(a['chains'])} chains, {len(a['sets'])} sets, {len(a['rules'])} rules "
              f"(the same for any number of tenants)")
    if c["address"] == "tenant.t0.nft":
        print(f"one tenant's transaction: {len(c['after']['elements'])} element adds")
PY
