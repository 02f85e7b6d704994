# Shared set-up of the reconcile host scripts, sourced after they set
# `mvm`, `work` and `parent`: a private mount namespace, a node config with
# a throwaway state dir and a test-unique cgroup parent, and helpers.

mount --make-rprivate /
# Archived audit logs are append-only: lift that so the caller can remove
# the work dir.
trap 'chattr -R -a "$work" 2>/dev/null || true' EXIT

state=$work/state
cg=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
cat > "$work/node.toml" <<TOML
state_dir = "$state"
[cgroup]
parent = "$parent"
# This host may bind memory/cpu/pids to cgroup v1; limits are then left out
# (the cgroup applier's limit writes are tested against a prepared tree).
allow_missing_controllers = true
TOML
# The tenant-tree kinds: the reconcile and lock scripts exercise the state
# tree, cgroups and mounts, with no build, network or VM.
targets=(--target 'tenant.*.dirs' --target 'tenant.*.cgroup' --target 'tenant.*.secrets')
m() { "$mvm" --config "$work/node.toml" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# `cmd | matches PATTERN`: like `grep -q`, but reads all of its input, so
# a producer that writes line by line (iproute2 flushes per entry) is never
# killed by SIGPIPE — which, under pipefail, would turn a match into a
# failure (or hide one behind `&& fail`).
matches() { grep "$@" > /dev/null; }

# desired_json PREFIX COUNT: a desired state of COUNT minimal tenants.
desired_json() {
  printf '{"tenants": ['
  for i in $(seq 0 $(($2 - 1))); do
    [ "$i" -gt 0 ] && printf ','
    printf '{"tenant_id": "%s%d", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running"}' "$1" "$i"
  done
  printf ']}\n'
}
