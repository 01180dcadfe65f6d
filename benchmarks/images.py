#!/usr/bin/env python3
"""Pull and unpack a multi-layer image from a local registry: ctr vs podman vs
skopeo copy + umoci unpack, in one run; the first run of it, ctr vs podman; save
and load of it as archives, ctr vs podman.

The image is the debian image's rootfs (ctr image build debian; ~145 MB) cut
into four gzip layers (usr/lib, usr/share, the rest of usr, everything else),
pushed with skopeo to the distribution's docker-registry on 127.0.0.1 inside a
network namespace of the benchmark's own. Each tool pulls it into a fresh,
private store, alternating, --runs times; medians. Then the disk both tools use
for it and a second image on the same four layers (plus 1 MB of its own). As root:

    python3 benchmarks/images.py [--runs 3] [--dir /var/tmp] [--ctr /opt/ctr/venv/bin/ctr]

    ctr     ctr --root R pull --tls-verify=false REF
    podman  podman --root R --runroot R2 pull --tls-verify=false REF
    umoci   skopeo copy --src-tls-verify=false docker://REF oci:D:img
            && umoci unpack --image D:img BUNDLE

After each pull, the first run of the image in that fresh store (its overlay
mounted for the first time; no network namespace, the command `true`):

    ctr     ctr --root R run --rm --network none REF true
    podman  podman --root R ... --runtime runc --cgroup-manager cgroupfs
            run --rm --network none REF true   (crun refuses this hybrid host)

Then, from one store of each holding the image, --runs times each, medians:

    save    ctr image save [--format oci-archive] -o F REF
            podman save [--format oci-archive] -o F REF
    load    the docker archive podman saved, into a fresh store:
            ctr load -i F   vs   podman load -i F
With `--userns`, instead: the first `--userns=auto` run of that image by ctr,
with idmapped layers (CTR_USERNS_IDMAP=on) and with a shifted copy of each
layer (CTR_USERNS_IDMAP=off), and by podman (which idmaps its layers too),
alternating, each in one store that pulled it once (the first idmapped run of
ctr also probes the host and marks the layers' opaque dirs, once per store;
the first copy run makes the copies of its block, which the next runs on that
block reuse: both shown apart); then the disk one created instance adds
(du -sk), and the shared copies of one block. podman takes
its ids from /etc/subuid's `containers` user: the benchmark binds a file of its
own over /etc/subuid and /etc/subgid in its private mount namespace.

    python3 benchmarks/images.py --userns [--runs 5]

    ctr --root R run --rm --userns=auto --network none REF true
    podman --root R --runtime runc run --rm --userns=auto --network none REF true

No assertion on time: figures only, with the ratios to ctr.
"""

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_layout(rootfs, work):
    """An OCI layout of `rootfs` in four layers."""
    import json

    from ocilayout import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, write_layout

    layout = os.path.join(work, "layout")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    top = sorted(os.listdir(rootfs))
    usr = sorted(os.listdir(os.path.join(rootfs, "usr")))
    parts = [[t for t in top if t != "usr"], ["usr/lib"], ["usr/share"],
             [f"usr/{u}" for u in usr if u not in ("lib", "share")]]
    descs, diff_ids = [], []
    for i, paths in enumerate(parts):
        tar = os.path.join(work, f"l{i}.tar")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf", tar,
                        "-C", rootfs, *paths], check=True)
        diff_ids.append(sha256_file(tar))
        subprocess.run(["gzip", "-6", "-f", tar], check=True)
        digest = sha256_file(tar + ".gz")
        size = os.path.getsize(tar + ".gz")
        shutil.move(tar + ".gz", os.path.join(blobs, digest[7:]))
        descs.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest[7:]), "wb") as f:
            f.write(data)
        return {"digest": digest, "size": len(data)}

    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["bash"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = blob(json.dumps(config).encode()) | {"mediaType": OCI_CONFIG}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
                "layers": descs}
    mdesc = blob(json.dumps(manifest).encode()) | {"mediaType": OCI_MANIFEST}
    write_layout(layout, [mdesc])
    # a second image on the same four layers plus one of its own
    extra = os.path.join(work, "extra.tar")
    os.makedirs(os.path.join(work, "extra", "srv"))
    with open(os.path.join(work, "extra", "srv", "app"), "wb") as f:
        f.write(os.urandom(1 << 20))
    subprocess.run(["tar", "-cf", extra, "-C", os.path.join(work, "extra"), "srv"], check=True)
    config2 = dict(config, rootfs={"type": "layers",
                                   "diff_ids": [*diff_ids, sha256_file(extra)]})
    with open(extra, "rb") as f:
        edesc = blob(f.read()) | {"mediaType": "application/vnd.oci.image.layer.v1.tar"}
    c2 = blob(json.dumps(config2).encode()) | {"mediaType": OCI_CONFIG}
    m2 = blob(json.dumps(dict(manifest, config=c2, layers=[*descs, edesc])).encode()) | {
        "mediaType": OCI_MANIFEST}
    second = os.path.join(work, "layout2")
    shutil.copytree(layout, second)
    write_layout(second, [m2])
    return layout, second, sum(d["size"] for d in descs)


ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")


def podman(d):
    """podman with a store of its own at `d`; runc, as crun refuses a hybrid host."""
    return ["podman", "--root", d, "--runroot", d + "-run", "--tmpdir", d + "-tmp",
            "--storage-driver", "overlay", "--runtime", shutil.which("runc") or "runc",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def ratios(title, times):
    base = statistics.median(times["ctr"])
    print(f"{title}:")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:12} {med:6.2f} s   ({med / base:.2f}x ctr)   runs: "
              + " ".join(f"{t:.2f}" for t in ts))


def measure_archives(args, work, ref, tools):
    """save (both formats) and load, ctr vs podman, each from a store of its own."""
    # podman refuses a runroot longer than 50 characters: short names
    stores = {name: os.path.join(work, f"{name[:2]}-a") for name in ("ctr", "podman")}
    for name, d in stores.items():
        timed(tools[name](d))
    ctr = [args.ctr, "--root", stores["ctr"]]
    out = {}
    for fmt in ("docker-archive", "oci-archive"):
        got = out[f"save --format {fmt} (ctr image save vs podman save)"] = {
            "ctr": [], "podman": []}
        for run in range(args.runs):
            for name, argv in (("ctr", [*ctr, "image", "save"]),
                               ("podman", [*podman(stores["podman"]), "save", "-q"])):
                f = os.path.join(work, f"{name}-{fmt}-{run}.tar")
                got[name].append(timed([*argv, "--format", fmt, "-o", f, ref]))
                if run or fmt == "oci-archive" or name == "ctr":
                    os.unlink(f)
    saved = os.path.join(work, "podman-docker-archive-0.tar")
    got = out["load -i of podman's docker archive into a fresh store"] = {
        "ctr": [], "podman": []}
    for run in range(args.runs):
        for name in ("ctr", "podman"):
            d = os.path.join(work, f"{name[:2]}-l{run}")
            argv = [args.ctr, "--root", d, "load", "-q", "-i", saved] if name == "ctr" \
                else [*podman(d), "load", "-q", "-i", saved]
            got[name].append(timed(argv))
            for x in (d, d + "-run", d + "-tmp"):
                subprocess.run(["rm", "-rf", x], check=True)
    for d in stores.values():
        subprocess.run(["rm", "-rf", d, d + "-run", d + "-tmp"], check=True)
    return out


def timed(argv, env=None):
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if r.returncode:
        sys.exit(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode()[-2000:]}")
    return time.perf_counter() - t


def userns_runs(args, ref, work):
    """--userns=auto's first run: idmapped layers vs shifted copies."""
    root = os.path.join(work, "userns-root")
    os.chmod(work, 0o711)  # the container's root walks to its instance folder
    subid = os.path.join(work, "subid")
    with open(subid, "w") as f:
        f.write("ctr:1500000000:1000000\n")
    env = dict(os.environ, CTR_ROOT=root, CTR_SUBUID=subid, CTR_SUBGID=subid)
    subprocess.run([args.ctr, "pull", "--tls-verify=false", ref], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(work, "podman-subid"), "w") as f:
        f.write("containers:1700000000:1000000\n")
    for path in ("/etc/subuid", "/etc/subgid"):  # podman's, in our mount namespace only
        subprocess.run(["mount", "--bind", os.path.join(work, "podman-subid"), path],
                       check=True)
    proot = os.path.join(work, "podman-root")
    podman = ["podman", "--root", proot, "--runroot", proot + "-run", "--storage-driver",
              "overlay", "--runtime", "runc"]
    subprocess.run([*podman, "pull", "--quiet", "--tls-verify=false", ref], check=True,
                   stdout=subprocess.DEVNULL)
    opts = ["--userns=auto", "--network", "none", "--ulimit", "nofile=20000:20000",
            "--ulimit", "nproc=32768:32768", ref, "true"]
    run = [args.ctr, "run", "--rm", "--userns=auto", "--network", "none", ref, "true"]
    modes = {"idmap": "on", "copy": "off"}
    first = timed(run, dict(env, CTR_USERNS_IDMAP="on"))
    first_copy = timed(run, dict(env, CTR_USERNS_IDMAP="off"))  # makes the block's copies
    times = {name: [] for name in (*modes, "podman")}
    for _ in range(args.runs):
        for name, value in modes.items():
            times[name].append(timed(run, dict(env, CTR_USERNS_IDMAP=value)))
        times["podman"].append(timed([*podman, "run", "--rm", *opts]))

    def du(path):
        return int(subprocess.run(["du", "-sk", path], check=True, capture_output=True,
                                  text=True).stdout.split()[0]) * 1024

    disk = {}
    for name, value in modes.items():
        subprocess.run([args.ctr, "create", "--name", name, "--userns=auto", "--network",
                        "none", ref, "true"], check=True, stdout=subprocess.DEVNULL,
                       env=dict(env, CTR_USERNS_IDMAP=value))
        disk[name] = du(os.path.join(root, "instances", name))
        subprocess.run([args.ctr, "rm", name], check=True, env=env, stdout=subprocess.DEVNULL)
    shifted = os.path.join(root, "layers", "shifted")  # kept by rm for the block's next
    disk["copies, shared"] = du(shifted) if os.path.isdir(shifted) else 0
    before = du(proot)
    subprocess.run([*podman, "create", "--name", "p", *opts], check=True,
                   stdout=subprocess.DEVNULL)
    disk["podman"] = du(proot) - before
    subprocess.run([*podman, "rm", "p"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*podman, "rmi", "-a", "-f"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    base = statistics.median(times["idmap"])
    print(f"--userns=auto, first run of {args.rootfs} in 4 layers (run --rm ... true); "
          f"{args.runs} runs, medians")
    print(f"{'idmap':14} first in this store (probe + marking): {first:.2f} s")
    print(f"{'copy':14} first of its block (makes the shifted copies): {first_copy:.2f} s")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:14} {med:6.2f} s   ({med / base:.2f}x idmap)   runs: "
              + " ".join(f"{t:.2f}" for t in ts))
    print("disk one created instance adds, du -sk:")
    for name, used in disk.items():
        print(f"{name:14} {used / 1e6:8.2f} MB")


def main():
    if os.environ.get("CTR_BENCH_NETNS") != "1":  # network and mount namespaces of our own
        os.execvp("unshare", ["unshare", "--net", "--mount", "--propagation", "private", "--",
                              "sh", "-c",
                              'ip link set lo up && CTR_BENCH_NETNS=1 exec "$0" "$@"',
                              sys.executable, *sys.argv])
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--ctr", default=shutil.which("ctr") or "/opt/ctr/venv/bin/ctr")
    ap.add_argument("--rootfs", default="/var/lib/ctr/images/debian/rootfs")
    ap.add_argument("--userns", action="store_true",
                    help="--userns=auto's first run: idmapped layers vs shifted copies")
    args = ap.parse_args()
    from oci_helpers import remove_cgroup_tree
    from ocilayout import Registry, push

    had_libpod_parent = os.path.isdir("/sys/fs/cgroup/memory/libpod_parent")

    work = tempfile.mkdtemp(prefix="ctr-bench-images-", dir=args.dir)
    registry = None
    try:
        layout, second, compressed = build_layout(args.rootfs, work)
        registry = Registry(os.path.join(work, "registry"))
        ref = f"{registry.addr}/bench/debian:4layers"
        ref2 = f"{registry.addr}/bench/debian:5layers"
        push(layout, ref)
        if args.userns:
            userns_runs(args, ref, work)
            return
        push(second, ref2)
        tools = {
            "ctr": lambda d: [args.ctr, "--root", d, "pull", "--tls-verify=false", ref],
            "podman": lambda d: [*podman(d), "pull", "--quiet", "--tls-verify=false", ref],
            "skopeo+umoci": lambda d: ["sh", "-c",
                                       f"skopeo copy -q --src-tls-verify=false docker://{ref}"
                                       f" oci:{d}-oci:img && umoci unpack --image {d}-oci:img"
                                       f" {d}"],
        }
        runs = {
            "ctr": lambda d: [args.ctr, "--root", d, "run", "--rm", "--network", "none",
                              ref, "true"],
            "podman": lambda d: [*podman(d), "run", "--rm", "--network", "none", *ULIMITS,
                                 ref, "true"],
        }
        times = {name: [] for name in tools}
        first_run = {name: [] for name in runs}
        for run in range(args.runs):
            for name, argv in tools.items():
                dest = os.path.join(work, f"{name}-{run}")
                times[name].append(timed(argv(dest)))
                if name in runs:
                    first_run[name].append(timed(runs[name](dest)))
                for d in (dest, dest + "-run", dest + "-oci", dest + "-tmp"):
                    if os.path.exists(d):
                        subprocess.run(["rm", "-rf", d], check=True)
        archives = measure_archives(args, work, ref, tools)
        disk = {}
        for name in ("ctr", "podman"):
            dest = os.path.join(work, f"{name}-disk")
            for r in (ref, ref2):
                subprocess.run(tools[name](dest)[:-1] + [r], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            du = subprocess.run(["du", "-sk", dest], check=True, capture_output=True,
                                text=True).stdout.split()[0]
            disk[name] = int(du) * 1024
            subprocess.run(["rm", "-rf", dest, dest + "-run", dest + "-tmp"], check=True)
        base = statistics.median(times["ctr"])
        print(f"image: {args.rootfs} in 4 gzip layers, {compressed / 1e6:.0f} MB compressed; "
              f"{args.runs} runs, medians")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:14} {med:6.2f} s   ({med / base:.2f}x ctr)   runs: "
                  + " ".join(f"{t:.2f}" for t in ts))
        ratios("first run after the pull (run --rm --network none REF true)", first_run)
        for what, got in archives.items():
            ratios(what, got)
        print("disk used by both images (4 shared layers + 1 MB of its own), du -sk:")
        for name, used in disk.items():
            note = " (layers + the compressed blobs kept in blobs/)" if name == "ctr" else ""
            print(f"{name:14} {used / 1e6:6.0f} MB{note}")
    finally:
        if registry:
            registry.stop()
        subprocess.run(["rm", "-rf", work])
        if not had_libpod_parent:
            remove_cgroup_tree("libpod_parent")  # conmon's, made by podman run


if __name__ == "__main__":
    main()
