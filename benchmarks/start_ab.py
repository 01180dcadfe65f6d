#!/usr/bin/env python3
"""A/B of ctr's start path: two installs of ctr, alternating run by run, so both
see the same load. For a change that must not make the start slower:

    # at the old commit:
    python3 -m venv /opt/ctr/venv-base && /opt/ctr/venv-base/bin/pip install .
    python3 benchmarks/start_ab.py /opt/ctr/venv-base/bin/ctr /opt/ctr/venv/bin/ctr --runs 40

Times `ctr run --rm --network none busybox /bin/true` (wall, and CPU of the
whole process tree ctr reaps) and prints medians and the ratio B/A. Each side
has a state root of its own under a temporary folder, removed at the end.
Run as root; never a pass/fail threshold.
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


def progress(msg):
    if sys.stderr.isatty():
        print(f"\r\033[K{msg}", end="", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="ctr executable A (before)")
    ap.add_argument("b", help="ctr executable B (after)")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--format", choices=("table", "json"), default="table")
    args = ap.parse_args()
    sides = {"A": args.a, "B": args.b}
    tmp = tempfile.mkdtemp(prefix="ctr-ab-")
    wall = {k: [] for k in sides}
    cpu = {k: [] for k in sides}
    try:
        for k, ctr in sides.items():
            subprocess.run([ctr, "--root", os.path.join(tmp, k), "image", "build", "busybox"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(args.runs):
            order = list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]
            for k, ctr in order:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                subprocess.run([ctr, "--root", os.path.join(tmp, k), "run", "--rm", "--network",
                                "none", "busybox", "/bin/true"], check=True)
                wall[k].append((time.perf_counter() - t) * 1000)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[k].append((after.ru_utime - before.ru_utime + after.ru_stime
                               - before.ru_stime) * 1000)
            progress(f"run {i + 1}/{args.runs}")
        progress("")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {k: {"wall_ms": statistics.median(wall[k]), "cpu_ms": statistics.median(cpu[k])}
              for k in sides}
    result["ratio_b_a"] = {m: result["B"][m] / result["A"][m] for m in ("wall_ms", "cpu_ms")}
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return
    for k in sides:
        print(f"{k} {sides[k]}: wall {result[k]['wall_ms']:.1f} ms, "
              f"cpu {result[k]['cpu_ms']:.1f} ms (medians of {args.runs})")
    ratio = result["ratio_b_a"]
    print(f"B/A: wall {ratio['wall_ms']:.3f}x, cpu {ratio['cpu_ms']:.3f}x")


if __name__ == "__main__":
    main()
