#!/bin/bash
# A VM's logs and metrics with the real jailer and Firecracker, in the
# throwaway network, mount and pid namespaces tests/host_vm.rs runs it in:
# Firecracker writes only FIFOs bound into its jail, read by a log pump that
# runs as nobody; `tenant metrics` shows a running Firecracker's counters
# after FlushMetrics, summed over the run; `tenant logs --follow` sees new
# lines and a terminal never gets the guest's control characters; a flood
# written into the log as the tenant stays within the bound; the logs
# survive stop, start and replacement (`--previous`); a planted link or
# hard link where a log should be is refused and nothing outside is
# written; `node metrics` and `agent run --metrics-listen` parse with
# Prometheus' own parser and carry every series the README documents; a
# prune archives the logs and leaves no pump.
# Usage: logs.sh MVM WORKDIR CGROUP_PARENT FIRECRACKER_DIR KERNEL README
set -euo pipefail
mvm=$1 work=$2 parent=$3 fcdir=$(realpath "$4") kernel=$5 readme=$6
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/vm.sh"
bound=65536
cat >> "$work/node.toml" <<TOML
[logs]
max_bytes = $bound
previous_runs = 2
TOML
doc() { # doc FILE VCPUS
  printf '{"tenants": [{"tenant_id": "la", "flake_ref": "path:%s", "profile": "minimal", "vcpus": %d, "mem_mib": 256, "state": "running", "metadata": true}]}\n' "$flake" "$2" > "$1"
}
doc "$work/d1.json" 1
doc "$work/d2.json" 2
echo '{"tenants": []}' > "$work/none.json"
fcs() {
  ps -eo pid=,stat=,args= | awk '$2 !~ /^Z/ && $3 == "/firecracker" {
    for (i = 4; i < NF; i++) if ($i == "--id" && $(i + 1) == "la") print $1 }'
}
pumps() { ps -eo pid=,stat=,args= | awk '$2 !~ /^Z/ && $4 == "__log-pump" { print $1 }'; }
# wait_for CMD: up to 5 s for CMD to succeed.
wait_for() { for _ in $(seq 100); do eval "$1" && return 0; sleep 0.05; done; return 1; }
logs=$state/tenants/la/logs
jroot=$state/tenants/la/jail/firecracker/la/root
used() { df --output=used -B1 "$state" | tail -1; }

m agent reconcile --desired "$work/d1.json" > "$work/out1" 2>&1 || { cat "$work/out1"; fail "first reconcile"; }
pid=$(fcs)
[ "$(echo "$pid" | wc -w)" = 1 ] || fail "expected one Firecracker, found: $pid"
uid=$(grep -o '"uid": [0-9]*' "$state/tenants/la/tenant.json" | grep -o '[0-9]*')
wait_for 'grep -q "API server started" "$logs/firecracker.log"' || fail "Firecracker's log has no start line: $(cat "$logs/firecracker.log")"
wait_for 'grep -q "^20[0-9-]*T[0-9:.]*Z .*Running Firecracker" "$logs/vm.log"' || fail "its stamped output is not in vm.log: $(cat "$logs/vm.log")"
for f in fc.log fc.metrics; do
  fifo=$logs/$f.fifo
  [ "$(stat -c '%F %u %a' "$fifo")" = "fifo $uid 600" ] || fail "$fifo is not the tenant's 0600 FIFO: $(stat -c '%F %u %a' "$fifo")"
  awk -v p="$jroot/$f" '$5 == p { print $6 }' /proc/self/mountinfo | matches '^rw,nosuid,nodev,noexec' || fail "$f is not bound nosuid,nodev,noexec into the jail"
  [ "$(stat -c %i "$jroot/$f")" = "$(stat -c %i "$fifo")" ] || fail "the jail's $f is not the FIFO"
done
# What Firecracker holds open: its FIFOs, the pipe, the jail's own files
# (still reading its config and filter just after its API answers), never
# a file of the host's.
for fd in /proc/"$pid"/fd/*; do
  t=$(readlink "$fd")
  t=${t#"$jroot"}
  case $t in
    /fc.log | /fc.metrics | pipe:* | socket:* | anon_inode:* | /dev/* | /vmlinux | /rootfs.ext4 | /secrets.img | /vm.json | /filter.bpf) ;;
    *) fail "Firecracker holds $t open" ;;
  esac
done
pump=$(pumps)
[ "$(echo "$pump" | wc -w)" = 1 ] || fail "expected one log pump, found: $pump"
# (It drops them as it starts, which a loaded machine may not have got to.)
wait_for 'grep -q "^NoNewPrivs:	1$" "/proc/$pump/status"' || fail "the log pump may gain privileges"
grep -q "^Uid:	65534	65534	65534	65534$" "/proc/$pump/status" || fail "the log pump is not nobody: $(grep Uid "/proc/$pump/status")"
grep -q "^CapEff:	0000000000000000$" "/proc/$pump/status" || fail "the log pump has capabilities"
n=$(ls "/proc/$pump/fd" | wc -l); [ "$n" -le 10 ] || fail "the log pump holds $n fds: $(ls -l "/proc/$pump/fd/" 2>&1)"
echo "ok: Firecracker writes only FIFOs bound into its jail (nosuid,nodev,noexec, the tenant's 0600); one log pump reads them as nobody with no capabilities"

m tenant metrics la --json > "$work/m1.json" || fail "tenant metrics --json"
m tenant metrics la --json > "$work/m2.json" || fail "tenant metrics --json (2)"
/usr/bin/python3 - "$work/m1.json" "$work/m2.json" <<'PY' || fail "tenant metrics: $(cat "$work/m2.json")"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for m in (a, b):
    assert m["running"] and m["flushed"], m
    assert m["vcpus"] == 1 and m["mem_mib"] == 256 and m["starts"] == 1, m
    assert m["uptime_secs"] >= 0, m
fa, fb = a["firecracker"], b["firecracker"]
# Each flush is one more line and one more PUT /actions, summed.
assert fb["lines"] > fa["lines"] >= 2, (fa["lines"], fb["lines"])
put = "put_api_requests.actions_count"
assert fb["counters"][put] > fa["counters"][put] >= 1, (fa["counters"][put], fb["counters"][put])
for k in ("vcpu.exit_io_in", "net.rx_bytes_count", "block_rootfs.read_bytes"):
    assert k in fb["counters"], k
assert "seccomp.num_faults" in fb["gauges"]
PY
m tenant metrics la > "$work/m.txt" || fail "tenant metrics"
for w in "running (pid $pid)" "vcpu exits" "net rx" "block rootfs" "api requests" "seccomp faults" "(flushed now)"; do
  grep -qF "$w" "$work/m.txt" || { cat "$work/m.txt"; fail "tenant metrics lacks $w"; }
done
echo "ok: tenant metrics flushes a running Firecracker's metrics and shows its counters summed over the run"

# --follow sees a line written after it started: the API request that a
# flush is, in Firecracker's log.
# (Not through m(): $! must be mvm itself, not a subshell.)
"$mvm" --config "$work/node.toml" tenant logs la --firecracker --follow > "$work/follow" 2>&1 &
follower=$!
# Each try makes a new line (a follower that started late shows the next).
wait_for 'm tenant metrics la > /dev/null; grep -q "/actions" "$work/follow"' || { kill $follower; fail "--follow did not show the new line: $(cat "$work/follow")"; }
kill $follower; wait $follower 2>/dev/null || true
# As the tenant, from inside its jail: escape sequences into its log.
as_tenant() { # as_tenant PYTHON: run with `root` (the jail root's fd) after dropping to the tenant
  /usr/bin/python3 - "$jroot" "$uid" "$1" <<'PY'
import os, sys
root = os.open(sys.argv[1], os.O_DIRECTORY)
uid = int(sys.argv[2])
os.setgroups([]); os.setgid(uid); os.setuid(uid)
exec(sys.argv[3])
PY
}
as_tenant 'fd = os.open("fc.log", os.O_WRONLY, dir_fd=root); os.write(fd, b"evil \x1b]0;owned\x07 \x1b[2J tail\n")'
wait_for 'grep -q "tail$" "$logs/firecracker.log"' || fail "the tenant's line did not reach the log"
script -qec "$mvm --config $work/node.toml tenant logs la --firecracker --lines 1" /dev/null > "$work/tty" || fail "tenant logs on a terminal"
grep -qF 'evil \u{1b}]0;owned\u{7} \u{1b}[2J tail' "$work/tty" || fail "the terminal did not get the line escaped: $(od -c "$work/tty" | head)"
if grep -q $'\x1b' "$work/tty"; then fail "a raw escape reached the terminal: $(od -c "$work/tty" | head)"; fi
m tenant logs la --firecracker --lines 1 > "$work/plain"
grep -q $'\x1b]0;owned\x07' "$work/plain" || fail "piped output is not the log's bytes"
echo "ok: --follow shows new lines; on a terminal the guest's escape sequences are shown escaped, piped they are the log's bytes"

before=$(used)
as_tenant '
fd = os.open("fc.log", os.O_WRONLY, dir_fd=root)
line = b"x" * 99 + b"\n"
for _ in range(20000):
    os.write(fd, line)
os.write(fd, b"END-OF-FLOOD\n")'
wait_for 'grep -q "END-OF-FLOOD" "$logs/firecracker.log"' || fail "the flood's last line never reached the log"
size=$(stat -c %s "$logs/firecracker.log")
[ "$size" -le "$bound" ] || fail "the log grew to $size bytes past its bound of $bound"
grep -q "reached its bound of $bound bytes" "$logs/firecracker.log" || fail "the log does not say it dropped its oldest part"
[ "$(fcs)" = "$pid" ] || fail "the flood stopped the VM"
[ $(( $(used) - before )) -lt $((1 << 20)) ] || fail "2 MB written by the tenant used $(( $(used) - before )) bytes of the state filesystem"
echo "ok: 2 MB written into its log as the tenant leaves the file within its bound of $bound bytes, newest lines kept"

m tenant stop la > "$work/stop" 2>&1 || { cat "$work/stop"; fail "tenant stop"; }
[ -z "$(fcs)" ] || fail "tenant stop left a Firecracker"
wait_for '[ -z "$(pumps)" ]' || fail "the log pump outlived its VM: $(pumps)"
grep -q "END-OF-FLOOD" "$logs/firecracker.log" || fail "the log did not survive the stop"
cp "$logs/firecracker.log" "$work/run1.fc"
cp "$logs/vm.log" "$work/run1.vm"
m tenant start la > "$work/start" 2>&1 || { cat "$work/start"; fail "tenant start"; }
[ "$(fcs | wc -w)" = 1 ] || fail "tenant start: no Firecracker"
m tenant logs la --previous --firecracker > "$work/prev" || fail "tenant logs --previous"
cmp -s "$work/prev" "$work/run1.fc" || fail "--previous is not the first run's log: $(diff "$work/prev" "$work/run1.fc" | head)"
m tenant logs la --previous --vm > "$work/prev.vm" || fail "tenant logs --previous --vm"
cmp -s "$work/prev.vm" "$work/run1.vm" || fail "--previous --vm is not the first run's output"
m agent reconcile --desired "$work/d2.json" > "$work/out2" 2>&1 || { cat "$work/out2"; fail "vcpus change"; }
grep -q "tenant.la.vm must be replaced" "$work/out2" || fail "a vcpus change did not replace the VM"
m tenant logs la --previous 2 --firecracker > "$work/prev2" || fail "tenant logs --previous 2"
cmp -s "$work/prev2" "$work/run1.fc" || fail "after a replacement the first run's log is not --previous 2"
m tenant logs la --previous --build > "$work/err" 2>&1 && fail "--previous --build was accepted"
grep -q "not kept per run" "$work/err" || fail "--previous --build: $(cat "$work/err")"
echo "ok: the logs survive stop, start and replacement; --previous and --previous 2 are the earlier runs' exactly"

m tenant stop la > /dev/null 2>&1 || fail "tenant stop (2)"
echo untouched > "$work/outside"
echo untouched > "$work/outside2"
mv "$logs/firecracker.log" "$work/saved.fc"
ln -s "$work/outside" "$logs/firecracker.log"
m tenant start la > "$work/linked" 2>&1 && fail "a VM started with a link where its log should be"
grep -q "not a regular file of one link" "$work/linked" || { cat "$work/linked"; fail "the refusal does not say why"; }
[ -z "$(fcs)" ] || fail "a Firecracker runs after the refusal"
rm "$logs/firecracker.log"
mv "$logs/vm.log.1" "$work/saved.vm1"
ln "$work/outside2" "$logs/vm.log.1"
m tenant start la > "$work/hard" 2>&1 && fail "a VM started with a hard link to a file elsewhere among its logs"
grep -q "vm.log.1: refusing: not a regular file of one link" "$work/hard" || { cat "$work/hard"; fail "the hard link's refusal does not name it"; }
[ "$(cat "$work/outside")" = untouched ] && [ "$(cat "$work/outside2")" = untouched ] || fail "a file outside the logs was written"
rm "$logs/vm.log.1"
mv "$work/saved.vm1" "$logs/vm.log.1"
mv "$work/saved.fc" "$logs/firecracker.log"
m tenant start la > "$work/start2" 2>&1 || { cat "$work/start2"; fail "tenant start after the links went"; }
[ "$(fcs | wc -w)" = 1 ] || fail "no Firecracker after the links went"
echo "ok: a link or a hard link where a log should be is refused, nothing outside is written, and the next start works"

# Every series the README documents, parsed by Prometheus' own parser.
documented=$(sed -n '/^## Logs and metrics/,/^## [^L]/p' "$readme" | grep -o '`mvm_[a-z_]*`' | tr -d '`' | sort -u)
[ "$(echo "$documented" | wc -l)" -ge 20 ] || fail "the README documents only: $documented"
wait_for '[ -s "$state/metadata.stats.json" ]' || fail "the metadata service wrote no counters"
check_metrics() { # check_metrics FILE
  /usr/bin/python3 - "$1" "$documented" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
families = list(text_string_to_metric_families(text))
names = {s.name for f in families for s in f.samples}
documented = set(sys.argv[2].split())
missing = sorted(documented - names)
assert not missing, "missing: %s" % missing
undocumented = sorted({f.name for f in families} - {n[:-6] if n.endswith("_total") else n for n in documented})
assert not undocumented, "not in the README: %s" % undocumented
get = lambda n, **l: [s.value for f in families for s in f.samples if s.name == n and all(s.labels.get(k) == v for k, v in l.items())]
assert get("mvm_tenant_vm_up", tenant="la") == [1.0], get("mvm_tenant_vm_up")
assert get("mvm_tenant_vm_starts_total", tenant="la")[0] >= 4
assert get("mvm_tenant_vm_restarts_total", tenant="la")[0] >= 3
assert get("mvm_tenant_vcpus", tenant="la") == [2.0]
assert get("mvm_tenant_memory_bytes", tenant="la") == [256.0 * 2**20]
assert get("mvm_node_vms_running") == [1.0] and get("mvm_metadata_up") == [1.0]
assert get("mvm_tenant_block_read_bytes_total", tenant="la", drive="rootfs"), "no rootfs drive"
print(len(families), "families,", sum(len(f.samples) for f in families), "samples")
PY
}
m node metrics > "$work/metrics.txt" || fail "node metrics"
check_metrics "$work/metrics.txt" > "$work/parsed" || fail "node metrics does not parse or lacks a series: $(cat "$work/metrics.txt")"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$mvm" --config "$work/node.toml" agent run --desired "$work/d2.json" --metrics-listen ":$port" > "$work/agent" 2>&1 &
agent=$!
wait_for 'curl -sf "http://127.0.0.1:$port/metrics" -o "$work/scraped"' || { kill $agent; cat "$work/agent"; fail "agent run does not serve /metrics"; }
check_metrics "$work/scraped" > /dev/null || { kill $agent; fail "/metrics does not parse or lacks a series"; }
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/other")
[ "$code" = 404 ] || { kill $agent; fail "/other answered $code"; }
grep -q "metrics served.*http://127.0.0.1:$port/metrics" "$work/agent" || { kill $agent; fail "the agent does not say where it serves"; }
kill -TERM $agent; wait $agent || fail "agent run did not exit 0 on SIGTERM: $(tail "$work/agent")"
echo "ok: node metrics and agent run --metrics-listen parse with Prometheus' parser and carry every documented series ($(cat "$work/parsed"))"

m agent reconcile --desired "$work/none.json" --prune > "$work/prune" 2>&1 || { cat "$work/prune"; fail "prune"; }
[ -z "$(fcs)" ] || fail "prune left a Firecracker"
wait_for '[ -z "$(pumps)" ]' || fail "prune left a log pump"
archived=$(ls -d "$state"/archive/la-*/logs)
grep -q "API server started" "$archived/firecracker.log" || fail "the archive lacks the VM's log"
[ -z "$(find "$archived" -type p)" ] || fail "FIFOs were archived"
[ ! -e "$state/tenants/la" ] || fail "prune left the tenant's directory"
echo "ok: prune archives the logs with the audit log and leaves no pump"
