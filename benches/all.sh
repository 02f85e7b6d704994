#!/bin/bash
# Every row of README's performance figures in one run, each with its
# baseline, on this host, as root (each bench makes its own throwaway
# namespaces and cleans up):
#   1. `agent plan` of 1,000 and 10,000 tenants, whole process (plan.sh)
#   2. reconcile of 200 tenants' dirs, cgroups and secrets beside the
#      direct-syscall floor, floor.py (reconcile.sh)
#   3. 500 tenants' network: from scratch, no-op, +1 tenant, -1 tenant,
#      prune of all 500 with their audit logs archived (net.sh)
#   4. a VM start with mvm's own share instrumented (vm.sh; needs the
#      Firecracker builds, a kernel image and nix, which scripts/test.sh
#      sets up — said and skipped when they are missing)
#   sudo benches/all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (namespaces, mounts, cgroups, taps, nft)" >&2; exit 1; }
cargo build --release -q
echo "== 1. agent plan, whole process"
benches/plan.sh 1000 10000
echo
echo "== 2. reconcile 200 tenants' dirs, cgroups, secrets vs the direct-syscall floor"
benches/reconcile.sh 200 3
echo
echo "== 3. 500 tenants' network (+1 tenant, prune of all 500)"
benches/net.sh 500 3
echo
echo "== 4. mvm's own time per VM start"
missing=
[ -x ../shared/firecracker/bin/firecracker ] || missing="$missing ../shared/firecracker"
[ -s target/test-kernel/vmlinuz ] || missing="$missing target/test-kernel/vmlinuz"
[ -x /usr/bin/nix ] || missing="$missing nix-bin"
[ -x /bin/busybox ] || missing="$missing busybox-static"
if [ -n "$missing" ]; then
  echo "skipped: benches/vm.sh needs$missing (scripts/test.sh --no-run sets them up)"
else
  benches/vm.sh 1
fi
