#!/bin/sh
# Runs every mvm test. On a fresh Debian machine it first installs what the
# tests need (as root, via apt): nftables, iproute2, util-linux (unshare),
# e2fsprogs, ethtool, python3 (and the modules cloud-init imports), nix-bin
# and busybox-static, creates Nix's
# build users (group nixbld), fetches a kernel image and unpacks Debian's
# cloud-init package. Host tests run as
# root inside throwaway namespaces; a test whose prerequisite is missing is
# skipped, visibly and counted — or, with MVM_HOST_TESTS=required, fails.
set -eu
cd "$(dirname "$0")/.."

missing=""
need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || missing="$missing $2"; }
need nft nftables
need ip iproute2
need bridge iproute2
need unshare util-linux
need mkfs.ext4 e2fsprogs
need debugfs e2fsprogs
need losetup mount
need ethtool ethtool
need python3 python3
need nix nix-bin
need etcd etcd-server
# etcd-client's build compiles etcd's protobufs: protoc and the
# well-known types.
need protoc protobuf-compiler
[ -f /usr/include/google/protobuf/timestamp.proto ] || missing="$missing libprotobuf-dev"
[ -x /bin/busybox ] || missing="$missing busybox-static"
# The modules Debian's cloud-init imports (the metadata test runs its Ec2
# datasource with Debian's own python3), and the Prometheus client whose
# text parser checks `mvm node metrics`.
for mod in requests:python3-requests yaml:python3-yaml jinja2:python3-jinja2 \
    jsonschema:python3-jsonschema jsonpatch:python3-jsonpatch configobj:python3-configobj \
    netifaces:python3-netifaces oauthlib:python3-oauthlib \
    prometheus_client:python3-prometheus-client; do
    /usr/bin/python3 -c "import ${mod%%:*}" 2>/dev/null || missing="$missing ${mod#*:}"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing test dependencies:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # Installing etcd-server must not start Debian's etcd service: the
        # tests start their own etcd on free ports.
        own_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
        fi
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
        [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    else
        echo "warning: missing$missing; host tests need them (run as root to install)" >&2
    fi
fi

# Nix builds run as unprivileged build users (group nixbld), as on a node.
if [ "$(id -u)" = 0 ] && ! getent group nixbld >/dev/null; then
    echo "creating the Nix build users (group nixbld)"
    groupadd -r nixbld
    for i in 1 2 3 4; do
        useradd -r -g nixbld -G nixbld -d /var/empty -s /usr/sbin/nologin -c "Nix build user $i" "nixbld$i"
    done
fi

# A kernel image for the Firecracker tests (guests cannot boot here, but
# Firecracker loads the kernel before its API answers): Debian's cloud
# kernel, from the package registry, cached under target/.
kernel=target/test-kernel/vmlinuz
if [ "$(id -u)" = 0 ] && [ ! -s "$kernel" ]; then
    echo "fetching a kernel image for the Firecracker tests"
    tmp=$(mktemp -d)
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends:/ {print $2; exit}')
    (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null && dpkg-deb -x ./*.deb x) &&
        mkdir -p "$(dirname "$kernel")" && cp "$tmp"/x/boot/vmlinuz-* "$kernel" ||
        echo "warning: no kernel image; the Firecracker tests will say so and skip" >&2
    rm -rf "$tmp"
fi

# Debian's cloud-init, unpacked (not installed: nothing of it may run on
# this machine) under target/, for the metadata service's cloud-init test.
ci_dir=target/cloud-init
if [ ! -f "$ci_dir/usr/lib/python3/dist-packages/cloudinit/sources/DataSourceEc2.py" ]; then
    echo "fetching Debian's cloud-init package for the metadata test"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq cloud-init 2>/dev/null) && mkdir -p "$ci_dir" &&
        dpkg-deb -x "$tmp"/cloud-init_*.deb "$ci_dir" ||
        echo "warning: no cloud-init package; the cloud-init test will say so and skip" >&2
    rm -rf "$tmp"
fi

# The Firecracker builds: $MVM_TEST_FIRECRACKER_DIR, else
# ../shared/firecracker beside this checkout — or, for a clone (CI's clean
# checkout), beside the repository it was cloned from.
if [ -z "${MVM_TEST_FIRECRACKER_DIR:-}" ]; then
    fc_dir=../shared/firecracker
    origin=$(git config --get remote.origin.url 2>/dev/null || true)
    if [ ! -d "$fc_dir" ] && [ -n "$origin" ] && [ -d "$origin/../shared/firecracker" ]; then
        fc_dir=$(cd "$origin/../shared/firecracker" && pwd)
    fi
    export MVM_TEST_FIRECRACKER_DIR="$fc_dir"
fi
fc_dir=$MVM_TEST_FIRECRACKER_DIR

# Each prerequisite, and the tests that need it (tests/common/host.rs has
# the same list). A test whose prerequisite is missing is filtered out
# *visibly*: the reason is printed here and the count at the end, never a
# vacuous pass. Under MVM_HOST_TESTS=required (what .ci/run sets) nothing
# is filtered: a missing prerequisite fails its tests.
root_tests="binary(host_probe) | binary(host_reconcile) | binary(host_net) | binary(host_nix) | binary(host_vm) | binary(host_metadata) | binary(fleet)"
fc_tests="binary(host_vm) | test(node_info_reports_the_firecracker_and_jailer_versions)"
vm_tests="binary(host_vm)"
nix_tests="binary(host_nix) | binary(nix_files) | test(reconcile_runs_a_tenant_end_to_end) | test(killed_reconciles_never_leave_two_vms_or_none)"
skip=""
reasons=""
skipping() {
    skip="${skip:+$skip | }$1"
    reasons="${reasons:+$reasons; }$2"
}
[ "$(id -u)" = 0 ] ||
    skipping "$root_tests" "host tests ($root_tests): they need root for network namespaces, nftables, tmpfs mounts and cgroups; run as root to include them"
fc_missing=""
for b in firecracker jailer seccompiler-bin; do
    [ -x "$fc_dir/bin/$b" ] || fc_missing="$fc_missing $fc_dir/bin/$b"
done
[ -z "$fc_missing" ] ||
    skipping "$fc_tests" "Firecracker tests ($fc_tests): missing$fc_missing (set MVM_TEST_FIRECRACKER_DIR to a directory with bin/firecracker, bin/jailer, bin/seccompiler-bin and seccomp/)"
[ -s "$kernel" ] || skipping "$vm_tests" "VM tests ($vm_tests): no kernel image at $kernel"
[ -e /dev/kvm ] || skipping "$vm_tests" "VM tests ($vm_tests): no /dev/kvm"
if [ ! -x /usr/bin/nix ] || [ ! -x /bin/busybox ] || ! getent group nixbld >/dev/null; then
    skipping "$nix_tests" "Nix tests ($nix_tests): they need nix-bin, busybox-static and the nixbld build users"
fi
[ -x /usr/bin/etcd ] || skipping "binary(fleet)" "fleet tests (binary(fleet)): they need etcd (etcd-server)"
if [ "${MVM_HOST_TESTS:-}" = required ]; then
    if [ -n "$skip" ]; then
        echo "MVM_HOST_TESTS=required: these tests will fail for a missing prerequisite: $reasons" >&2
    fi
    skip=""
fi
if [ -n "$skip" ]; then
    filter="not ($skip)"
    echo "SKIPPING $reasons" >&2
else
    filter="all()"
fi

if cargo nextest --version >/dev/null 2>&1; then
    status=0
    cargo nextest run --no-fail-fast --success-output never --failure-output final -E "$filter" "$@" || status=$?
    if [ -n "$skip" ]; then
        skipped=$(cargo nextest list -E "$skip" --message-format oneline 2>/dev/null | wc -l)
        echo "Skipped: $skipped tests ($reasons)"
    fi
    exit "$status"
else
    # Without nextest, each host test prints "SKIPPED <name>: <reason>".
    cargo test --no-fail-fast "$@"
fi
