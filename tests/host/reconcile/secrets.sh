#!/bin/bash
# `mvm tenant secrets set` on a real kernel, in fresh mount and network
# namespaces, with tree-only tenants (no build, no VM): what it stages is
# on the tenant's tmpfs only, a whole ext4 image of exactly the files
# (owned by the tenant, 0400); every bad input is refused naming the file,
# with the previous generation byte-identical; the guest's mount step
# (guest/mvm-secrets-mount.sh) against loop devices gives /run/secrets
# ro,noexec,nodev,nosuid where writes, exec and device nodes fail; the
# whole guest init (guest/mvm-init.sh) mounts what a guest needs; and 10
# kills of `set` at random points leave the next `set` to converge.
# Usage: secrets.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"
guest=$(realpath guest/mvm-secrets-mount.sh)
loops=()
cleanup_loops() {
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
}
trap 'cleanup_loops; chattr -R -a "$work" 2>/dev/null || true' EXIT

desired_json t 2 > "$work/two.json"
m agent reconcile --desired "$work/two.json" "${targets[@]}" > "$work/out" 2>&1 || { cat "$work/out"; fail "first reconcile"; }
uid=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["uid"], r["gid"])' "$state/tenants/t0/tenant.json")
read -r tuid tgid <<< "$uid"
tmpfs=$state/tenants/t0/secrets

# The operator's input lives on a tmpfs of its own (the search for a leak
# in the VM script skips it).
mkdir -p "$work/in"
mount -t tmpfs -o size=8m tmpfs "$work/in"
mkdir "$work/in/good"
printf 'hunter2-value' > "$work/in/good/db-password"
head -c 3000 /dev/urandom > "$work/in/good/tls.key"
m tenant secrets set t0 --from-file "$work/in/good" --auto-approve > "$work/out" 2>&1 || { cat "$work/out"; fail "set"; }
grep -q "Staged generation 1 of tenant t0" "$work/out" || { cat "$work/out"; fail "set does not say what it staged"; }
[ "$(stat -f -c %T "$tmpfs/gen-1")" = tmpfs ] && [ "$(stat -f -c %T "$tmpfs/gen-1/secrets.img")" = tmpfs ] || fail "the generation is not on a tmpfs"
[ "$(stat -c '%a %u' "$state/secrets.key")" = "400 0" ] || fail "the fingerprint key is not root-only: $(stat -c '%a %u' "$state/secrets.key")"
e2fsck -fn "$tmpfs/gen-1/secrets.img" > "$work/fsck" 2>&1 || { cat "$work/fsck"; fail "the image is not a clean ext4"; }
mkdir -p "$work/mnt"
mount -o loop,ro "$tmpfs/gen-1/secrets.img" "$work/mnt"
[ "$(ls -A "$work/mnt" | tr '\n' ' ')" = "db-password tls.key " ] || fail "the image holds $(ls -A "$work/mnt")"
cmp "$work/mnt/db-password" "$work/in/good/db-password" && cmp "$work/mnt/tls.key" "$work/in/good/tls.key" || fail "the image's files differ from the input"
[ "$(stat -c '%a %u %g' "$work/mnt/tls.key")" = "400 $tuid $tgid" ] || fail "a file in the image is $(stat -c '%a %u %g' "$work/mnt/tls.key")"
[ "$(stat -c '%u %g' "$work/mnt")" = "$tuid $tgid" ] || fail "the image's root is $(stat -c '%u %g' "$work/mnt")"
umount "$work/mnt"
[ "$(stat -c '%a %u' "$tmpfs/gen-1/files/db-password")" = "400 $tuid" ] || fail "a staged file is $(stat -c '%a %u' "$tmpfs/gen-1/files/db-password")"
m tenant status t0 | matches "staged 1 (db-password 13 B, tls.key 3000 B" || { m tenant status t0; fail "status does not show the staged generation"; }
m tenant audit t0 --json | grep secrets-set | matches '"files":"db-password (13 bytes), tls.key (3000 bytes)"' || fail "the audit record lacks the names and sizes"
echo "ok: set stages a whole ext4 image of exactly the files, owned by the tenant, on its tmpfs only"

snapshot() { (cd "$tmpfs" && find . -print0 | sort -z | xargs -0 stat -c '%n %a %u %s' && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
before=$(snapshot)
bad() { # bad WHAT EXPECTED-WORDS ARGS...
  local what=$1 words=$2; shift 2
  if m tenant secrets set "$@" --auto-approve > "$work/out" 2>&1 < /dev/null; then fail "$what was staged"; fi
  grep -q -- "$words" "$work/out" || { cat "$work/out"; fail "the refusal of $what does not say \"$words\""; }
  [ "$(snapshot)" = "$before" ] || fail "$what changed the previous generation"
}
ln -s "$work/in/good/db-password" "$work/in/link"
bad "a symbolic link" "in/link: refusing: it is a symbolic link" t0 --from-file "$work/in/link"
mkfifo "$work/in/fifo"
bad "a FIFO" "in/fifo: refusing: it is a FIFO" t0 --from-file "$work/in/fifo"
bad "a device" "refusing: it is a character device" t0 --from-file /dev/null
mkdir -p "$work/in/nested/sub"
bad "a directory in the directory" "nested/sub: refusing: it is a directory" t0 --from-file "$work/in/nested"
mkdir "$work/in/linked" && ln -s /etc/hostname "$work/in/linked/hostname"
bad "a link in the directory" "linked/hostname: refusing: it is a symbolic link" t0 --from-file "$work/in/linked"
head -c $((1024 * 1024 + 1)) /dev/zero > "$work/in/big"
bad "an oversize file" "at most 1048576 bytes" t0 --from-file "$work/in/big"
printf x > "$work/in/.hidden"
bad "a hidden name" 'must not start with "."' t0 --from-file "$work/in/.hidden"
printf x > "$work/in/bad name"
bad "a bad name" "is not allowed in a secret's name" t0 --from-file "$work/in/bad name"
bad "an unknown tenant" "no tenant nosuch" nosuch --from-file "$work/in/good"
echo "ok: links, FIFOs, devices, subdirectories, oversize files, bad names and unknown tenants are refused, naming the file; the previous generation is byte-identical"

# The guest's mount step, against the image on a loop device (read-only,
# as Firecracker attaches it) beside a blank drive (a VM without secrets).
truncate -s 1M "$work/blank.img"
blank=$(losetup -f --show -r "$work/blank.img"); loops+=("$blank")
sec=$(losetup -f --show -r "$tmpfs/gen-1/secrets.img"); loops+=("$sec")
run_dir=$work/guest-run/secrets
MVM_SECRETS_DIR=$run_dir MVM_SECRETS_CANDIDATES="$blank $sec" sh "$guest" || fail "the guest's mount step failed"
opts=$(awk -v d="$run_dir" '$5 == d { print $6 }' /proc/self/mountinfo)
for o in ro nosuid nodev noexec; do
  echo ",$opts," | matches ",$o," || fail "/run/secrets is mounted $opts, without $o"
done
[ "$(cat "$run_dir/db-password")" = hunter2-value ] || fail "the guest does not read the secret"
if touch "$run_dir/new" 2>/dev/null; then fail "the guest could write to /run/secrets"; fi
umount "$run_dir"
# noexec and nodev, on an image that has an executable and a device node
# in it (secrets never do: this proves the options, not the input rules).
mkdir -p "$work/evil"
printf '#!/bin/sh\necho ran\n' > "$work/evil/run.sh" && chmod 755 "$work/evil/run.sh"
mknod "$work/evil/null" c 1 3 && chmod 666 "$work/evil/null"
truncate -s 1M "$work/evil.img"
mkfs.ext4 -q -F -L mvm-secrets -d "$work/evil" "$work/evil.img"
evil=$(losetup -f --show -r "$work/evil.img"); loops+=("$evil")
MVM_SECRETS_DIR=$run_dir MVM_SECRETS_CANDIDATES="$evil" sh "$guest" || fail "the guest's mount step failed on the second image"
if "$run_dir/run.sh" > /dev/null 2>&1; then fail "a file on /run/secrets was executed"; fi
if head -c1 "$run_dir/null" > /dev/null 2>&1; then fail "a device node on /run/secrets was opened"; fi
umount "$run_dir"
MVM_SECRETS_DIR=$run_dir MVM_SECRETS_CANDIDATES="$blank" sh "$guest" || fail "the guest's mount step failed without secrets"
opts=$(awk -v d="$run_dir" '$5 == d { print $6 }' /proc/self/mountinfo)
[ -z "$(ls -A "$run_dir")" ] && echo ",$opts," | matches ",ro," || fail "without secrets /run/secrets is not an empty read-only directory ($opts)"
umount "$run_dir"
echo "ok: the guest mounts the drive found by its label at /run/secrets ro,noexec,nodev,nosuid; writes, exec and device nodes fail; no drive is an empty read-only dir"

# The whole guest init (guest/mvm-init.sh) below a scratch root: /proc,
# /sys, /dev and /run, the secrets drive and the data volume found by
# their labels among loop devices, and the metadata address.
truncate -s 8M "$work/data.img"
mkfs.ext4 -q -F -L data "$work/data.img"
data=$(losetup -f --show "$work/data.img"); loops+=("$data")
groot=$work/guest-root
MVM_GUEST_ROOT=$groot MVM_SECRETS_CANDIDATES="$blank $sec" MVM_DATA_CANDIDATES="$blank $data" sh guest/mvm-init.sh || fail "the guest init failed"
opts_of() { awk -v d="$1" '$5 == d { print $6 }' /proc/self/mountinfo; }
fs_of() { awk -v d="$1" '$5 == d { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1); exit } }' /proc/self/mountinfo; }
for o in ro nosuid nodev noexec; do
  echo ",$(opts_of "$groot/run/secrets")," | matches ",$o," || fail "the init's /run/secrets is $(opts_of "$groot/run/secrets"), without $o"
done
[ "$(cat "$groot/run/secrets/db-password")" = hunter2-value ] || fail "the init's /run/secrets does not hold the secret"
d_opts=$(opts_of "$groot/data")
echo ",$d_opts," | matches ",rw," && echo ",$d_opts," | matches ",nosuid," && echo ",$d_opts," | matches ",nodev," || fail "the data volume is mounted $d_opts"
[ "$(fs_of "$groot/proc")" = proc ] && [ "$(fs_of "$groot/run")" = tmpfs ] && [ "$(fs_of "$groot/dev")" = devtmpfs ] || fail "the init did not mount /proc, /run and /dev"
[ "$(cat "$groot/run/mvm-metadata")" = "MVM_METADATA=http://169.254.169.254" ] || fail "the init does not say where the metadata service is"
touch "$groot/data/written" || fail "the data volume is not writable"
umount -R "$groot/data" "$groot/run" "$groot/dev" "$groot/sys" "$groot/proc"
echo "ok: the guest init mounts /proc, /sys, /dev, /run, the secrets drive (ro,noexec,nodev,nosuid) and the data volume (nosuid,nodev) found by their labels, and says where the metadata service is"

# 10 kills of `set` at random points: the next `set` converges, leaves no
# staging debris, and the newest generation is whole.
killed=0
for run in $(seq 1 10); do
  head -c 200000 /dev/urandom > "$work/in/good/tls.key"
  "$mvm" --config "$work/node.toml" tenant secrets set t0 --from-file "$work/in/good" --auto-approve > /dev/null 2>&1 < /dev/null &
  pid=$!
  sleep "0.0$(printf %02d $(( RANDOM % 50 )))"
  kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
  wait "$pid" 2>/dev/null || true
  for g in "$tmpfs"/gen-*; do
    [ -f "$g/manifest.json" ] || fail "run $run: $g is there without its manifest (half a generation in place)"
  done
  m tenant secrets set t0 --from-file "$work/in/good" --auto-approve > "$work/out" 2>&1 < /dev/null || { cat "$work/out"; fail "run $run: set after the kill failed"; }
  ls -A "$tmpfs" | matches '^\.stage-' && fail "run $run: staging debris left: $(ls -A "$tmpfs")"
  newest=$(ls "$tmpfs" | grep '^gen-' | sort -t- -k2 -n | tail -1)
  [ "$(ls "$tmpfs" | grep -c '^gen-')" = 1 ] || fail "run $run: superseded generations left: $(ls "$tmpfs")"
  e2fsck -fn "$tmpfs/$newest/secrets.img" > /dev/null 2>&1 || fail "run $run: $newest's image is not whole"
  mount -o loop,ro "$tmpfs/$newest/secrets.img" "$work/mnt"
  cmp -s "$work/mnt/tls.key" "$work/in/good/tls.key" || fail "run $run: $newest does not hold the last input"
  umount "$work/mnt"
  m tenant audit t0 --verify > /dev/null || fail "run $run: the audit chain is broken"
  echo "converged after kill $run"
done
umount "$work/in"
echo "($killed of the 10 kills landed before set finished)"
echo "ok: killed sets never leave half a generation, and the next set converges"
