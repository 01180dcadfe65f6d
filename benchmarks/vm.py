#!/usr/bin/env python3
"""VM boot-to-command time: `ctr run --rm --vm busybox /bin/true`, side by side.

In one run, alternating:
  floor      plain qemu-system-x86_64, the same kernel and machine flags, a trivial
             initramfs whose init powers off at once (no modules, no shared root)
  by-hand    what ctr does, done by a shell script: the instance's overlay mounted
             in a private mount namespace, then QEMU with the very command line,
             initramfs and 9p root ctr used (read from the instance's vm/qemu.argv),
             running /bin/true
  ctr        ctr run --rm --vm --network none busybox /bin/true
  container  ctr run --rm --network none busybox /bin/true (the other kind)

Reports medians, p90, the peak RSS of each run's processes (QEMU's, for VMs) and
the ratios ctr/by-hand (what ctr's orchestration costs) and by-hand/floor (what
the guest path costs: modules, 9p mount, status channel). The accelerator is
the one ctr picks: TCG here, KVM where the host has vmx/svm. Run as root:

    make bench                        # or: python3 benchmarks/vm.py --runs 10
    python3 benchmarks/vm.py --format json
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
BY_HAND = """#!/bin/sh
# ctr's VM start, by hand: overlay in a private mount namespace, then QEMU.
set -e
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$ROOTFS"
cd "$RUN"
rm -f status
exec "$@"
"""


def progress(msg, end="\n"):
    if sys.stderr.isatty():
        print(f"\r\033[K{msg}", end=end, file=sys.stderr, flush=True)


def measured(cmd, env=None, cwd=None):
    """(seconds, peak RSS in MiB of the process and its descendants)."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            if cwd:
                os.chdir(cwd)
            os.execvpe(cmd[0], cmd, env or os.environ)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    dt = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed ({status}): {' '.join(cmd)}")
    return dt, usage.ru_maxrss / 1024


def bare_initramfs(path):
    from ctr.vm.initramfs import Cpio

    with open(path, "wb") as f:
        c = Cpio(f)
        for d in ("bin", "dev", "proc"):
            c.dir(d)
        c.chardev("dev/console", 5, 1)
        c.copy("bin/busybox", "/bin/busybox", 0o755)
        c.file("init", b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n", 0o755)
        c.close()


def summarize(samples):
    times = sorted(t for t, _ in samples)
    return {"runs": len(times), "median_ms": round(statistics.median(times) * 1000, 1),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))] * 1000, 1),
            "min_ms": round(times[0] * 1000, 1),
            "peak_rss_mib": round(max(r for _, r in samples), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--format", choices=["table", "json"], default="table")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/vm.py: run as root")
    from ctr.store import Store
    from ctr.vm import kernel, launch

    work = tempfile.mkdtemp(prefix="ctr-bench-vm-")
    root = os.path.join(work, "state")
    env = dict(os.environ, CTR_ROOT=root)
    try:
        subprocess.run([CTR, "image", "build", "busybox"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        shared = kernel.cached(Store(os.environ.get("CTR_ROOT") or "/var/lib/ctr"))
        if shared is None:
            raise SystemExit("no guest kernel: run `ctr kernel fetch` (make install does)")
        os.symlink(os.path.dirname(os.path.dirname(shared.path)), os.path.join(root, "kernels"))
        accel, _ = launch.choose_accel()
        # The instance whose command line, initrd and root the by-hand script reuses.
        subprocess.run([CTR, "create", "--vm", "--network", "none", "--name", "hand", "busybox",
                        "/bin/true"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([CTR, "start", "-a", "hand"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        info = json.loads(subprocess.run([CTR, "inspect", "hand"], env=env, check=True,
                                         capture_output=True).stdout)
        run_dir = os.path.join(info["paths"]["record"], "vm")
        with open(os.path.join(run_dir, "qemu.argv")) as f:
            qemu_argv = json.load(f)
        paths = info["paths"]
        hand_env = dict(os.environ, LOWER=paths["image"], UPPER=paths["upper"],
                        WORK=paths["work"], ROOTFS=paths["rootfs"], RUN=run_dir)
        script = os.path.join(work, "by-hand.sh")
        with open(script, "w") as f:
            f.write(BY_HAND)
        bare = os.path.join(work, "bare.cpio")
        bare_initramfs(bare)
        floor_argv = [launch.qemu_binary(), "-M", "microvm,pit=off,pic=off,isa-serial=on",
                      "-accel", accel, "-m", "256M", "-smp", "1", "-nodefaults",
                      "-no-user-config", "-display", "none", "-no-reboot",
                      "-kernel", shared.path, "-initrd", bare,
                      "-append", launch.cmdline(kernel.host_tsc_khz()), "-serial", "null"]
        kinds = {
            "floor": (floor_argv, None),
            "by-hand": (["unshare", "--mount", "--propagation", "private", "sh", script,
                         *qemu_argv], hand_env),
            "ctr": ([CTR, "run", "--rm", "--vm", "--network", "none", "busybox", "/bin/true"],
                    env),
            "container": ([CTR, "run", "--rm", "--network", "none", "busybox", "/bin/true"],
                          env),
        }
        samples = {k: [] for k in kinds}
        total = (args.warmup + args.runs) * len(kinds)
        done = 0
        for i in range(args.warmup + args.runs):
            for name, (cmd, cmd_env) in kinds.items():
                done += 1
                progress(f"[{done}/{total}] {name}", end="")
                result = measured(cmd, cmd_env)
                if name == "by-hand":
                    status = launch.read_status(os.path.join(run_dir, "status"))
                    if status.get("exit") != 0:
                        raise SystemExit(f"the by-hand VM did not report exit 0: {status}")
                if i >= args.warmup:
                    samples[name].append(result)
        progress("", end="")
        subprocess.run([CTR, "rm", "-f", "hand"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    stats = {k: summarize(v) for k, v in samples.items()}
    med = {k: v["median_ms"] for k, v in stats.items()}
    ratios = {"ctr/by-hand": round(med["ctr"] / med["by-hand"], 2),
              "by-hand/floor": round(med["by-hand"] / med["floor"], 2),
              "ctr/container": round(med["ctr"] / med["container"], 1)}
    if args.format == "json":
        print(json.dumps({"accel": accel, "kernel": shared.version, "results": stats,
                          "ratios": ratios}, indent=2))
        return
    print(f"VM boot to /bin/true, accel={accel}, kernel {shared.version}, "
          f"{args.runs} runs each, alternating")
    print(f"{'kind':<10} {'median':>9} {'p90':>9} {'min':>9} {'peak RSS':>9}")
    for k, v in stats.items():
        print(f"{k:<10} {v['median_ms']:>7.0f}ms {v['p90_ms']:>7.0f}ms {v['min_ms']:>7.0f}ms "
              f"{v['peak_rss_mib']:>6.0f}MiB")
    print("  ".join(f"{k} = {v}x" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
