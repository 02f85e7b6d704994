#!/bin/sh
# The init (pid 1) of mvm's `minimal` and `standard` guest profiles
# (nix/guest.nix puts it at /sbin/init): mounts /proc, /sys, /dev and /run;
# eth0 is already configured by the kernel from the `ip=` boot argument mvm
# passes; mounts the secrets drive at /run/secrets ro,noexec,nodev,nosuid
# (mvm-secrets-mount.sh, beside this file) and the data volume (the ext4
# labelled `data`, when the tenant has one) at /data nosuid,nodev; and
# writes where the metadata service is to /run/mvm-metadata. Then it runs
# a shell (the profile's services replace it).
#
# For tests: MVM_GUEST_ROOT puts everything below that directory and ends
# instead of running the shell; MVM_SECRETS_CANDIDATES and
# MVM_DATA_CANDIDATES replace the disks looked at (default /dev/vd[a-z]).
set -eu

root=${MVM_GUEST_ROOT:-}
here=$(dirname "$(readlink -f "$0")")
metadata=${MVM_METADATA_ADDRESS:-169.254.169.254}

mounted() { mountpoint -q "$1" 2>/dev/null; }

mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/run"
mounted "$root/proc" || mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mounted "$root/sys" || mount -t sysfs -o nosuid,nodev,noexec sys "$root/sys"
mounted "$root/dev" || mount -t devtmpfs -o nosuid dev "$root/dev"
mounted "$root/run" || mount -t tmpfs -o nosuid,nodev,mode=0755 run "$root/run"
ip link set lo up 2>/dev/null || true

MVM_SECRETS_DIR="$root/run/secrets" sh "$here/mvm-secrets-mount.sh"

label_of() {
  dd if="$1" bs=1 skip=1144 count=16 2>/dev/null | tr -d '\000'
}
for d in ${MVM_DATA_CANDIDATES:-$(echo /dev/vd[a-z])}; do
  [ -b "$d" ] || continue
  if [ "$(label_of "$d")" = data ]; then
    mkdir -p "$root/data"
    mount -t ext4 -o nosuid,nodev "$d" "$root/data"
    break
  fi
done

echo "MVM_METADATA=http://$metadata" > "$root/run/mvm-metadata"

[ -n "$root" ] && exit 0
exec /bin/sh
