#!/usr/bin/env python3
"""A simulated fleet on this machine: one etcd and N `mvm agent run`
processes, each with its own node id, state dir, cgroup parent and mount
namespace, planning only their tenants' tree kinds (dirs, cgroup, secrets —
real; no build, network or VM: `--target tenant.*.dirs` etc.).

Measures, as root, with a release build:
  - a change to every node: from the first `put` to every node reporting
    the new revision applied;
  - one node's change: its put to its status showing it applied;
  - RSS of etcd and of the agents;
  - CPU of the idle agents over 30 s, as % of one core;
  - re-convergence after etcd is killed and restarted: from the restart
    to every node applying a change written right after it.

Usage: benches/fleet.py [N] (default 100); needs etcd-server.
"""
import base64, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MVM = os.path.join(ROOT, "target/release/mvm")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Etcd:
    def __init__(self, data):
        self.data, self.client, self.peer = data, free_port(), free_port()
        self.start()

    def start(self):
        c, p = self.client, self.peer
        self.proc = subprocess.Popen(
            ["/usr/bin/etcd", "--name", "bench", "--data-dir", self.data,
             "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
             "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
             "--initial-cluster", f"bench=http://127.0.0.1:{p}", "--logger=zap", "--log-level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                if b'"true"' in urllib.request.urlopen(self.url() + "/health", timeout=1).read():
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("etcd did not start")

    def url(self):
        return f"http://127.0.0.1:{self.client}"

    def call(self, path, body):
        req = urllib.request.Request(self.url() + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, timeout=5).read())

    def put(self, key, value):
        b = lambda s: base64.b64encode(s.encode()).decode()
        r = self.call("/v3/kv/put", {"key": b(key), "value": b(value)})
        return int(r["header"]["revision"])

    def get_prefix(self, prefix):
        b = lambda s: base64.b64encode(s.encode()).decode()
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        r = self.call("/v3/kv/range", {"key": b(prefix), "range_end": b(end)})
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
                for kv in r.get("kvs", [])}

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def doc(tenants, vcpus):
    return json.dumps({"tenants": [
        {"tenant_id": t, "flake_ref": "github:o/a", "profile": "minimal", "vcpus": vcpus,
         "mem_mib": 256, "state": "running"} for t in tenants]})


def applied(etcd, want):
    """Nodes whose status shows `want[node]` applied and converged."""
    done = set()
    for key, value in etcd.get_prefix("/mvm/nodes/").items():
        node, what = key[len("/mvm/nodes/"):].split("/", 1)
        if what != "status" or node not in want:
            continue
        s = json.loads(value)
        if s.get("applied") and s["applied"]["revision"] == want[node] and s["result"] == "converged":
            done.add(node)
    return done


def wait_all(etcd, want, limit=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if len(applied(etcd, want)) == len(want):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise RuntimeError(f"not converged: {len(applied(etcd, want))}/{len(want)}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (mount namespaces, cgroups, tmpfs)")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="mf")
    shm = tempfile.mkdtemp(prefix="mvm-fleet-etcd-", dir="/dev/shm")
    cg = next(l.split()[4] for l in open("/proc/self/mountinfo") if l.split(" - ")[1].startswith("cgroup2 "))
    etcd = Etcd(os.path.join(shm, "data"))
    agents, parents = [], []
    try:
        nodes = [f"n{i:03d}" for i in range(N)]
        rev = {}
        for n in nodes:
            d = os.path.join(work, n)
            os.makedirs(d)
            parent = f"mvm-bench-{os.getpid()}-{n}"
            parents.append(os.path.join(cg, parent))
            with open(os.path.join(d, "node.toml"), "w") as f:
                f.write(f'state_dir = "{d}/state"\n[cgroup]\nparent = "{parent}"\nallow_missing_controllers = true\n')
            rev[n] = etcd.put(f"/mvm/nodes/{n}/desired", doc(["t0"], 1))
        for n in nodes:
            d = os.path.join(work, n)
            log = open(os.path.join(d, "agent.log"), "w")
            agents.append(subprocess.Popen(
                ["unshare", "--mount", "--", MVM, "--config", f"{d}/node.toml", "agent", "run",
                 "--etcd", etcd.url(), "--node-id", n, "--target", "tenant.*.dirs", "--target", "tenant.*.cgroup",
                 "--target", "tenant.*.secrets", "--resync", "1h"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        start = wait_all(etcd, rev, limit=60)
        print(f"{N} agents started and converged: {start:.2f} s")

        # A change to every node (after a quiet spell, as a control plane's
        # changes come).
        time.sleep(2)
        t0 = time.monotonic()
        for n in nodes:
            rev[n] = etcd.put(f"/mvm/nodes/{n}/desired", doc(["t0", "t1"], 1))
        puts = time.monotonic() - t0
        all_nodes = wait_all(etcd, rev) + puts
        print(f"change to all {N} nodes: {all_nodes:.2f} s from the first put ({puts:.2f} s of puts)")

        # One node's change.
        time.sleep(2)
        one = []
        for k in range(5):
            n = nodes[k * 7 % N]
            t0 = time.monotonic()
            rev[n] = etcd.put(f"/mvm/nodes/{n}/desired", doc(["t0", "t1"], 2 + k % 3))
            wait_all(etcd, {n: rev[n]})
            one.append(time.monotonic() - t0)
            time.sleep(1.2)
        print("one node's change: " + ", ".join(f"{t * 1000:.0f} ms" for t in one))

        # Memory.
        pids = [a.pid for a in agents]
        rss = [rss_kib(p) for p in pids]
        print(f"RSS: etcd {rss_kib(etcd.proc.pid) / 1024:.1f} MiB; agents {sum(rss) / 1024:.1f} MiB in all, "
              f"{sum(rss) / len(rss) / 1024:.1f} MiB each (max {max(rss) / 1024:.1f})")

        # Idle CPU.
        time.sleep(3)
        before = sum(cpu_ticks(p) for p in pids)
        t0 = time.monotonic()
        time.sleep(30)
        used = (sum(cpu_ticks(p) for p in pids) - before) / TICK
        print(f"idle CPU of {N} agents: {100 * used / (time.monotonic() - t0):.2f} % of one core")

        # etcd killed and restarted.
        etcd.kill()
        time.sleep(2)
        etcd.start()
        t0 = time.monotonic()
        for n in nodes:
            rev[n] = etcd.put(f"/mvm/nodes/{n}/desired", doc(["t0"], 1))
        wait_all(etcd, rev)
        print(f"re-converged after an etcd restart: {time.monotonic() - t0:.2f} s from the restart")
    except RuntimeError as e:
        print(e)
        for n in nodes[:2]:
            print(f"--- {n}'s log:\n" + open(os.path.join(work, n, "agent.log")).read()[-3000:])
        sys.exit(1)
    finally:
        for a in agents:
            a.send_signal(signal.SIGTERM)
        for a in agents:
            try:
                a.wait(timeout=20)
            except subprocess.TimeoutExpired:
                a.kill()
        etcd.kill()
        for p in parents:
            subprocess.run(["find", p, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"],
                           stderr=subprocess.DEVNULL)
        subprocess.run(["chattr", "-R", "-a", work], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


main()
