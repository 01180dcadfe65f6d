#!/usr/bin/env python3
"""System containers: boot of systemd as PID 1, and its clean stop.

Per run: `ctr run -d --init debian` until `ctr exec sys systemctl
is-system-running` answers running (or degraded), then `ctr stop` (SIGRTMIN+3:
systemd halts), then rm. Reports medians, min and max, and the image's size.
Needs the debian image in the default state root (`make dev` builds it, or
`ctr image build debian`). Run as root, inside a network namespace of its own:

    unshare --net python3 benchmarks/system.py --runs 5 [--format json]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

CTR = os.environ.get("CTR_BIN") or shutil.which("ctr", path="/opt/ctr/venv/bin") or "ctr"
SHARED = "/var/lib/ctr/images/debian"


def ctr(*args, env):
    return subprocess.run([CTR, *args], env=env, capture_output=True, text=True)


def one_run(env):
    t0 = time.perf_counter()
    r = ctr("run", "-d", "--name", "sys", "--network", "none", "--init", "debian", env=env)
    if r.returncode:
        raise SystemExit(f"benchmarks/system.py: run failed: {r.stderr.strip()}")
    try:
        while True:
            state = ctr("exec", "sys", "systemctl", "is-system-running", env=env).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.perf_counter() - t0 > 60:
                raise SystemExit("benchmarks/system.py: no boot within 60 s")
            time.sleep(0.02)
        boot = time.perf_counter() - t0
        t1 = time.perf_counter()
        ctr("stop", "sys", env=env)
        stop = time.perf_counter() - t1
        code = json.loads(ctr("inspect", "sys", env=env).stdout)["state"]["exit_code"]
    finally:
        ctr("rm", "-f", "sys", env=env)
    return boot, stop, code, state


def summary(values):
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--format", choices=["table", "json"], default="table")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/system.py: run as root")
    if not os.path.isfile(os.path.join(SHARED, "image.json")):
        raise SystemExit("benchmarks/system.py: no debian image: `ctr image build debian`")
    work = tempfile.mkdtemp(prefix="ctr-bench-system-")
    env = dict(os.environ, CTR_ROOT=os.path.join(work, "state"))
    try:
        os.makedirs(os.path.join(work, "state", "images"))
        subprocess.run(["cp", "-al", SHARED, os.path.join(work, "state", "images", "debian")],
                       check=True)
        runs = [one_run(env) for _ in range(args.runs)]
        with open(os.path.join(SHARED, "image.json")) as f:
            size = json.load(f).get("size")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"runs": args.runs, "boot": summary([r[0] for r in runs]),
              "stop": summary([r[1] for r in runs]),
              "exit_codes": sorted({r[2] for r in runs}),
              "states": sorted({r[3] for r in runs}), "image_bytes": size}
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return
    print(f"{'phase':<40} {'median':>8} {'min':>8} {'max':>8}")
    for key, label in (("boot", "run -d --init -> is-system-running"),
                       ("stop", "ctr stop (SIGRTMIN+3, halt)")):
        s = result[key]
        print(f"{label:<40} {s['median_s']:>7.2f}s {s['min_s']:>7.2f}s {s['max_s']:>7.2f}s")
    print(f"exit codes {result['exit_codes']}, states {result['states']}, "
          f"image {size / 1e6:.0f} MB" if size else "")


if __name__ == "__main__":
    main()
