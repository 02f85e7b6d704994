#!/bin/sh
# The guest side of mvm's tenant secrets, for the `minimal` and `standard`
# guest profiles (run once from init, before the services that read them):
# finds the secrets drive mvm attaches read-only (drive id `secrets`, an
# ext4 image labelled `mvm-secrets`) and mounts it at /run/secrets with
# ro,noexec,nodev,nosuid. A VM started before any secret was set gets a
# blank drive: then /run/secrets is an empty read-only tmpfs with the same
# options, so readers always find a directory and never a writable one.
#
# The drive is found by its label, read from each disk's ext4 superblock
# (s_volume_name, 16 bytes at byte 1144), so it needs nothing beyond a
# POSIX shell, dd, tr, mkdir and mount (busybox has them all); the order
# of the guest's virtio disks does not matter.
#
# For tests: MVM_SECRETS_DIR replaces /run/secrets, MVM_SECRETS_CANDIDATES
# the disks looked at (default /dev/vd[a-z]).
set -eu

dir=${MVM_SECRETS_DIR:-/run/secrets}
candidates=${MVM_SECRETS_CANDIDATES:-$(echo /dev/vd[a-z])}
label=mvm-secrets
opts=ro,noexec,nodev,nosuid

label_of() {
  dd if="$1" bs=1 skip=1144 count=16 2>/dev/null | tr -d '\000'
}

device=
for d in $candidates; do
  [ -b "$d" ] || continue
  if [ "$(label_of "$d")" = "$label" ]; then
    device=$d
    break
  fi
done

mkdir -p "$dir"
if [ -n "$device" ]; then
  mount -t ext4 -o "$opts" "$device" "$dir"
else
  mount -t tmpfs -o "$opts,size=4k,mode=0500" mvm-no-secrets "$dir"
fi
