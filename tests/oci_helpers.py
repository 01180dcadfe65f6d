"""Helpers of the ctr-oci tests: the binary (by absolute path, as podman and
containerd call it), a busybox root filesystem, bundles, and what a container
may leave behind."""

import json
import os
import shutil
import subprocess

from helpers import CTR

OCI = os.environ.get("CTR_OCI_BIN") or (
    os.path.join(os.path.dirname(CTR), "ctr-oci") if os.path.isabs(CTR)
    else "/opt/ctr/venv/bin/ctr-oci")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
# The cgroup parent of this session's bundles: apart from any other session's.
CGROUP_PARENT = f"/ctr-oci-test-{os.getpid()}"
CGROUP_ROOT = "/sys/fs/cgroup"


def make_rootfs(path):
    """A busybox root: the static binary and a link per applet."""
    os.makedirs(os.path.join(path, "bin"), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in applets:
        link = os.path.join(path, "bin", name)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    for d in ("proc", "sys", "dev", "etc", "tmp"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    return path


def oci(*args, root=None, timeout=60, check=False, **kw):
    """Run ctr-oci (with --root ROOT when given). Its output goes through files,
    not pipes: a created container holds create's stdio for as long as it
    lives, and a pipe would never reach EOF."""
    import tempfile

    argv = [OCI, *(("--root", root) if root else ()), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        kw.setdefault("stdout", out)
        kw.setdefault("stderr", err)
        r = subprocess.run(argv, timeout=timeout, text=True, **kw)
        out.seek(0)
        err.seek(0)
        r.stdout = out.read() if kw["stdout"] is out else None
        r.stderr = err.read() if kw["stderr"] is err else None
    if check and r.returncode != 0:
        raise AssertionError(f"ctr-oci {' '.join(args)} -> {r.returncode}: {r.stderr}")
    return r


def make_bundle(path, rootfs, args, cid, **changes):
    """A bundle at `path` whose config is `ctr-oci spec`'s, with `args`, no
    terminal, its rootfs, a cgroup under this session's parent, then `changes`
    (a function of the config, or top-level keys)."""
    os.makedirs(path, exist_ok=True)
    oci("spec", "--bundle", path, check=True)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["root"] = {"path": os.path.abspath(rootfs), "readonly": False}
    config["process"]["args"] = list(args)
    config["process"]["terminal"] = False
    config["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/{cid}"
    edit = changes.pop("edit", None)
    config.update(changes)
    if edit:
        edit(config)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def cgroup_dirs(name):
    """Folders named `name` directly under each hierarchy's root."""
    return [os.path.join(CGROUP_ROOT, h, name.strip("/")) for h in os.listdir(CGROUP_ROOT)
            if os.path.isdir(os.path.join(CGROUP_ROOT, h, name.strip("/")))]


def remove_cgroup_tree(name):
    """rmdir, deepest first, of what lies under /NAME in each hierarchy (empty
    folders only: a cgroup with a process in it stays, and the test fails)."""
    for top in cgroup_dirs(name):
        for dirpath, dirnames, _ in os.walk(top, topdown=False):
            for d in dirnames:
                try:
                    os.rmdir(os.path.join(dirpath, d))
                except OSError:
                    pass
        try:
            os.rmdir(top)
        except OSError:
            pass


def mounts_of(path):
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path in line]
