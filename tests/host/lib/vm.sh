# Shared set-up of the VM host scripts, sourced after common.sh: a node
# config pointing at the real jailer and Firecracker, no binary caches, a
# short stop timeout (these guests never boot, so Ctrl-Alt-Del is never
# answered), and the fixture flake with a real kernel and a static busybox.
ip link set lo up
cat >> "$work/node.toml" <<TOML
[firecracker]
binary = "$fcdir/bin/firecracker"
jailer = "$fcdir/bin/jailer"
stop_timeout_secs = 1
[nix]
substituters = []
TOML
flake=$work/flake
# The starter flake, as an operator gets it: written by mvm.
m dev init "$flake" --kernel "$kernel" > /dev/null || fail "mvm dev init"
