#!/usr/bin/env python3
"""What a bridge network costs: start time and throughput, side by side.

Start, alternating in one run (medians):
  ctr none     ctr run --rm --network none busybox /bin/true
  ctr bridge   ctr run --rm busybox /bin/true (veth on ctr0, IPAM lease, NAT rules)
  crun none    crun run, a network namespace with lo only
  crun+ip      crun run joining a namespace that `ip` prepared with a veth on a
               bridge and an address (7 `ip` calls), torn down after, as a CNI
               plugin would
Throughput: 256 MiB from a container to the host over the bridge (busybox nc
into a Python socket pump), as a ratio to the same pump over the host's loopback.

Run as root: `python3 benchmarks/network.py [--runs 20] [--format json]`. It
runs in a network namespace of its own (and a private mount namespace, for
crun on hybrid hosts): nothing touches the machine's own network.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import start  # noqa: E402 - the same bundle, cgroup and timing helpers

MIB = 1 << 20
VOLUME = 256 * MIB


def reexec_isolated():
    if os.environ.get("CTR_BENCH_NS"):
        return
    env = dict(os.environ, CTR_BENCH_NS="1")
    os.execvpe("unshare", ["unshare", "--net", "--mount", "--propagation", "private",
                           sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


def ip(*args):
    subprocess.run(["ip", *args], check=True)


def crun_with_ip_netns(bundle, n):
    """A namespace prepared by `ip`, joined by crun, then torn down."""
    ns = f"bench{n}"
    ip("netns", "add", ns)
    ip("link", "add", f"vb{n}", "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("link", "set", f"vb{n}", "master", "benchbr0", "up")
    ip("-n", ns, "addr", "add", "10.77.0.2/16", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "route", "add", "default", "via", "10.77.0.1")
    subprocess.run(["crun", "run", "--bundle", bundle, "bench-crun"], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    ip("netns", "del", ns)


def pump(port, ready):
    """Receive until EOF; returns (bytes, seconds from first byte to EOF)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    ready.set()
    conn, _ = srv.accept()
    total, t0 = 0, None
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        if t0 is None:
            t0 = time.perf_counter()
        total += len(chunk)
    dt = time.perf_counter() - (t0 or time.perf_counter())
    conn.close()
    srv.close()
    return total, dt


def throughput(sender, port):
    ready, result = threading.Event(), {}
    t = threading.Thread(target=lambda: result.update(r=pump(port, ready)))
    t.start()
    ready.wait()
    subprocess.run(["sh", "-c", sender], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    t.join()
    total, dt = result["r"]
    return round(total / dt / MIB, 1) if dt else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--format", choices=["table", "json"], default="table")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/network.py: run as root")
    reexec_isolated()
    ip("link", "set", "lo", "up")
    start.hide_cgroup2()
    keep = start.cgroup_dirs("ctr")
    work = tempfile.mkdtemp(prefix="ctr-netbench-")
    try:
        root = os.path.join(work, "state")
        env = dict(os.environ, CTR_ROOT=root)
        subprocess.run([start.CTR, "image", "build", "busybox"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rootfs = os.path.join(root, "images", "busybox", "rootfs")
        bundle = start.make_bundle(work, rootfs)
        joined = start.make_bundle(work, rootfs, "joined")
        with open(os.path.join(joined, "config.json")) as f:
            config = json.load(f)
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = "/run/netns/bench0"
        with open(os.path.join(joined, "config.json"), "w") as f:
            json.dump(config, f)
        ip("link", "add", "benchbr0", "type", "bridge")
        ip("addr", "add", "10.77.0.1/16", "dev", "benchbr0")
        ip("link", "set", "benchbr0", "up")
        ctr = [start.CTR, "run", "--rm"]
        peers = {
            "ctr none": lambda: start.timed([*ctr, "--network", "none", "busybox", "/bin/true"],
                                            env=env),
            "ctr bridge": lambda: start.timed([*ctr, "busybox", "/bin/true"], env=env),
            "crun none": lambda: start.timed(["crun", "run", "--bundle", bundle, "bench-crun"]),
            "crun+ip": lambda: _timed_call(crun_with_ip_netns, joined, 0),
        }
        if not shutil.which("crun"):
            peers = {k: v for k, v in peers.items() if not k.startswith("crun")}
        samples = {k: [] for k in peers}
        total = (args.warmup + args.runs) * len(peers)
        done = 0
        for i in range(args.warmup + args.runs):
            for name, fn in peers.items():
                dt = fn()
                if i >= args.warmup:
                    samples[name].append(dt)
                done += 1
                start.progress(f"network benchmark: start {done}/{total}", end="")
        start.progress("network benchmark: throughput", end="")
        count = VOLUME // (64 * 1024)
        bridge = throughput(
            f"CTR_ROOT={root} {start.CTR} run --rm busybox sh -c "
            f"'dd if=/dev/zero bs=64k count={count} | nc 10.88.0.1 9001'", 9001)
        loop = throughput(f"busybox dd if=/dev/zero bs=64k count={count} | "
                          "busybox nc 127.0.0.1 9002", 9002)
        start.progress("", end="")
    finally:
        subprocess.run(["ip", "netns", "del", "bench0"], stderr=subprocess.DEVNULL)
        start.remove_cgroup_parents(keep)
        shutil.rmtree(work, ignore_errors=True)

    result = {k: start.summarize(v) for k, v in samples.items()}
    out = {"benchmark": "network", "version": 1, "start": result, "throughput_mib_s": {
        "container_to_host_bridge": bridge, "host_loopback": loop,
        "ratio": round(bridge / loop, 2) if bridge and loop else None}}
    costs = {}
    for rt, base, net in (("ctr", "ctr none", "ctr bridge"), ("crun", "crun none", "crun+ip")):
        if base in result and net in result:
            costs[rt] = round(result[net]["median_ms"] - result[base]["median_ms"], 1)
    out["network_cost_ms"] = costs
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return
    print(f"{'start':12} {'median':>9} {'p90':>9} {'min':>9}   (ms, {args.runs} runs each)")
    for name, r in result.items():
        print(f"{name:12} {r['median_ms']:9.1f} {r['p90_ms']:9.1f} {r['min_ms']:9.1f}")
    print("cost of a bridge network: " + "  ".join(f"{k} +{v} ms" for k, v in costs.items()))
    t = out["throughput_mib_s"]
    print(f"throughput: container->host over the bridge {t['container_to_host_bridge']} MiB/s, "
          f"host loopback {t['host_loopback']} MiB/s, ratio {t['ratio']}")


def _timed_call(fn, *a):
    t0 = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
