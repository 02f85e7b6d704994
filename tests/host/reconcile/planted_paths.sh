#!/bin/bash
# The filesystem attacks of a hostile review, replayed as root on a real
# kernel inside the throwaway mount namespace tests/host_reconcile.rs runs
# it in. Each scenario plants something under a fresh state dir — a link, a
# hard link, a mount, a FIFO, a cut log — runs mvm, and checks that nothing
# outside the state dir changed and that mvm said why. Prints "ok: ..." per
# scenario; exits non-zero on the first failure with what went wrong.
# Usage: hostile.sh MVM WORKDIR CGROUP_PARENT
set -euo pipefail
mvm=$1 work=$2 parent=$3
source "$(dirname "$0")/../lib/common.sh"

# setup NAME: a fresh state dir and node config for one scenario.
setup() {
  state=$work/$1
  conf=$work/$1.toml
  cat > "$conf" <<TOML
state_dir = "$state"
[cgroup]
parent = "$parent"
allow_missing_controllers = true
TOML
}
m() { "$mvm" --config "$conf" "$@"; }
# tree_sum DIR: every path, type, mode, size and content below DIR, hashed.
tree_sum() { (cd "$1" && find . -printf '%p %y %m %s %n\n' | sort && find . -type f -exec sha256sum {} + | sort) | sha256sum; }
desired() { desired_json "$1" 1 > "$work/$1.json"; echo "$work/$1.json"; }
echo '{"tenants": []}' > "$work/empty.json"
mounts_under() { awk -v p="$1" 'index($5, p) == 1' /proc/self/mountinfo | wc -l; }

# 1. <state>/tenants a link to another directory: observe lists nothing
#    from it, reconcile and prune touch nothing in it.
setup s1
victim=$work/victim1
mkdir -p "$victim/acme/jail" "$victim/globex" "$state"
echo keep > "$victim/acme/tenant.json"
echo keep > "$victim/globex/data"
ln -s "$victim" "$state/tenants"
before=$(tree_sum "$victim")
m agent observe > "$work/s1.observe" 2>&1 || true
grep -q acme "$work/s1.observe" && { cat "$work/s1.observe"; fail "observe listed a tenant behind the link"; }
m agent plan --desired "$(desired a)" "${targets[@]}" > "$work/s1.plan" 2>&1 || true
grep -q "state dir could not be read" "$work/s1.plan" || { cat "$work/s1.plan"; fail "no warning about the unreadable tenants dir"; }
m agent reconcile --desired "$(desired a)" "${targets[@]}" > "$work/s1.out" 2>&1 && fail "reconcile through a linked tenants dir succeeded"
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > "$work/s1.prune" 2>&1 || true
[ "$before" = "$(tree_sum "$victim")" ] || fail "the directory behind the link changed"
[ "$(mounts_under "$victim")" = 0 ] || fail "something was mounted behind the link"
echo "ok: a linked tenants dir is never entered"

# 2. The state dir below a linked parent, a directory bind-mounted inside
#    a tenant tree: prune refuses before deleting anything, and repeated
#    runs never stack a second secrets tmpfs.
setup s2
mkdir -p "$work/real2"
ln -s "$work/real2" "$work/link2"
state=$work/link2/state
sed -i "s|^state_dir = .*|state_dir = \"$state\"|" "$conf"
m agent reconcile --desired "$(desired b)" "${targets[@]}" > "$work/s2.out" || { cat "$work/s2.out"; fail "reconcile below a linked parent"; }
m agent reconcile --desired "$work/b.json" "${targets[@]}" > "$work/s2.out2" || { cat "$work/s2.out2"; fail "second reconcile"; }
grep -q "No changes." "$work/s2.out2" || { cat "$work/s2.out2"; fail "second run below a linked parent was not a no-op"; }
[ "$(mounts_under "$work/real2/state/tenants/b0/secrets")" = 1 ] || fail "secrets tmpfs stacked: $(mounts_under "$work/real2/state/tenants/b0/secrets") mounts"
precious=$work/precious2
mkdir -p "$precious/sub" "$state/tenants/b0/jail/mnt"
echo data > "$precious/sub/file"
mount --bind "$precious" "$state/tenants/b0/jail/mnt"
before=$(tree_sum "$precious")
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > "$work/s2.prune" 2>&1 && fail "prune deleted a tree with a mount in it"
grep -q "mounted" "$work/s2.prune" || { cat "$work/s2.prune"; fail "prune did not say a filesystem is mounted"; }
umount "$state/tenants/b0/jail/mnt"
[ "$before" = "$(tree_sum "$precious")" ] || fail "prune deleted inside the bind mount"
[ -e "$state/tenants/b0/tenant.json" ] || fail "prune deleted part of the tree before refusing"
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > "$work/s2.prune2" || { cat "$work/s2.prune2"; fail "prune after unmounting"; }
[ -e "$state/tenants/b0" ] && fail "b0 left behind"
echo "ok: prune never deletes into a mount; no stacked tmpfs below a linked parent"

# 3. tenants/<id> a link: no audit record or head lands behind it.
setup s3
victim=$work/victim3
mkdir -p "$victim" "$state/tenants"
echo keep > "$victim/marker"
ln -s "$victim" "$state/tenants/c0"
before=$(tree_sum "$victim")
m agent reconcile --desired "$(desired c)" "${targets[@]}" > "$work/s3.out" 2>&1 && fail "reconcile through a linked tenant dir succeeded"
[ "$before" = "$(tree_sum "$victim")" ] || { ls -la "$victim"; fail "files were written behind the tenant link"; }
lsattr -d "$victim" 2>/dev/null | cut -d' ' -f1 | matches a && fail "the link target was made append-only"
echo "ok: a linked tenant dir gets no audit log"

# 4. tenants/<id>/secrets a link: the tmpfs is never mounted where it
#    points; the link is replaced by a directory and mounted once.
setup s4
victim=$work/victim4
mkdir -p "$victim"
m agent reconcile --desired "$(desired d)" "${targets[@]}" > /dev/null
umount "$state/tenants/d0/secrets"
rmdir "$state/tenants/d0/secrets"
ln -s "$victim" "$state/tenants/d0/secrets"
for i in 1 2; do
  m agent reconcile --desired "$work/d.json" "${targets[@]}" > "$work/s4.out$i" 2>&1 || { cat "$work/s4.out$i"; fail "reconcile $i with a linked secrets dir"; }
done
grep -q "No changes." "$work/s4.out2" || { cat "$work/s4.out2"; fail "not converged after replacing the secrets link"; }
[ "$(mounts_under "$victim")" = 0 ] || fail "a tmpfs was mounted over the link's target"
[ -d "$state/tenants/d0/secrets" ] && [ ! -L "$state/tenants/d0/secrets" ] || fail "the secrets link was not replaced by a directory"
[ "$(mounts_under "$state/tenants/d0/secrets")" = 1 ] || fail "secrets mounted $(mounts_under "$state/tenants/d0/secrets") times"
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > /dev/null
[ "$(mounts_under "$state/")" = 0 ] || fail "prune left mounts"
echo "ok: a linked secrets dir is replaced, never mounted over"

# 5. audit.log hard-linked to a file elsewhere, or a link to one: that
#    file is not appended to, flagged or printed.
setup s5
m agent reconcile --desired "$(desired e)" "${targets[@]}" > /dev/null
log=$state/tenants/e0/audit.log
other=$work/other5
echo "precious" > "$other"
chattr -a "$log" 2>/dev/null || true
cp "$log" "$work/e0.log.saved"
rm -f "$log"
ln "$other" "$log"
chmod 755 "$state/tenants/e0"
m agent reconcile --desired "$work/e.json" "${targets[@]}" > "$work/s5.out" 2>&1 && fail "reconcile appended to a hard-linked audit log"
grep -q "hard links" "$work/s5.out" || { cat "$work/s5.out"; fail "the refusal does not name the hard link"; }
[ "$(cat "$other")" = precious ] || fail "the hard-linked file was appended to"
lsattr "$other" 2>/dev/null | cut -d' ' -f1 | matches a && fail "the hard-linked file was made append-only"
[ "$(stat -c %a "$state/tenants/e0")" = 755 ] || fail "the tenant was changed although its log could not be extended"
rm -f "$log"
echo "root:\$6\$secret:19000:0:99999:7:::" > "$work/shadow5"
ln -s "$work/shadow5" "$log"
m tenant audit e0 --json > "$work/s5.audit" 2>&1 && fail "tenant audit read through a link"
grep -q secret "$work/s5.audit" && fail "tenant audit printed the link's target"
echo "ok: a hard-linked or linked audit log is refused"

# 6. The log's tail cut: the next reconcile refuses loudly and changes
#    nothing of the tenant; --verify reports it.
setup s6
m agent reconcile --desired "$(desired f)" "${targets[@]}" > /dev/null
chmod 755 "$state/tenants/f0"
m agent reconcile --desired "$work/f.json" "${targets[@]}" > /dev/null
log=$state/tenants/f0/audit.log
chattr -a "$log" 2>/dev/null || true
head -n -1 "$log" > "$work/f0.cut"
cat "$work/f0.cut" > "$log"
chmod 755 "$state/tenants/f0"
m agent reconcile --desired "$work/f.json" "${targets[@]}" > "$work/s6.out" 2>&1 && fail "reconcile extended a cut log"
grep -q "tail was cut" "$work/s6.out" || { cat "$work/s6.out"; fail "the refusal does not say the tail was cut"; }
[ "$(stat -c %a "$state/tenants/f0")" = 755 ] || fail "the tenant was changed although its log was cut"
m tenant audit f0 --verify > "$work/s6.verify" 2>&1 && fail "--verify passed a cut log"
echo "ok: a cut audit log is refused and reported"

# 7. FIFOs where mvm expects files: nothing hangs.
setup s7
mkdir -p "$state/tenants/g0"
mkfifo "$state/tenants/g0/tenant.json"
for cmd in "agent observe" "agent plan --desired $(desired g)"; do
  # shellcheck disable=SC2086
  timeout 10 "$mvm" --config "$conf" $cmd > "$work/s7.out" 2>&1 || [ $? -ne 124 ] || fail "$cmd hung on a FIFO tenant.json"
done
grep -q FIFO "$work/s7.out" || { cat "$work/s7.out"; fail "the plan does not say tenant.json is a FIFO"; }
rm "$state/tenants/g0/tenant.json"
mkfifo "$state/node-id"
status=0
timeout 10 "$mvm" --config "$conf" agent reconcile --desired "$work/g.json" "${targets[@]}" > "$work/s7.rec" 2>&1 || status=$?
[ "$status" -ne 124 ] || fail "reconcile hung on a FIFO node-id while holding the lock"
[ "$status" -ne 0 ] || fail "reconcile accepted a FIFO node-id"
echo "ok: FIFOs never hang mvm"

# 8. secrets/ removed or replaced by a file while unmounted, jail/
#    removed: the dirs resource repairs them.
setup s8
m agent reconcile --desired "$(desired h)" "${targets[@]}" > /dev/null
t=$state/tenants/h0
umount "$t/secrets"; rmdir "$t/secrets"
m agent reconcile --desired "$work/h.json" "${targets[@]}" > "$work/s8.out" 2>&1 || { cat "$work/s8.out"; fail "a removed secrets dir was not repaired"; }
umount "$t/secrets"; rmdir "$t/secrets"; echo x > "$t/secrets"
m agent reconcile --desired "$work/h.json" "${targets[@]}" > "$work/s8.out2" 2>&1 || { cat "$work/s8.out2"; fail "a file in place of secrets was not repaired"; }
[ "$(mounts_under "$t/secrets")" = 1 ] || fail "secrets not mounted after repair"
rmdir "$t/jail"
m agent plan --desired "$work/h.json" "${targets[@]}" > "$work/s8.plan" || true
grep -q "No changes." "$work/s8.plan" && fail "a missing jail/ planned no changes"
m agent reconcile --desired "$work/h.json" "${targets[@]}" > /dev/null
[ -d "$t/jail" ] || fail "jail/ not restored"
echo "ok: missing or replaced subdirectories are repaired"

# 9. A secrets tmpfs whose root mode drifted converges in one run.
chmod 755 "$t/secrets"
m agent reconcile --desired "$work/h.json" "${targets[@]}" > "$work/s9.out" || { cat "$work/s9.out"; fail "mode repair"; }
grep -q "1 changed" "$work/s9.out" || { cat "$work/s9.out"; fail "the mode drift was not planned"; }
[ "$(stat -c %a "$t/secrets")" = 700 ] || fail "secrets root mode not restored"
m agent plan --desired "$work/h.json" "${targets[@]}" | matches "No changes." || fail "secrets mode does not converge"
echo "ok: the secrets root mode converges"

# 10. A user who cannot read the state dir is warned, not told to create
#     everything silently.
chmod 755 "$work"
chmod 700 "$state"
if setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$mvm" 2>/dev/null; then
  setpriv --reuid=65534 --regid=65534 --clear-groups "$mvm" --config "$conf" agent plan --desired "$work/h.json" "${targets[@]}" > "$work/s10.out" 2>&1 || true
  grep -q "state dir could not be read" "$work/s10.out" || { cat "$work/s10.out"; fail "no warning for an unreadable state dir"; }
  echo "ok: an unreadable state dir is a warning"
else
  echo "ok: unreadable state dir not checked (the mvm binary is not reachable by an unprivileged user here)"
fi
chmod 700 "$work"
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > /dev/null

# 11. A very long command line: the record stays bounded, later writes and
#     the prune still work.
setup s11
m agent reconcile --desired "$(desired j)" "${targets[@]}" > /dev/null
chmod 755 "$state/tenants/j0"
many=()
for _ in $(seq 14000); do many+=(--target tenant.j0.dirs); done
m agent reconcile --desired "$work/j.json" "${many[@]}" > "$work/s11.out" 2>&1 || { tail "$work/s11.out"; fail "reconcile with 14,000 targets"; }
awk 'length($0) > 16384 { exit 1 }' "$state/tenants/j0/audit.log" || fail "an audit record is over 16 KiB"
chmod 755 "$state/tenants/j0"
m agent reconcile --desired "$work/j.json" "${targets[@]}" > /dev/null || fail "audit writes failed after a long command line"
m tenant audit j0 --verify > /dev/null || fail "the chain does not verify"
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > /dev/null || fail "prune after a long command line"
echo "ok: a long command line leaves a bounded record"

# 12. The jail tree nested 3000 deep (a tenant's Firecracker owns its jail
#     and can), with a link at every level: prune removes it all, follows no
#     link, and a bind mount at the bottom still stops it before anything goes.
setup s12
m agent reconcile --desired "$(desired k)" "${targets[@]}" > /dev/null
victim=$work/victim12
mkdir -p "$victim"; echo keep > "$victim/keep"
python3 - "$state/tenants/k0/jail" "$victim" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_DIRECTORY)
for i in range(3000):
    os.mkdir("d", 0o700, dir_fd=fd)
    os.symlink(sys.argv[2], "link", dir_fd=fd)
    nfd = os.open("d", os.O_DIRECTORY, dir_fd=fd); os.close(fd); fd = nfd
os.close(fd)
PY
mkdir -p "$work/bind12"; touch "$work/bind12/f"
deep=$(python3 -c 'import sys; print("/".join(["d"] * 20))')
mount --bind "$work/bind12" "$state/tenants/k0/jail/$deep"
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > "$work/s12.out" 2>&1 && { cat "$work/s12.out"; fail "prune deleted into a mount"; }
grep -q "mounted here" "$work/s12.out" || { cat "$work/s12.out"; fail "the mount is not named"; }
[ -e "$work/bind12/f" ] && [ -d "$state/tenants/k0/jail/d/d" ] || fail "something was deleted before the mount was found"
umount "$state/tenants/k0/jail/$deep"
m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > "$work/s12.out2" 2>&1 || { tail "$work/s12.out2"; fail "prune of a 3000-deep jail"; }
[ -e "$state/tenants/k0" ] && fail "the tenant tree is still there"
[ "$(cat "$victim/keep")" = keep ] || fail "a link in the jail was followed"
echo "ok: a jail nested 3000 deep is removed; links are not followed; a mount in it stops the delete first"

# Clean up every scenario's leftovers (mounts, cgroups).
for s in s1 s3 s4 s5 s6 s7 s8 s11 s12; do
  setup "$s"
  [ -d "$state/tenants" ] && [ ! -L "$state/tenants" ] || continue
  find "$state/tenants" -maxdepth 1 -type l -delete
  chattr -R -a "$state" 2>/dev/null || true
  m agent reconcile --desired "$work/empty.json" --prune "${targets[@]}" > /dev/null 2>&1 || true
done
