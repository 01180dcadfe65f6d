#!/usr/bin/env python3
"""ctr-oci beside runc and crun, as the engines run them, in one run:

  podman      podman run --rm --network none IMAGE /bin/true, with --runtime
              ctr-oci, runc and crun (podman 4.3 + conmon; private --root,
              --runroot, --tmpdir, vfs storage, cgroupfs, file events)
  containerd  /usr/bin/ctr run --rm --runc-binary RUNTIME --rootfs DIR ID /bin/true,
              with ctr-oci and runc (containerd 1.6, private root, state, sockets;
              its CRI plugin off)

Alternating runtimes each round on one busybox root filesystem; reports medians,
p90 and the ratios ctr-oci/runc and ctr-oci/crun. Run as root:

    python3 benchmarks/oci.py --runs 10
    python3 benchmarks/oci.py --format json

The whole benchmark runs in a private mount namespace with a tmpfs over
/sys/fs/cgroup/unified: crun refuses hybrid hosts whose cgroup2 mount lists a
controller, and all runtimes then use the same v1 hierarchies.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from start import hide_cgroup2, reexec_in_private_mount_ns  # benchmarks/start.py, beside this

OCI = os.environ.get("CTR_OCI_BIN") or shutil.which("ctr-oci", path="/opt/ctr/venv/bin") or \
    "/usr/local/bin/ctr-oci"
CTR_CLI = "/usr/bin/ctr"  # containerd's CLI, not ours
CGROUP_PARENT = "ctrbench-oci"
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
HOST_PATHS = ("/var/lib/containers/cache/blob-info-cache-v1.boltdb",
              "/var/lib/containers/cache", "/var/lib/containers", "/run/containers/networks",
              "/run/containers", "/run/ctr-oci", "/run/containerd/s", "/run/containerd/fifo",
              "/run/containerd")


def make_rootfs(path):
    busybox = shutil.which("busybox") or "/bin/busybox"
    os.makedirs(f"{path}/bin")
    shutil.copy2(busybox, f"{path}/bin/busybox")
    for name in ("sh", "true", "echo"):
        os.symlink("busybox", f"{path}/bin/{name}")
    for d in ("proc", "sys", "dev", "etc", "tmp"):
        os.makedirs(f"{path}/{d}", exist_ok=True)
    return path


def timed(argv):
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:12])}... failed ({r.returncode}): {r.stderr.strip()}")
    return elapsed


class Peers:
    def __init__(self, base):
        self.base = base
        self.rootfs = make_rootfs(f"{base}/rootfs")
        self.podman = ["podman", "--root", f"{base}/p/root", "--runroot", f"{base}/p/run",
                       "--tmpdir", f"{base}/p/tmp", "--network-config-dir", f"{base}/p/net",
                       "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                       "--events-backend", "file"]
        subprocess.run(["tar", "-C", self.rootfs, "-cf", f"{base}/bb.tar", "."], check=True)
        subprocess.run([*self.podman, "import", f"{base}/bb.tar", "localhost/bench-bb"],
                       check=True, capture_output=True)
        with open(f"{base}/containerd.toml", "w") as f:
            f.write(f'version = 2\nroot = "{base}/c/root"\nstate = "{base}/c/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{base}/c.sock"\n'
                    f'[ttrpc]\n  address = "{base}/c-ttrpc.sock"\n')
        self.containerd = subprocess.Popen(["containerd", "--config", f"{base}/containerd.toml"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(f"{base}/c.sock") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.n = 0

    def podman_run(self, runtime):
        return timed([*self.podman, "--runtime", runtime, "run", "--rm", "--network", "none",
                      *ULIMITS, "localhost/bench-bb", "/bin/true"])

    def containerd_run(self, runtime):
        self.n += 1
        cid = f"b{self.n}"
        return timed([CTR_CLI, "--address", f"{self.base}/c.sock", "run", "--rm",
                      "--runc-binary", runtime, "--runc-root", f"{self.base}/c/runc",
                      "--fifo-dir", f"{self.base}/c/fifo", "--cgroup",
                      f"/{CGROUP_PARENT}/{cid}", "--rootfs", self.rootfs, cid, "/bin/true"])

    def close(self):
        subprocess.run([*self.podman, "rmi", "-af"], capture_output=True)
        self.containerd.terminate()
        self.containerd.wait(20)


def remove_cgroup_parents(had_libpod):
    """The benchmark's cgroup parent, and podman's libpod_parent (conmon's)
    when the benchmark made it: empty folders only."""
    names = [CGROUP_PARENT] + ([] if had_libpod else ["libpod_parent/conmon", "libpod_parent"])
    for name in names:
        for h in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(f"/sys/fs/cgroup/{h}/{name}")
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--format", choices=("table", "json"), default="table")
    args = ap.parse_args()
    reexec_in_private_mount_ns()
    hide_cgroup2()
    had = {p for p in HOST_PATHS if os.path.exists(p)}
    had_libpod = os.path.isdir("/sys/fs/cgroup/memory/libpod_parent")
    base = tempfile.mkdtemp(prefix="ctr-bench-oci-")
    cases = [("podman", "ctr-oci", OCI), ("podman", "runc", "runc"), ("podman", "crun", "crun"),
             ("containerd", "ctr-oci", OCI), ("containerd", "runc", shutil.which("runc"))]
    times = {(engine, name): [] for engine, name, _ in cases}
    peers = Peers(base)
    try:
        for engine, _, runtime in cases:  # one warm-up each
            getattr(peers, f"{engine}_run")(runtime)
        for _ in range(args.runs):
            for engine, name, runtime in cases:
                times[engine, name].append(getattr(peers, f"{engine}_run")(runtime))
    finally:
        peers.close()
        shutil.rmtree(base, ignore_errors=True)
        remove_cgroup_parents(had_libpod)
        for path in HOST_PATHS:
            if path not in had:
                try:
                    (os.unlink if path.endswith(".boltdb") else os.rmdir)(path)
                except OSError:
                    pass
    out = {}
    for (engine, name), xs in times.items():
        xs = sorted(xs)
        out.setdefault(engine, {})[name] = {
            "median_ms": round(statistics.median(xs) * 1000, 1),
            "p90_ms": round(xs[int(0.9 * (len(xs) - 1))] * 1000, 1)}
    for rows in out.values():
        for peer in ("runc", "crun"):
            if peer in rows:
                rows[f"ctr-oci/{peer}"] = round(rows["ctr-oci"]["median_ms"]
                                                / rows[peer]["median_ms"], 2)
    if args.format == "json":
        print(json.dumps({"runs": args.runs, "results": out}, indent=2))
        return
    print(f"{'engine':<11} {'runtime':<8} {'median':>9} {'p90':>9}   ({args.runs} runs)")
    for engine, rows in out.items():
        for name, v in rows.items():
            if isinstance(v, dict):
                print(f"{engine:<11} {name:<8} {v['median_ms']:>7.1f}ms {v['p90_ms']:>7.1f}ms")
        for key, v in rows.items():
            if not isinstance(v, dict):
                print(f"{engine:<11} {key}: {v}x")


if __name__ == "__main__":
    main()
