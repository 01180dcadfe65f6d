#!/usr/bin/env python3
"""Start cost of `ctr run --rm busybox /bin/true`, side by side with its peers.

In one run, alternating, on the same busybox root filesystem:
  ctr     ctr run --rm --network none busybox /bin/true (the bundles have no network either)
  crun    crun run on an OCI bundle of that rootfs (namespaces as ctr's)
  runc    runc run on the same bundle
  floor   unshare -fpimun --mount-proc chroot ROOTFS /bin/true
  python  ctr's own interpreter doing nothing (`python -P -c pass`)
  click   that interpreter importing click, before ctr does anything
          (`python -P -c "import click"`: the floor of ctr's start)
  ctr+limits, crun+limits: the same with `-m 64m --pids-limit 64 --cpus 1`
          (crun given the same limits in its config.json), for what limits cost

Reports medians, p90, min, the median CPU time (user + system of the command
and the children it reaped: steadier than wall time on a loaded host) and the
ratios ctr/crun, ctr/runc and ctr/click (wall and CPU). Run as root:

    make bench                       # or: python3 benchmarks/start.py --runs 40
    python3 benchmarks/start.py --format json
    python3 benchmarks/start.py --only ctr,click --runs 20   # ctr against its floor

The whole benchmark runs in a private mount namespace with a tmpfs over
/sys/fs/cgroup/unified: crun refuses hybrid hosts whose cgroup2 mount lists a
controller, and all three runtimes then use the same v1 hierarchies.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CTR = os.environ.get("CTR_BIN") or shutil.which("ctr", path="/opt/ctr/venv/bin") or "ctr"
CGROUP_PARENT = "ctrbench-peers"


def reexec_in_private_mount_ns():
    if os.environ.get("CTR_BENCH_NS"):
        return
    env = dict(os.environ, CTR_BENCH_NS="1")
    # the script that was run (benchmarks/oci.py uses this one too)
    os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable,
                           os.path.abspath(sys.argv[0]), *sys.argv[1:]], env)


def hide_cgroup2():
    with open("/proc/self/mountinfo") as f:
        hybrid = any(" /sys/fs/cgroup/unified " in line and "cgroup2" in line for line in f)
    if hybrid:
        subprocess.run(["mount", "-t", "tmpfs", "none", "/sys/fs/cgroup/unified"], check=True)


def progress(msg, end="\n"):
    if sys.stderr.isatty():
        print(f"\r\033[K{msg}", end=end, file=sys.stderr, flush=True)


def ctr_python():
    """The interpreter ctr's console script runs with (its shebang)."""
    with open(shutil.which(CTR) or CTR) as f:
        line = f.readline()
    return line[2:].strip() if line.startswith("#!") else sys.executable


NONE = ["--network", "none"]  # the peers' bundles have a network namespace with lo only
LIMITS = ["-m", "64m", "--pids-limit", "64", "--cpus", "1"]
OCI_LIMITS = {"memory": {"limit": 64 << 20, "swap": 128 << 20}, "pids": {"limit": 64},
              "cpu": {"quota": 100000, "period": 100000}}


def make_bundle(work, rootfs, name="bundle", resources=None):
    bundle = os.path.join(work, name)
    os.makedirs(bundle)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["root"] = {"path": rootfs, "readonly": True}
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    config["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/bench"
    # the same namespaces ctr uses (runc's default adds nothing else)
    config["linux"]["namespaces"] = [{"type": t} for t in
                                     ("pid", "mount", "ipc", "uts", "network", "cgroup")]
    if resources:
        config["linux"]["resources"] = resources
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def timed(cmd, **kw):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, **kw)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}: {proc.stderr.decode()}")
    return dt


def timed_cpu(cmd, **kw):
    """(wall, CPU) seconds of one command: CPU is user + system of it and of the
    children it reaped (a container's processes are ctr's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(cmd, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cgroup_dirs(name):
    # "unified" is our private tmpfs during the run: it vanishes with the namespace.
    return {os.path.join("/sys/fs/cgroup", h, name) for h in os.listdir("/sys/fs/cgroup")
            if h != "unified" and os.path.isdir(os.path.join("/sys/fs/cgroup", h, name))}


def remove_cgroup_parents(keep):
    """runc's parent, and ctr's /ctr where this benchmark made it: the host as found."""
    for path in (cgroup_dirs(CGROUP_PARENT) | cgroup_dirs("ctr")) - keep:
        if os.path.isdir(path):
            for sub in os.listdir(path):
                if os.path.isdir(os.path.join(path, sub)):
                    os.rmdir(os.path.join(path, sub))
            os.rmdir(path)


def summarize(samples):
    s = sorted(samples)
    return {
        "runs": len(s),
        "median_ms": round(statistics.median(s) * 1000, 1),
        "p90_ms": round(s[int(0.9 * (len(s) - 1))] * 1000, 1),
        "min_ms": round(s[0] * 1000, 1),
    }


def summarize_cpu(pairs):
    """summarize() of the wall times, and the median CPU time."""
    out = summarize([wall for wall, _ in pairs])
    out["cpu_median_ms"] = round(statistics.median(cpu for _, cpu in pairs) * 1000, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--format", choices=["table", "json"], default="table")
    ap.add_argument("--only", metavar="NAME,...",
                    help="Only these rows (ctr, crun, runc, floor, python, click, ctr+limits, "
                         "crun+limits).")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/start.py: run as root")
    reexec_in_private_mount_ns()
    hide_cgroup2()

    keep = cgroup_dirs("ctr")
    work = tempfile.mkdtemp(prefix="ctr-bench-")
    try:
        root = os.path.join(work, "state")
        env = dict(os.environ, CTR_ROOT=root)
        subprocess.run([CTR, "image", "build", "busybox"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rootfs = os.path.join(root, "images", "busybox", "rootfs")
        bundle = make_bundle(work, rootfs)
        limited = make_bundle(work, rootfs, "limited", OCI_LIMITS)
        peers = {
            "ctr": ([CTR, "run", "--rm", *NONE, "busybox", "/bin/true"], {"env": env}),
            "crun": (["crun", "run", "--bundle", bundle, "bench-crun"], {}),
            "runc": (["runc", "run", "--bundle", bundle, "bench-runc"], {}),
            "floor": (["unshare", "-fpimun", "--mount-proc", "chroot", rootfs, "/bin/true"], {}),
            "python": ([ctr_python(), "-P", "-c", "pass"], {}),
            "click": ([ctr_python(), "-P", "-c", "import click"], {}),
            "ctr+limits": ([CTR, "run", "--rm", *NONE, *LIMITS, "busybox", "/bin/true"],
                           {"env": env}),
            "crun+limits": (["crun", "run", "--bundle", limited, "bench-crun"], {}),
        }
        only = set(args.only.split(",")) if args.only else set(peers)
        if only - set(peers):
            raise SystemExit(f"benchmarks/start.py: no row {', '.join(sorted(only - set(peers)))}")
        available = {k: v for k, v in peers.items() if k in only and shutil.which(v[0][0])}
        samples = {k: [] for k in available}
        total = (args.warmup + args.runs) * len(available)
        done = 0
        for i in range(args.warmup + args.runs):
            order = list(available.items())
            for name, (cmd, kw) in order if i % 2 == 0 else order[::-1]:  # alternating
                dt = timed_cpu(cmd, **kw)
                if i >= args.warmup:
                    samples[name].append(dt)
                done += 1
                progress(f"start benchmark: {done}/{total}", end="")
        progress("", end="")
    finally:
        remove_cgroup_parents(keep)
        shutil.rmtree(work, ignore_errors=True)

    result = {name: summarize_cpu(s) for name, s in samples.items()}
    ratios = {}
    for peer in ("crun", "runc", "floor", "click"):
        if peer in result and "ctr" in result:
            ratios[f"ctr/{peer}"] = round(result["ctr"]["median_ms"] / result[peer]["median_ms"],
                                          2)
    if "click" in result and "ctr" in result:
        ratios["ctr/click CPU"] = round(result["ctr"]["cpu_median_ms"]
                                        / result["click"]["cpu_median_ms"], 2)
    for rt in ("ctr", "crun"):
        if rt in result and f"{rt}+limits" in result:
            ratios[f"{rt}+limits/{rt}"] = round(
                result[f"{rt}+limits"]["median_ms"] / result[rt]["median_ms"], 2)
    out = {"benchmark": "start", "version": 2, "command": "/bin/true", "image": "busybox",
           "results": result, "ratios": ratios}
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return
    print(f"{'runtime':12} {'median':>9} {'p90':>9} {'min':>9} {'CPU':>9}"
          f"   (ms, {args.runs} runs each)")
    for name, r in result.items():
        print(f"{name:12} {r['median_ms']:9.1f} {r['p90_ms']:9.1f} {r['min_ms']:9.1f} "
              f"{r['cpu_median_ms']:9.1f}")
    print("  ".join(f"{k} = {v}x" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
