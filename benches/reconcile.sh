#!/bin/bash
# Benchmark: `mvm agent reconcile` of N tenants' dirs, cgroups and secrets
# mounts from scratch beside the floor (`floor.py`: the same syscalls made
# directly), the no-op reconcile right after, and the prune, on this host,
# as root, inside a throwaway mount namespace. Release build.
#   sudo benches/reconcile.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200} rounds=${2:-3}
if [ "${MVM_BENCH_INNER:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "needs root (mounts, cgroups)" >&2; exit 1; }
  cargo build --release -q
  exec env MVM_BENCH_INNER=1 unshare --mount -- "$0" "$n" "$rounds"
fi
mount --make-rprivate /
work=$(mktemp -d) parent=mvm-bench-$$
cg=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
trap 'rmdir "$cg/$parent" 2>/dev/null || true; chattr -R -a "$work"; rm -rf "$work"' EXIT
cat > "$work/node.toml" <<TOML
state_dir = "$work/state"
[cgroup]
parent = "$parent"
allow_missing_controllers = true
[bridge]
subnet = "10.200.0.0/16"
gateway = "10.200.0.1"
TOML
{
  printf '{"tenants": ['
  for i in $(seq 0 $((n - 1))); do
    [ "$i" -gt 0 ] && printf ','
    printf '{"tenant_id": "t%d", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}' "$i"
  done
  printf ']}\n'
} > "$work/many.json"
echo '{"tenants": []}' > "$work/none.json"
m() { ./target/release/mvm --config "$work/node.toml" agent reconcile "$@" --target 'tenant.*.dirs' --target 'tenant.*.cgroup' --target 'tenant.*.secrets' > "$work/out" 2>&1 || { cat "$work/out"; exit 1; }; }
t() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }
echo "tenants=$n resources=$((3 * n)) parallelism=default"
for r in $(seq "$rounds"); do
  a=$(t m --desired "$work/many.json")
  b=$(t m --desired "$work/many.json")
  grep -q "No changes." "$work/out" || { echo "no-op run was not a no-op" >&2; exit 1; }
  c=$(t m --desired "$work/none.json" --prune)
  # The floor: the same syscalls made directly, one tenant after another.
  f=$(python3 benches/floor.py "$work/floor" "$cg/$parent-floor" "$n")
  rm -rf "$work/floor"; rmdir "$cg/$parent-floor"
  printf 'round %d: from scratch %.3f s (%.1fx the direct-syscall floor of %.3f s), no-op %.3f s, prune %.3f s\n' \
    "$r" "$a" "$(echo "$a / $f" | bc -l)" "$f" "$b" "$c"
done
