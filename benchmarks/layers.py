#!/usr/bin/env python3
"""Unpack speed of one layer: ctr.images.layers.unpack vs GNU `tar -x` of the same archive.

The layer is a tar (and its gzip) of real files, by default /usr/lib/python3 and
/usr/lib/python3.11 (~100 MB, ~10k members: a typical layer's mix of sizes). Each
tool unpacks it into a fresh directory on the same filesystem, alternating, with
the archive in the page cache; times are medians of --runs. ctr runs in a fresh
interpreter (the time inside unpack(), and its peak RSS); tar is

    tar --xattrs --xattrs-include='*' --numeric-owner -xpf LAYER -C DEST   (-z for gzip)

which, like ctr, keeps owners, modes and xattrs (GNU tar's -z runs gzip in a second
process, so it decompresses in parallel; ctr decompresses in-process). As root:

    python3 benchmarks/layers.py [--runs 5] [--dir /var/tmp] [--from /usr/lib/python3 ...]

No assertion on time: figures only. Prints one line per case: wall time and CPU
(user+sys; on a shared host the wall time swings with others' I/O, the CPU less),
and the ratio ctr/tar of the wall times.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

UNPACK = """
import resource, sys, time
from ctr.images.layers import unpack
t = time.perf_counter()
unpack(sys.argv[1], sys.argv[2])
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def cpu_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ctr_unpack(python, layer, dest):
    """(seconds inside unpack(), CPU seconds of the process, peak RSS in MiB)"""
    cpu = cpu_of_children()
    out = subprocess.run([python, "-c", UNPACK, layer, dest], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.split()
    return float(out[0]), cpu_of_children() - cpu, int(out[1]) >> 10


def tar_unpack(layer, dest):
    """(seconds, CPU seconds of tar and its gzip)"""
    os.mkdir(dest)
    z = ["-z"] if layer.endswith(".gz") else []
    cpu, t = cpu_of_children(), time.perf_counter()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xp", *z,
                    "-f", layer, "-C", dest], check=True)
    return time.perf_counter() - t, cpu_of_children() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default="/var/tmp", help="where the layers are unpacked")
    parser.add_argument("--from", dest="sources", nargs="+",
                        default=["/usr/lib/python3", "/usr/lib/python3.11"])
    parser.add_argument("--python", default=sys.executable,
                        help="an interpreter that imports ctr (default: this one)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="ctr-bench-layers-", dir=args.dir)
    try:
        layer = os.path.join(work, "layer.tar")
        subprocess.run(["tar", "--xattrs", "-cf", layer, "-C", "/",
                        *(os.path.relpath(s, "/") for s in args.sources)], check=True)
        subprocess.run(["gzip", "-k", "-6", layer], check=True)
        members = subprocess.run(["tar", "-tf", layer], check=True, stdout=subprocess.PIPE,
                                 text=True).stdout.count("\n")
        print(f"layer: {os.path.getsize(layer) / 1e6:.0f} MB tar, "
              f"{os.path.getsize(layer + '.gz') / 1e6:.0f} MB gzip, {members} members, "
              f"{args.runs} runs, medians")
        for path in (layer, layer + ".gz"):
            ctr, tar, rss = [], [], []
            for i in range(args.runs):
                dest = os.path.join(work, f"out-{i}")
                *times, peak = ctr_unpack(args.python, path, dest + "-ctr")
                ctr.append(times)
                rss.append(peak)
                tar.append(tar_unpack(path, dest + "-tar"))
                shutil.rmtree(dest + "-ctr")
                shutil.rmtree(dest + "-tar")
            c, ccpu = (statistics.median(r[k] for r in ctr) for k in (0, 1))
            t, tcpu = (statistics.median(r[k] for r in tar) for k in (0, 1))
            kind = "gzip" if path.endswith(".gz") else "tar "
            print(f"{kind}  ctr {c:5.2f} s (CPU {ccpu:5.2f} s, peak RSS {max(rss)} MiB)   "
                  f"tar -x {t:5.2f} s (CPU {tcpu:5.2f} s)   ratio ctr/tar {c / t:.2f}")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
