"""make test-cgroup2: the container integration tests in a cgroup2-only Linux.

The build hosts are hybrid (v1 controllers), and their v1 hierarchies must stay
mounted, so ctr's v2 backend is proven in a guest: ctr's own VM kind boots the
distribution's kernel (the one `ctr kernel fetch` cached) with cgroup_no_v1=all,
and the guest runs pytest on the tests listed in tests/cgroup2/tests.txt.

    1. the guest image (tests/cgroup2/recipes/cgroup2-guest: Debian 12 by
       debootstrap from the host's mirror, with the kernel's modules), built once
       into a state root of its own (/var/lib/ctr-cgroup2, CG2_ROOT overrides)
       and rebuilt when its recipe or the kernel changes. This is the only step
       that needs the network: run it outside the test suite's netns.
    2. the run's disk, an ext4 image (mkfs.ext4 -d): the guest image's files,
       the Python packages ctr and pytest need, copied from this venv (the one
       this script runs in, where `make` installed the checkout), the checkout's
       tests at /ctr-test, and the host's debian image (make test-images) for
       the system-container tests.
    3. `ctr run --vm --network none --kernel-arg cgroup_no_v1=all --disk DISK`:
       the guest makes the disk its root, mounts cgroup2 alone at /sys/fs/cgroup
       and runs pytest (tests/cgroup2/guest.sh). The guest is another kernel: it
       never touches the host's cgroups; on the host, QEMU is one instance under
       ctr's own cgroup parent.

    run.py [--build-only] [PYTEST ARGS...]   (args replace the list in tests.txt)

Exits with pytest's status in the guest (0 when every test passed).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RECIPES = os.path.join(HERE, "recipes")
RECIPE = os.path.join(RECIPES, "cgroup2-guest", "build.sh")
IMAGE = "cgroup2-guest"
ROOT = os.environ.get("CG2_ROOT", "/var/lib/ctr-cgroup2")
# Where `make install` fetched the kernel and `make dev` built the debian image.
DEFAULT_ROOT = "/var/lib/ctr"
CTR = os.path.join(sys.prefix, "bin", "ctr")
GUEST_VENV = "/opt/ctr/venv"
GUEST_PYTHON = (3, 11)  # Debian 12's python3: the C extensions copied in are built for it
MEMORY = os.environ.get("CG2_MEMORY", "3g")
CPUS = os.environ.get("CG2_CPUS", "2")
# No v1 controller and no named v1 hierarchy: cgroup2 is all the guest can mount.
KERNEL_ARGS = ("cgroup_no_v1=all,named",)
DISK_SPARE = 3 << 30  # room for the tests' state roots, overlays and images


def say(msg):
    print(f"cgroup2: {msg}", flush=True)


def ctr(*args, **kw):
    return subprocess.run([CTR, "--root", ROOT, *args], check=True, **kw)


def kernel_version():
    """The guest kernel: the one `make install` fetched, else one fetched now."""
    kernels = os.path.join(ROOT, "kernels")
    shared = os.path.join(DEFAULT_ROOT, "kernels")
    if not os.path.lexists(kernels):
        os.makedirs(ROOT, exist_ok=True)
        if os.path.isfile(os.path.join(shared, "default", "vmlinux")):
            os.symlink(shared, kernels)
        else:
            ctr("kernel", "fetch")
    return os.path.basename(os.path.realpath(os.path.join(kernels, "default")))


def recipe_key(kver):
    h = hashlib.sha256(kver.encode())
    for path in (RECIPE, os.path.join(REPO, "images", "debian", "build.sh")):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def ensure_image(kver):
    """The guest image, built when missing or made from another recipe/kernel."""
    key = recipe_key(kver)
    stamp = os.path.join(ROOT, "images", IMAGE, "rootfs", "etc", "ctr-cgroup2-guest")
    try:
        with open(stamp) as f:
            if f.read().strip() == key:
                return 0.0
    except FileNotFoundError:
        pass
    t = time.monotonic()
    if os.path.isdir(os.path.join(ROOT, "images", IMAGE)):
        ctr("image", "rm", IMAGE, stdout=subprocess.DEVNULL)
    say(f"building the guest image (debootstrap, kernel {kver} modules; once, ~3 min)")
    env = dict(os.environ, CTR_RECIPES=RECIPES, CG2_KERNEL=kver, CG2_KEY=key)
    ctr("image", "build", IMAGE, env=env)
    return time.monotonic() - t


# -- the run's disk ----------------------------------------------------------------------

def _closure(names):
    """The installed distributions `names` need, themselves included (extras and
    markers not evaluated to True are left out)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = {}, list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = metadata.distribution(name)
        seen[key] = dist
        for req in dist.requires or ():
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    return list(seen.values())


def copy_packages(stage):
    """ctr and pytest with their dependencies, from this venv into the guest's,
    and their console scripts with the guest venv's python."""
    if sys.version_info[:2] != GUEST_PYTHON:
        sys.exit(f"cgroup2: run.py needs a Python {'.'.join(map(str, GUEST_PYTHON))} venv "
                 "(the guest's, Debian 12's): the C extensions are copied in as built")
    site = os.path.join(stage, GUEST_VENV.lstrip("/"), "lib",
                        "python{}.{}".format(*GUEST_PYTHON), "site-packages")
    bindir = os.path.join(stage, GUEST_VENV.lstrip("/"), "bin")
    for dist in _closure(["ctr", "pytest"]):
        base = dist.locate_file("")
        for f in dist.files or ():
            src = os.path.normpath(str(dist.locate_file(f)))
            # Byte code too (the same for 3.11.x): compiling every module again in
            # each `ctr` the tests run would cost seconds apiece under TCG.
            if not src.startswith(str(base)) or not os.path.isfile(src):
                continue  # bin/ scripts: written below
            dst = os.path.join(site, os.path.relpath(src, base))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
        for ep in dist.entry_points:
            if ep.group != "console_scripts":
                continue
            path = os.path.join(bindir, ep.name)
            with open(path, "w") as out:
                out.write(f"#!{GUEST_VENV}/bin/python3\nimport sys\n"
                          f"from {ep.module} import {ep.attr.split('.')[0]}\n"
                          f"sys.exit({ep.attr}())\n")
            os.chmod(path, 0o755)


def copy_tree(src, dst):
    """Hard links where src and dst share a file system, else copies."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if subprocess.run(["cp", "-al", src, dst], stderr=subprocess.DEVNULL).returncode != 0:
        shutil.rmtree(dst, ignore_errors=True)
        subprocess.run(["cp", "-a", src, dst], check=True)


def make_disk(run_dir):
    """The guest's root: an ext4 image of the guest image plus this run's files."""
    stage = os.path.join(run_dir, "stage")
    copy_tree(os.path.join(ROOT, "images", IMAGE, "rootfs"), stage)
    # Hard links share their inode with the image: only new files are written below.
    copy_packages(stage)
    checkout = os.path.join(stage, "ctr-test")
    shutil.copytree(os.path.join(REPO, "tests"), os.path.join(checkout, "tests"),
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copy(os.path.join(REPO, "pyproject.toml"), checkout)
    debian = os.path.join(DEFAULT_ROOT, "images", "debian")
    if os.path.isdir(debian):
        copy_tree(debian, os.path.join(stage, "var", "lib", "ctr", "images", "debian"))
    else:
        say(f"no debian image in {DEFAULT_ROOT} (make test-images): the system-container "
            "tests will skip")
    used = int(subprocess.run(["du", "-sb", stage], check=True, capture_output=True,
                              text=True).stdout.split()[0])
    disk = os.path.join(run_dir, "disk.img")
    size_mb = (used * 12 // 10 + DISK_SPARE) >> 20
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "ctr-test", "-E", "root_owner=0:0",
                    "-d", stage, disk, f"{size_mb}M"], check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(stage)
    return disk


def main(argv):
    build_only = "--build-only" in argv
    pytest_args = [a for a in argv if a != "--build-only"]
    t0 = time.monotonic()
    kver = kernel_version()
    built = ensure_image(kver)
    if build_only:
        return 0
    for old in os.listdir(ROOT):  # what a killed run left (its run.py is gone)
        pid = old.removeprefix("run.")
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(ROOT, old), ignore_errors=True)
    run_dir = os.path.join(ROOT, f"run.{os.getpid()}")
    os.makedirs(run_dir)
    try:
        t = time.monotonic()
        disk = make_disk(run_dir)
        t_disk = time.monotonic() - t
        say(f"disk ready in {t_disk:.1f} s; booting {IMAGE} (kernel {kver}, "
            f"{' '.join(KERNEL_ARGS)}, {MEMORY} RAM, {CPUS} vCPUs)")
        t = time.monotonic()
        rc = subprocess.run([CTR, "--root", ROOT, "run", "--rm", "--vm", "--network", "none",
                             "--name", f"cgroup2-test-{os.getpid()}", "-m", MEMORY,
                             "--cpus", CPUS, *(f"--kernel-arg={a}" for a in KERNEL_ARGS),
                             "--disk", disk, IMAGE, "/usr/local/sbin/ctr-test-guest",
                             "--color=" + ("yes" if sys.stdout.isatty() else "no"),
                             *pytest_args]).returncode
        t_vm = time.monotonic() - t
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    image = f"built in {built:.0f} s" if built else "cached"
    say(f"guest image {image}, disk {t_disk:.1f} s, "
        f"VM (boot + tests) {t_vm:.0f} s, total {time.monotonic() - t0:.0f} s: "
        + ("passed" if rc == 0 else f"FAILED (exit {rc})"))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
