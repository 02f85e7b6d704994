#!/bin/bash
# An unmodified cloud client against the metadata service: cloud-init's
# own Ec2 datasource (Debian's cloud-init 22.4, unpacked, not changed) in a
# stand-in guest behind a real tap (guest.py pumps its frames as
# Firecracker would), through the nft redirect of 169.254.169.254, in the
# throwaway network, mount and pid namespaces tests/host_net.rs runs it in.
#  - tokens "required" (the default): cloud-init on a platform it does not
#    identify (no DMI, like every Firecracker guest — and this host) reads
#    without a token and is refused; on a platform that looks like EC2 (a
#    dmidecode stand-in answering EC2's uuid, the one piece of hardware
#    that cannot be here) it takes the IMDSv2 token flow and reads it all;
#  - tokens "optional": the unidentified guest reads it all too.
# Usage: cloud_init.sh MVM WORKDIR CGROUP_PARENT DIST_PACKAGES
set -euo pipefail
mvm=$1 work=$2 parent=$3 dist=$4
source "$(dirname "$0")/../lib/common.sh"
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/guests.sh"
net=(--target 'tenant.*.tap' --target 'tenant.*.nft' --target node.metadata)
mac=02:00:0a:c8:00:02
cat > "$work/d.json" <<JSON
{"tenants": [
 {"tenant_id": "ci", "flake_ref": "github:o/a", "profile": "minimal", "vcpus": 1, "mem_mib": 256, "state": "running", "ip": "10.200.0.2", "mac": "$mac", "metadata": true}
]}
JSON
m agent reconcile --desired "$work/d.json" "${net[@]}" > "$work/out" 2>&1 || { cat "$work/out"; fail "reconcile"; }
node_id=$(cat "$state/node-id")

stand_in_guest ci 2
for _ in $(seq 50); do
  ip netns exec g-ci python3 "$here/guest.py" imds 169.254.169.254 > /dev/null 2>&1 && break
  sleep 0.1
done

# The platform stand-ins for an EC2-looking guest: systemd-detect-virt
# says "not a container" (this host is one; a VM is not), dmidecode gives
# EC2's system uuid and serial.
mkdir -p "$work/ec2bin"
printf '#!/bin/sh\nexit 1\n' > "$work/ec2bin/systemd-detect-virt"
cat > "$work/ec2bin/dmidecode" <<'SH'
#!/bin/sh
case "$2" in
  system-uuid|system-serial-number) echo ec2e1916-9099-7caf-fd21-012345abcdef ;;
  *) echo "" ;;
esac
SH
chmod +x "$work/ec2bin/"*

# cloudinit NAME [PATH_PREFIX]: cloud-init's datasource in the guest; its
# JSON result in $work/NAME.json, its log in $work/NAME.log.
cloudinit() {
  ip netns exec g-ci env PATH="${2:+$2:}$PATH" /usr/bin/python3 "$here/cloud_init.py" "$dist" "$work/$1" > "$work/$1.json" 2> "$work/$1.log" \
    || { tail -30 "$work/$1.log"; fail "$1: cloud-init's datasource crashed"; }
}
# field NAME EXPR: a Python expression over the result `r`.
field() { /usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$work/$1.json" "$2"; }
# reads_everything NAME TOKEN: what cloud-init must have read.
reads_everything() {
  [ "$(field "$1" 'r["found"]')" = True ] || { tail -30 "$work/$1.log"; cat "$work/$1.json"; fail "$1: cloud-init did not detect the service"; }
  [ "$(field "$1" 'r["token"]')" = "$2" ] || fail "$1: token flow used: $(field "$1" 'r["token"]'), expected $2"
  [ "$(field "$1" 'r["api_version"]')" = 2021-03-23 ] || fail "$1: API version $(field "$1" 'r["api_version"]')"
  [ "$(field "$1" 'r["instance_id"]')" = ci ] || fail "$1: instance id $(field "$1" 'r["instance_id"]')"
  [ "$(field "$1" 'r["hostname"]')" = ci ] || fail "$1: hostname $(field "$1" 'r["hostname"]')"
  [ "$(field "$1" 'r["availability_zone"]')" = "$node_id" ] || fail "$1: availability zone $(field "$1" 'r["availability_zone"]')"
  [ "$(field "$1" 'r["network"]["ethernets"]["eth0"]["match"]["macaddress"]')" = "$mac" ] \
    || { cat "$work/$1.json"; fail "$1: network config does not name eth0 by its MAC"; }
}

cloudinit plain
[ "$(field plain 'r["found"]')" = False ] || { cat "$work/plain.json"; fail "a read without a token was answered under tokens = required"; }
[ "$(field plain 'r["token"]')" = False ] || fail "cloud-init asked for a token on an unidentified platform"
grep -q "tenant=ci GET /2009-04-04/meta-data/instance-id 401" "$state/metadata.log" || { tail "$state/metadata.log"; fail "the service did not log the tokenless reads it refused"; }
echo "ok: tokens required: cloud-init on an unidentified platform (a Firecracker guest) reads without a token and is refused"

cloudinit ec2 "$work/ec2bin"
[ "$(field ec2 'r["cloud_name"]')" = aws ] || { tail -30 "$work/ec2.log"; fail "the EC2 stand-in platform was not identified as aws"; }
reads_everything ec2 True
echo "ok: tokens required: cloud-init on an EC2-looking platform takes the token flow, picks API 2021-03-23, reads instance id, hostname, zone and network config"

printf '[metadata]\ntokens = "optional"\n' >> "$work/node.toml"
m agent reconcile --desired "$work/d.json" "${net[@]}" > "$work/out" 2>&1 || { cat "$work/out"; fail "reconcile with tokens optional"; }
grep -q 'tokens *= "required" -> "optional"' "$work/out" || { cat "$work/out"; fail "the plan does not show the tokens change"; }
cloudinit optional
reads_everything optional False
echo "ok: tokens optional: the unidentified guest's cloud-init detects the service and reads it all without a token"

# A token is <tenant>.<expiry>.<nonce>.<64 hex of HMAC>.
grep -Eq '[0-9a-f]{64}' "$state/metadata.log" && fail "a token reached the service's log"
echo "ok: no token in the service's log"
