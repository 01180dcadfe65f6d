#!/usr/bin/env python3
"""Scale: what one operation costs beside 5 instances and beside N, side by side.

In one run, ctr and podman + runc (podman 4.3 + conmon, netavark; private
--root, --runroot, --tmpdir, network config, vfs storage, cgroupfs, file
events), both on their bridge network, alternating:

  at 5, then at N running `busybox sleep 3600` instances, ROUNDS rounds of
    run -d   a new instance on the bridge (sh trapping TERM, so stop is at once)
    stop     it
    rm -f    it
    ls       every instance
  medians of wall time and of CPU time (the command's and its waited-for
  children's: user + system), and the ratios at-N / at-5 (1.0 is flat).

Start cost on the bridge, alternating, RUNS runs each:
  ctr none     ctr run --rm --network none busybox /bin/true
  ctr bridge   ctr run --rm busybox /bin/true     (bridge cost: bridge - none)
  click        ctr's interpreter importing click  (the floor: ctr none / click)

Run as root:

    python3 benchmarks/scale.py                    # --instances 200 --rounds 5 --runs 20
    python3 benchmarks/scale.py --format json
    CTR_BIN=/opt/ctr/venv/bin/ctr python3 benchmarks/scale.py   # another ctr

Everything runs in a network and a mount namespace of its own (a tmpfs over
/sys/fs/cgroup/unified, as benchmarks/start.py): nothing touches the machine's
network, and every instance, image and cgroup it made is removed at the end.
Without podman the ctr figures come alone, with a note.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import start  # noqa: E402 - the same cgroup, progress and interpreter helpers

SLEEPER = ["sleep", "3600"]
MEASURED = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
PODMAN_IMAGE = "localhost/ctr-scale-bb"
# What podman makes on the host whatever its options say; each is removed after
# the run if the run made it and it is then empty (never more).
HOST_PATHS = ("/var/lib/containers/cache/blob-info-cache-v1.boltdb",
              "/var/lib/containers/cache", "/var/lib/containers", "/run/containers/networks",
              "/run/containers")


def reexec_isolated():
    if os.environ.get("CTR_BENCH_NS"):
        return
    env = dict(os.environ, CTR_BENCH_NS="1")
    os.execvpe("unshare", ["unshare", "--net", "--mount", "--propagation", "private",
                           sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


def timed(argv, env=None):
    """(wall seconds, CPU seconds of the command and the children it waited for)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(argv)}: {err.decode().strip()}")
    return wall, usage.ru_utime + usage.ru_stime


def quiet(argv, env=None):
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env)


class Ctr:
    name = "ctr"

    def __init__(self, work):
        self.env = dict(os.environ, CTR_ROOT=os.path.join(work, "state"))
        subprocess.run([start.CTR, "image", "build", "busybox"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        self.rootfs = os.path.join(self.env["CTR_ROOT"], "images", "busybox", "rootfs")

    def cmd(self, *args):
        return [start.CTR, *args]

    def fill(self, name):
        subprocess.run(self.cmd("run", "-d", "--name", name, "busybox", *SLEEPER), env=self.env,
                       check=True, stdout=subprocess.DEVNULL)

    def op(self, what, name):
        args = {"run -d": ("run", "-d", "--name", name, "busybox", *MEASURED),
                "stop": ("stop", name), "rm -f": ("rm", "-f", name),
                "ls": ("ls",)}[what]
        return timed(self.cmd(*args), env=self.env)

    def close(self):
        names = subprocess.run(self.cmd("ls", "-a", "--format", "json"), env=self.env,
                               capture_output=True, text=True).stdout
        names = [r["name"] for r in json.loads(names or "[]")]
        for i in range(0, len(names), 50):
            quiet(self.cmd("rm", "-f", *names[i:i + 50]), env=self.env)


class Podman:
    name = "podman"

    def __init__(self, work, rootfs):
        base = os.path.join(work, "podman")
        os.makedirs(base)
        self.base = base
        self.argv = ["podman", "--root", f"{base}/root", "--runroot", f"{base}/run",
                     "--tmpdir", f"{base}/tmp", "--network-config-dir", f"{base}/net",
                     "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--runtime", "runc"]
        subprocess.run(["tar", "-C", rootfs, "-cf", f"{base}/bb.tar", "."], check=True)
        subprocess.run([*self.argv, "import", f"{base}/bb.tar", PODMAN_IMAGE], check=True,
                       capture_output=True, cwd=base)

    def cmd(self, *args):
        return [*self.argv, *args]

    def fill(self, name):
        subprocess.run(self.cmd("run", "-d", *ULIMITS, "--name", name, PODMAN_IMAGE, *SLEEPER),
                       check=True, stdout=subprocess.DEVNULL, cwd=self.base)

    def op(self, what, name):
        args = {"run -d": ("run", "-d", *ULIMITS, "--name", name, PODMAN_IMAGE, *MEASURED),
                "stop": ("stop", name), "rm -f": ("rm", "-f", name), "ls": ("ps",)}[what]
        return timed(self.cmd(*args))

    def close(self):
        quiet(self.cmd("rm", "-a", "-f", "-t", "0"))
        quiet(self.cmd("rmi", "-a", "-f"))


OPS = ("run -d", "stop", "rm -f", "ls")


def summarize(pairs):
    walls = sorted(w for w, _ in pairs)
    cpus = sorted(c for _, c in pairs)
    return {"runs": len(pairs), "median_ms": round(statistics.median(walls) * 1000, 1),
            "p90_ms": round(walls[int(0.9 * (len(walls) - 1))] * 1000, 1),
            "cpu_median_ms": round(statistics.median(cpus) * 1000, 1)}


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def scale(engines, levels, rounds):
    """Each engine filled to each level in turn, then `rounds` rounds of the
    operations, the engines alternating within a round."""
    samples = {(e.name, level, op): [] for e in engines for level in levels for op in OPS}
    filled = 0
    steps = sum(levels[-1:]) * len(engines) + len(levels) * rounds * len(engines)
    done = 0
    for level in levels:
        for i in range(filled, level):
            for e in engines:
                e.fill(f"f{i}")
                done += 1
                start.progress(f"scale benchmark: {done}/{steps} (filling to {level})", end="")
        filled = level
        for r in range(rounds):
            for e in engines:
                name = f"m{level}-{r}"
                for op in OPS:
                    samples[e.name, level, op].append(e.op(op, name))
                done += 1
                start.progress(f"scale benchmark: {done}/{steps} (rounds at {level})", end="")
    out = {}
    for e in engines:
        rows = out[e.name] = {}
        for op in OPS:
            at = {level: summarize(samples[e.name, level, op]) for level in levels}
            low, high = at[levels[0]], at[levels[-1]]
            rows[op] = {f"at_{level}": s for level, s in at.items()}
            rows[op]["ratio"] = ratio(high["median_ms"], low["median_ms"])
            rows[op]["cpu_ratio"] = ratio(high["cpu_median_ms"], low["cpu_median_ms"])
    return out


def start_costs(ctr, runs, warmup):
    python = start.ctr_python()
    peers = {
        "ctr none": (start.CTR, "run", "--rm", "--network", "none", "busybox", "/bin/true"),
        "ctr bridge": (start.CTR, "run", "--rm", "busybox", "/bin/true"),
        "click": (python, "-c", "import click"),
    }
    samples = {k: [] for k in peers}
    total, done = (warmup + runs) * len(peers), 0
    for i in range(warmup + runs):
        for name, argv in peers.items():
            pair = timed(list(argv), env=ctr.env)
            if i >= warmup:
                samples[name].append(pair)
            done += 1
            start.progress(f"scale benchmark: start {done}/{total}", end="")
    result = {k: summarize(v) for k, v in samples.items()}
    none, bridge, click = result["ctr none"], result["ctr bridge"], result["click"]
    return {"results": result,
            "bridge_cost_ms": round(bridge["median_ms"] - none["median_ms"], 1),
            "bridge_cost_cpu_ms": round(bridge["cpu_median_ms"] - none["cpu_median_ms"], 1),
            "ctr_none/click": ratio(none["median_ms"], click["median_ms"]),
            "ctr_none/click_cpu": ratio(none["cpu_median_ms"], click["cpu_median_ms"])}


def remove_empty_parents(keep):
    """ctr's /ctr where this run made it and it is empty again: other sessions
    on the host may put their instances there meanwhile (never touched)."""
    for path in start.cgroup_dirs("ctr") - keep:
        try:
            os.rmdir(path)
        except OSError:
            pass


def remove_host_paths(had, had_libpod):
    for path in HOST_PATHS:
        if path not in had:
            try:
                (os.unlink if path.endswith(".boltdb") else os.rmdir)(path)
            except OSError:
                pass
    if not had_libpod:  # podman's conmon parent, when this run made it: empty folders only
        for h in os.listdir("/sys/fs/cgroup"):
            for name in ("libpod_parent/conmon", "libpod_parent"):
                try:
                    os.rmdir(f"/sys/fs/cgroup/{h}/{name}")
                except OSError:
                    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=200, help="N (default 200)")
    ap.add_argument("--rounds", type=int, default=5, help="operations measured at each level")
    ap.add_argument("--runs", type=int, default=20, help="runs of each start")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-podman", action="store_true", help="ctr alone")
    ap.add_argument("--format", choices=["table", "json"], default="table")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/scale.py: run as root")
    if args.instances <= 5:
        raise SystemExit("benchmarks/scale.py: --instances must be above 5")
    reexec_isolated()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    start.hide_cgroup2()
    keep = start.cgroup_dirs("ctr")
    had = {p for p in HOST_PATHS if os.path.exists(p)}
    had_libpod = os.path.isdir("/sys/fs/cgroup/memory/libpod_parent")
    work = tempfile.mkdtemp(prefix="ctr-scale-")
    os.chmod(work, 0o711)
    note = None
    engines = []
    try:
        ctr = Ctr(work)
        engines.append(ctr)
        if args.no_podman:
            note = "podman: left out (--no-podman)"
        elif not (shutil.which("podman") and shutil.which("runc")):
            note = "podman: not installed (make dev installs it): ctr alone"
        else:
            engines.append(Podman(work, ctr.rootfs))
        costs = start_costs(ctr, args.runs, args.warmup)
        ops = scale(engines, [5, args.instances], args.rounds)
        out = {"benchmark": "scale", "version": 1, "ctr": start.CTR,
               "instances": args.instances, "rounds": args.rounds, "ops": ops,
               "start": costs, "note": note}
        report(args, out)  # before the teardown, which may be slow (O(N) per rm)
        sys.stdout.flush()
        start.progress("scale benchmark: removing the instances", end="")
    finally:
        for e in reversed(engines):
            e.close()
        start.progress("", end="")
        remove_empty_parents(keep)
        remove_host_paths(had, had_libpod)
        shutil.rmtree(work, ignore_errors=True)


def report(args, out):
    ops, costs, note = out["ops"], out["start"], out["note"]
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return
    n = args.instances
    print(f"{'':8} {'op':7} {'at 5':>9} {f'at {n}':>9} {'ratio':>6}   {'cpu 5':>9} "
          f"{f'cpu {n}':>9} {'ratio':>6}   (ms, medians of {args.rounds})")
    for engine, rows in ops.items():
        for op, r in rows.items():
            lo, hi = r["at_5"], r[f"at_{n}"]
            print(f"{engine:8} {op:7} {lo['median_ms']:9.1f} {hi['median_ms']:9.1f} "
                  f"{r['ratio']:5.2f}x   {lo['cpu_median_ms']:9.1f} {hi['cpu_median_ms']:9.1f} "
                  f"{r['cpu_ratio']:5.2f}x")
    print(f"\n{'start':12} {'median':>9} {'p90':>9} {'cpu':>9}   (ms, {args.runs} runs each)")
    for name, r in costs["results"].items():
        print(f"{name:12} {r['median_ms']:9.1f} {r['p90_ms']:9.1f} {r['cpu_median_ms']:9.1f}")
    print(f"bridge cost: {costs['bridge_cost_ms']:+.1f} ms "
          f"(CPU {costs['bridge_cost_cpu_ms']:+.1f} ms); "
          f"ctr none / click: {costs['ctr_none/click']}x (CPU {costs['ctr_none/click_cpu']}x)")
    if note:
        print(note)


if __name__ == "__main__":
    main()
