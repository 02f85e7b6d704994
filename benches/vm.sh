#!/bin/bash
# Benchmark: time from `mvm agent reconcile` start to N running
# Firecracker VMs (artifacts already built and cached), and the reconcile
# that stops them; release build, real jailer and Firecracker, in
# throwaway network and mount namespaces, as root.
#   sudo benches/vm.sh [N]   (needs ../shared/firecracker, nix-bin, busybox-static,
#                             target/test-kernel/vmlinuz — scripts/test.sh sets those up)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
if [ "${MVM_BENCH_INNER:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
  cargo build --release -q
  exec env MVM_BENCH_INNER=1 unshare --net --mount -- "$0" "$n"
fi
mount --make-rprivate /
ip link set lo up
work=$(mktemp -d) parent=mvm-bench-vm-$$
cg=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
fcdir=$(realpath ../shared/firecracker)
trap 'chattr -R -a "$work" 2>/dev/null; rm -rf "$work"; rmdir "$cg/$parent" 2>/dev/null || true' EXIT
cat > "$work/node.toml" <<TOML
state_dir = "$work/state"
[cgroup]
parent = "$parent"
allow_missing_controllers = true
[firecracker]
binary = "$fcdir/bin/firecracker"
jailer = "$fcdir/bin/jailer"
stop_timeout_secs = 5
[nix]
substituters = []
TOML
flake=$work/flake
mkdir -p "$flake/tools"
cp fixtures/flake/flake.nix "$flake/"
cp /bin/busybox "$flake/tools/busybox"
cp target/test-kernel/vmlinuz "$flake/vmlinux"
desired() {
  printf '{"tenants": ['
  for i in $(seq 0 $(($1 - 1))); do
    [ "$i" -gt 0 ] && printf ','
    printf '{"tenant_id": "v%d", "flake_ref": "path:%s", "profile": "minimal", "vcpus": 1, "mem_mib": 128, "state": "%s"}' "$i" "$flake" "$2"
  done
  printf ']}\n'
}
m() { ./target/release/mvm --config "$work/node.toml" agent reconcile "$@" > "$work/out" 2>&1 || { tail -20 "$work/out"; exit 1; }; }
ms() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "($e - $s) * 1000" | bc; }
for count in 1 "$n"; do
  desired "$count" stopped > "$work/stopped.json"
  desired "$count" running > "$work/running.json"
  m --desired "$work/stopped.json"            # everything but the VMs, artifacts built
  up=$(ms m --desired "$work/running.json")
  running=$(ps -eo stat=,args= | awk '$1 !~ /^Z/ && $2 == "/firecracker"' | wc -l)
  [ "$running" = "$count" ] || { echo "expected $count VMs, found $running" >&2; exit 1; }
  noop=$(ms m --desired "$work/running.json")
  down=$(ms m --desired "$work/stopped.json")
  printf '%d VMs: reconcile to running %.0f ms (no-op %.0f ms), to stopped %.0f ms\n' "$count" "$up" "$noop" "$down"
  # Each start's own measure, from its audit record: mvm's share beside
  # the jailer's and Firecracker's wait for their API.
  python3 - "$work/state/tenants" <<'PY'
import glob, json, statistics, sys
recs = [json.loads(l) for f in glob.glob(sys.argv[1] + "/*/audit.log") for l in open(f)]
vm = [r["details"] for r in recs if r["resource"].endswith(".vm") and r["result"] == "ok" and "mvm_us" in r["details"]]
for k in ("stage_us", "api_wait_us", "record_us", "mvm_us"):
    v = sorted(int(d[k]) / 1000 for d in vm)
    print("  %-11s median %6.1f ms, min %6.1f, max %6.1f (%d starts)" % (k[:-3], statistics.median(v), v[0], v[-1], len(v)))
PY
  echo '{"tenants": []}' > "$work/none.json"
  m --desired "$work/none.json" --prune
  [ ! -e "$cg/$parent" ] || { echo "cgroup parent left behind" >&2; exit 1; }
done
