#!/usr/bin/env python3
"""The floor for `benches/reconcile.sh`: the syscalls a from-scratch
reconcile of N tenants' dirs, cgroups and secrets mounts cannot avoid,
made directly (python + libc), one tenant after another: its directory
and subdirectories, its cgroup, its secrets tmpfs, one fsync'd record
write (temp file, fsync, rename, fsync of the directory) and one fsync'd
audit append. Then all of it undone (not timed).
Usage (as root, in a throwaway mount namespace): floor.py STATE CGROUP_DIR N"""
import ctypes, json, os, sys, time

libc = ctypes.CDLL("libc.so.6", use_errno=True)
MNT_DETACH = 2


def mount_tmpfs(target):
    if libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0x2 | 0x4 | 0x8, b"size=1m,mode=0700") != 0:
        raise OSError(ctypes.get_errno(), "mount " + target)


def record(path, doc):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, json.dumps(doc).encode())
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, path)
    d = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(d)
    os.close(d)


def main():
    state, cg, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(os.path.join(state, "tenants"), exist_ok=True)
    os.makedirs(cg, exist_ok=True)
    start = time.monotonic()
    for i in range(n):
        t = os.path.join(state, "tenants", "t%d" % i)
        os.mkdir(t, 0o700)
        for sub in ("jail", "logs", "secrets"):
            os.mkdir(os.path.join(t, sub), 0o700)
        os.mkdir(os.path.join(cg, "t%d" % i))
        mount_tmpfs(os.path.join(t, "secrets"))
        record(os.path.join(t, "tenant.json"), {"tenant_id": "t%d" % i, "uid": 100000 + i})
        fd = os.open(os.path.join(t, "audit.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, json.dumps({"tenant_id": "t%d" % i, "action": "create"}).encode() + b"\n")
        os.fdatasync(fd)
        os.close(fd)
    took = time.monotonic() - start
    for i in range(n):
        t = os.path.join(state, "tenants", "t%d" % i)
        libc.umount2(os.path.join(t, "secrets").encode(), MNT_DETACH)
        os.rmdir(os.path.join(cg, "t%d" % i))
    print("%.3f" % took)


main()
