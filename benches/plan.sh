#!/bin/bash
# Benchmark: `mvm agent plan` as a whole process — parse the document,
# probe this host (an empty state dir), plan, render, write the text — for
# N generated tenants on a /16 subnet: wall time and peak RSS per run, and
# the size of the text. Release build; no root needed.
#   benches/plan.sh [N…]   (default: 1000 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/node.toml" <<TOML
state_dir = "$work/state"
[bridge]
subnet = "10.200.0.0/16"
gateway = "10.200.0.1"
TOML
for n in "${@:-1000 10000}"; do
  for count in $n; do
    python3 - "$count" > "$work/d.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"tenants": [{"tenant_id": f"t{i}", "flake_ref": f"github:org/app{i % 7}?rev=1356a192b7913b04c54574d18c28d46e6395428a",
    "profile": "minimal", "vcpus": 1 + i % 4, "mem_mib": 512, "state": "stopped" if i % 10 == 0 else "running",
    "metadata": i % 3 == 0} for i in range(n)]}))
PY
    for run in 1 2 3 4 5; do
      /usr/bin/time -f "%e %M" -o "$work/t" ./target/release/mvm --config "$work/node.toml" \
        agent plan --desired "$work/d.json" --no-color > "$work/out"
      read -r s kb < "$work/t"
      printf '%6d tenants, run %d: %4.0f ms, %4d MB RSS, %5.1f MB of text\n' "$count" "$run" \
        "$(echo "$s * 1000" | bc)" $((kb / 1024)) "$(echo "scale=1; $(stat -c %s "$work/out") / 1048576" | bc)"
    done
  done
done
