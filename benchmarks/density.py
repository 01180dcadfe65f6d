#!/usr/bin/env python3
"""Density: what an idle detached instance costs the host, and whether run -d,
stop and rm slow down as instances accumulate; ctr beside podman + runc (conmon).

For each engine in turn, in one run, on the same busybox root filesystem, on a
bridge network (ctr's ctr0, podman's CNI podman0):
  - start N instances of `sleep 3600`, detached, one after the other;
  - memory per idle instance: the fall of MemAvailable from before the first
    start to after the last (settled), divided by N; and the PSS (smem's
    proportional set size, from /proc/PID/smaps_rollup) of every process the
    engine left running outside its instances: those whose command line names
    the engine's private state root (ctr-monitor, conmon);
  - `ls` (podman ps) and `stats --no-stream` with N running;
  - stop all, then rm all, one by one.
`run -d` "at 5" is the median of the first 5 starts (0-4 already running), "at
N" of the last 5; `stop` and `rm` "at N" are the first 5 (N still there), "at
5" the last 5. Errors are the commands that failed; "left" what is still
there after rm (a process naming the root, an instance in ls).

    python3 benchmarks/density.py                  # 200 instances
    python3 benchmarks/density.py --instances 50 --engines ctr,ctr-python,podman
    python3 benchmarks/density.py --format json

ctr-python is ctr with its Python monitor (CTR_MONITOR=python), for what the
native one changes. The whole run is inside `unshare --net` (the bridges, NAT
rules and veths are its own) and podman keeps its state in a private folder.
MemAvailable is the whole host's: on a busy host, divide the noise by N.
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

CTR = os.environ.get("CTR_BIN") or shutil.which("ctr", path="/opt/ctr/venv/bin") or "ctr"
CGROUP_PARENT = "ctrbench-density"
PODMAN_CGROUP_PARENT = "ctrbench-density-podman"
MEMORY = "/sys/fs/cgroup/memory"
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")
# What podman makes on the host whatever its options say (as tests/integration/test_oci_podman.py)
PODMAN_HOST_PATHS = ("/var/lib/containers/cache/blob-info-cache-v1.boltdb",
                     "/var/lib/containers/cache", "/var/lib/containers",
                     "/run/containers/networks", "/run/containers")


def reexec_in_private_netns():
    if os.environ.get("CTR_DENSITY_NS"):
        return
    env = dict(os.environ, CTR_DENSITY_NS="1", CTR_CGROUP_PARENT=CGROUP_PARENT)
    script = os.path.abspath(sys.argv[0])
    os.execvpe("unshare", ["unshare", "--net", "--", "sh", "-c",
                           'ip link set lo up && exec "$0" "$@"', sys.executable, script,
                           *sys.argv[1:]], env)


def progress(msg):
    if sys.stderr.isatty():
        print(f"\r\033[K{msg}", end="", file=sys.stderr, flush=True)


KERNEL = ("Slab", "Percpu", "KernelStack", "PageTables")  # what no process's PSS shows


def meminfo():
    """MemAvailable and the kernel's own memory (KERNEL's sum) in bytes, each the
    median of 3 reads 0.3 s apart."""
    avail, kernel = [], []
    for i in range(3):
        if i:
            time.sleep(0.3)
        with open("/proc/meminfo") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        avail.append(fields["MemAvailable"])
        kernel.append(sum(fields.get(k, 0) for k in KERNEL))
    return statistics.median(avail), statistics.median(kernel)


def processes_naming(marker):
    """{pid: command line} of the processes whose command line contains `marker`."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found[int(pid)] = cmd
    return found


def pss(pid):
    """(Pss, Pss_Anon) in bytes, from smaps_rollup; (0, 0) if it is gone."""
    out = {"Pss:": 0, "Pss_Anon:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key = line.split()[0]
                if key in out:
                    out[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out["Pss:"], out["Pss_Anon:"]


def memory_usage(cgroup):
    """What the instances' memory cgroups hold (their processes' pages, page
    cache and kernel memory charged to them), in bytes; 0 without the file."""
    try:
        with open(os.path.join(cgroup, "memory.usage_in_bytes")) as f:
            return int(f.read())
    except OSError:
        return 0


def timed(argv, **kw):
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    return (time.perf_counter() - t) * 1000, r


class Ctr:
    def __init__(self, work, name="ctr", monitor=None):
        self.name = name
        self.root = os.path.join(work, f"{name}-root")
        self.env = dict(os.environ, **({"CTR_MONITOR": monitor} if monitor else {}))
        subprocess.run([CTR, "--root", self.root, "image", "build", "busybox"], check=True,
                       stdout=subprocess.DEVNULL)
        self.marker = self.root
        self.cgroup = os.path.join(MEMORY, CGROUP_PARENT)

    def cmd(self, *args):
        return [CTR, "--root", self.root, *args]

    def __call__(self, *args):
        return timed(self.cmd(*args), env=self.env)

    def run(self, name):
        return self("run", "-d", "--name", name, "busybox", "sleep", "3600")

    def stop(self, name):
        return self("stop", "-t", "0", name)

    def rm(self, name):
        return self("rm", name)

    def ls(self):
        return self("ls", "-a")

    def stats(self):
        return self("stats", "--no-stream")

    def watchers(self):
        """{pid: command line} of the instances' monitors (the Python one names
        itself `ctr-monitor NAME`: its command line does not show the root)."""
        found = processes_naming(self.marker)
        folder = os.path.join(self.root, "instances")
        for name in os.listdir(folder):
            try:
                with open(os.path.join(folder, name, "state.json")) as f:
                    pid = json.load(f).get("reaper_pid")
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    found[pid] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, TypeError):
                continue
        return found

    def left(self):
        r = subprocess.run(self.cmd("ls", "-aq"), capture_output=True, text=True, env=self.env)
        return r.stdout.split()

    def cleanup(self):
        names = self.left()
        if names:
            subprocess.run(self.cmd("rm", "-f", *names), capture_output=True, env=self.env)
        shutil.rmtree(self.root, ignore_errors=True)


class Podman:
    name = "podman"

    def __init__(self, work, rootfs):
        self.base = os.path.join(work, "podman")
        os.makedirs(self.base, 0o711)
        self.had = {p for p in PODMAN_HOST_PATHS if os.path.exists(p)}
        self.had_parent = os.path.isdir("/sys/fs/cgroup/memory/libpod_parent")
        self.had_netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        self.argv = ["podman", "--root", f"{self.base}/root", "--runroot", f"{self.base}/run",
                     "--tmpdir", f"{self.base}/tmp", "--network-config-dir", f"{self.base}/net",
                     "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--runtime", "runc"]
        tar = os.path.join(self.base, "bb.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        subprocess.run([*self.argv, "import", tar, "localhost/density-bb"], check=True,
                       capture_output=True, cwd=self.base)
        self.marker = self.base
        self.cgroup = os.path.join(MEMORY, PODMAN_CGROUP_PARENT)

    def __call__(self, *args):
        # conmon writes an `oom` file into its working directory: podman's own here
        return timed([*self.argv, *args], cwd=self.base)

    def run(self, name):
        return self("run", "-d", *ULIMITS, "--cgroup-parent", "/" + PODMAN_CGROUP_PARENT,
                    "--name", name, "localhost/density-bb", "sleep", "3600")

    def stop(self, name):
        return self("stop", "-t", "0", name)

    def rm(self, name):
        return self("rm", name)

    def ls(self):
        return self("ps", "-a")

    def stats(self):
        return self("stats", "--no-stream")

    def watchers(self):
        return processes_naming(self.marker)  # conmon names the container's folders

    def left(self):
        r = subprocess.run([*self.argv, "ps", "-aq"], capture_output=True, text=True,
                           cwd=self.base)
        return r.stdout.split()

    def cleanup(self):
        subprocess.run([*self.argv, "rm", "--all", "--force", "--time", "0"],
                       capture_output=True, cwd=self.base)
        subprocess.run([*self.argv, "rmi", "--all", "--force"], capture_output=True,
                       cwd=self.base)
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if self.base in line.split()[1]]
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
        # podman 4.3 unmounts its containers' netns files but may leave them
        for name in set(os.listdir("/run/netns")) - self.had_netns if os.path.isdir(
                "/run/netns") else ():
            path = os.path.join("/run/netns", name)
            if name.startswith("netns-") and not os.path.ismount(path):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if not self.had_parent:
            for h in os.listdir("/sys/fs/cgroup"):
                remove_tree(os.path.join("/sys/fs/cgroup", h, "libpod_parent"))
        for path in PODMAN_HOST_PATHS:
            if path not in self.had:
                try:
                    (os.unlink if path.endswith(".boltdb") else os.rmdir)(path)
                except OSError:
                    pass


def remove_tree(cgroup):
    """rmdir a cgroup folder and its (empty) children, deepest first."""
    if not os.path.isdir(cgroup):
        return
    for top, dirs, _ in os.walk(cgroup, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(top, d))
            except OSError:
                pass
    try:
        os.rmdir(cgroup)
    except OSError:
        pass


def median(xs):
    return round(statistics.median(xs), 1) if xs else None


def measure(engine, n):
    names = [f"d{i}" for i in range(n)]
    errors = []

    def note(what, r):
        if r.returncode != 0:
            errors.append(f"{what}: {r.stderr.decode(errors='replace').strip()[:200]}")

    before, kernel_before = meminfo()
    starts = []
    for i, name in enumerate(names):
        progress(f"{engine.name}: run -d {i + 1}/{n}")
        ms, r = engine.run(name)
        note(f"run {name}", r)
        starts.append(ms)
    time.sleep(3)  # settled: monitors idle, the last start's transient memory freed
    after, kernel_after = meminfo()
    procs = engine.watchers()
    cgroup_usage = memory_usage(engine.cgroup)
    sizes = [pss(pid) for pid in procs]
    progress(f"{engine.name}: ls, stats")
    ls_ms = []
    for _ in range(3):
        ms, r = engine.ls()
        note("ls", r)
        ls_ms.append(ms)
    stats_ms, r = engine.stats()
    note("stats", r)
    stops, rms = [], []
    for i, name in enumerate(names):
        progress(f"{engine.name}: stop {i + 1}/{n}")
        ms, r = engine.stop(name)
        note(f"stop {name}", r)
        stops.append(ms)
    for i, name in enumerate(names):
        progress(f"{engine.name}: rm {i + 1}/{n}")
        ms, r = engine.rm(name)
        note(f"rm {name}", r)
        rms.append(ms)
    progress("")
    left = engine.left() + [f"process {p}: {c[:80]}" for p, c in
                            processes_naming(engine.marker).items()]
    k = min(5, n)
    return {
        "engine": engine.name, "instances": n,
        "mem_per_instance_mib": round((before - after) / n / 2**20, 2),
        "kernel_mib_per_instance": round((kernel_after - kernel_before) / n / 2**20, 2),
        "instance_cgroups_mib_per_instance": round(cgroup_usage / n / 2**20, 2),
        "accounted_mib_per_instance": round(
            (cgroup_usage + sum(p for p, _ in sizes)) / n / 2**20, 2),
        "monitor_processes": len(procs),
        "monitor_pss_kib_per_instance": round(sum(p for p, _ in sizes) / n / 1024, 1),
        "monitor_pss_anon_kib_per_instance": round(sum(a for _, a in sizes) / n / 1024, 1),
        "run_ms": {"at_5": median(starts[:k]), "at_n": median(starts[-k:])},
        "stop_ms": {"at_5": median(stops[-k:]), "at_n": median(stops[:k])},
        "rm_ms": {"at_5": median(rms[-k:]), "at_n": median(rms[:k])},
        "ls_ms": median(ls_ms), "stats_ms": round(stats_ms, 1),
        "errors": len(errors), "error_samples": errors[:5], "left": left[:10],
    }


def table(results):
    rows = [("", *[r["engine"] for r in results])]

    def row(label, f):
        rows.append((label, *[f(r) for r in results]))

    row("instances", lambda r: str(r["instances"]))
    row("host memory per idle instance (MemAvailable)",
        lambda r: f"{r['mem_per_instance_mib']:.2f} MiB")
    row("  of which the kernel's (slab, percpu, stacks, page tables)",
        lambda r: f"{r['kernel_mib_per_instance']:.2f} MiB")
    row("  instances' memory cgroups + that PSS, per instance",
        lambda r: f"{r['accounted_mib_per_instance']:.2f} MiB")
    row("PSS of what it left running, per instance",
        lambda r: f"{r['monitor_pss_kib_per_instance']:.0f} KiB "
                  f"({r['monitor_pss_anon_kib_per_instance']:.0f} anon)")
    for op in ("run", "stop", "rm"):
        row(f"{op} at 5 -> at N (ms, medians)",
            lambda r, op=op: f"{r[op + '_ms']['at_5']:.0f} -> {r[op + '_ms']['at_n']:.0f}")
    row("ls at N (ms)", lambda r: f"{r['ls_ms']:.0f}")
    row("stats --no-stream at N (ms)", lambda r: f"{r['stats_ms']:.0f}")
    row("errors / left", lambda r: f"{r['errors']} / {len(r['left'])}")
    widths = [max(len(x[i]) for x in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in rows]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--engines", default="ctr,podman",
                    help="comma-separated: ctr, ctr-python, podman")
    ap.add_argument("--format", choices=["table", "json"], default="table")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("density.py: run as root")
    reexec_in_private_netns()
    engines = args.engines.split(",")
    results = []
    work = tempfile.mkdtemp(prefix="ctr-density-")
    os.chmod(work, 0o711)
    try:
        for name in engines:
            if name == "podman":
                ref = Ctr(work, "ref")  # the same busybox rootfs ctr builds
                rootfs = os.path.join(ref.root, "images", "busybox", "rootfs")
                engine = Podman(work, rootfs)
                shutil.rmtree(ref.root, ignore_errors=True)
            elif name in ("ctr", "ctr-python"):
                engine = Ctr(work, name, "python" if name == "ctr-python" else None)
            else:
                sys.exit(f"density.py: unknown engine {name!r}")
            try:
                results.append(measure(engine, args.instances))
            finally:
                engine.cleanup()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for h in os.listdir("/sys/fs/cgroup"):
            for parent in (CGROUP_PARENT, PODMAN_CGROUP_PARENT):
                remove_tree(os.path.join("/sys/fs/cgroup", h, parent))
    if args.format == "json":
        print(json.dumps(results, indent=2))
    else:
        print(table(results))
        for r in results:
            for e in r["error_samples"] + r["left"]:
                print(f"{r['engine']}: {e}")


if __name__ == "__main__":
    main()
