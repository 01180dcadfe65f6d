"""System containers: the debian image (debootstrap), systemd booted as PID 1 with
`ctr run --init`, stopped with its own signal, and the host's cgroups untouched.

The debian image is built by the set-up (`make dev`, ~40 s, from the Debian
mirror the host's apt uses); every test hard-links it into its own state root.
The suite's own network namespace reaches no mirror, and its tests reach none:
the interrupted build is a local recipe that mounts in its target like
debootstrap does.
"""

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest
from helpers import (
    CGROUP2_ONLY,
    CGROUP_ROOT,
    CTR,
    assert_refused,
    mounts_under,
    processes,
    wait_for,
)

BOOT_TIMEOUT = 60  # seconds; it takes ~0.5 s here


SHARED_IMAGE = "/var/lib/ctr/images/debian"  # built by the set-up: make dev (test-images)


@pytest.fixture(scope="session")
def debian_image():
    """The debian image `make dev` built (debootstrap needs the mirror, and the
    suite's network namespace reaches none); each test hard-links it."""
    assert os.path.isfile(os.path.join(SHARED_IMAGE, "image.json")), \
        "no debian image: run `make dev` (it builds one with `ctr image build debian`)"
    return SHARED_IMAGE


@pytest.fixture
def dctr(ctr, debian_image):
    """The `ctr` fixture (its own root, leftover checks) with the debian image too."""
    subprocess.run(["cp", "-al", debian_image, ctr.path("images", "debian")], check=True)
    return ctr


def cgroup_mounts():
    """Every cgroup hierarchy the host mounts (v1, the named systemd one, cgroup2)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fstype = line.partition(" - ")[2].split()[0]
            if fstype in ("cgroup", "cgroup2"):
                out.append(line.split()[4])
    return out


def systemd_cgroups():
    """Folders named the way systemd names its units, anywhere in the host's
    hierarchies: where a misconfigured init would create its slices."""
    found = set()
    for mountpoint in cgroup_mounts():
        for dirpath, dirnames, _ in os.walk(mountpoint):
            found.update(os.path.join(dirpath, d) for d in dirnames
                         if d.endswith((".slice", ".scope", ".service", ".socket", ".mount")))
    return found


def system_state(ctr, name="sys"):
    return ctr("exec", name, "systemctl", "is-system-running").stdout.strip()


def boot(ctr, *args, name="sys"):
    """ctr run -d --init ... and wait until systemd says running or degraded.
    Returns the seconds it took."""
    start = time.monotonic()
    r = ctr("run", "-d", "--name", name, "--network", "none", *args, "debian")
    assert r.returncode == 0, r.stderr
    state = ""
    while time.monotonic() - start < BOOT_TIMEOUT:
        state = system_state(ctr, name)
        if state in ("running", "degraded"):
            return time.monotonic() - start
        time.sleep(0.05)
    failed = ctr("exec", name, "systemctl", "--failed", "--no-legend").stdout
    pytest.fail(f"systemd did not boot in {BOOT_TIMEOUT}s: {state!r}; failed: {failed}")


def test_systemd_boots_as_pid_1_and_stops_cleanly(dctr):
    ctr = dctr
    before = systemd_cgroups()
    host_pid_max = open("/proc/sys/kernel/pid_max").read()
    boot(ctr, "--init")
    booted = time.monotonic()
    failed = ctr("exec", "sys", "systemctl", "--failed", "--no-legend").stdout.strip()
    assert system_state(ctr) == "running", failed  # this image boots with 0 failed units
    # PID 1 is systemd, told it runs in a container
    assert ctr("exec", "sys", "cat", "/proc/1/comm").stdout == "systemd\n"
    environ = ctr("exec", "sys", "cat", "/proc/1/environ").stdout.split("\0")
    assert "container=ctr" in environ
    assert ctr("exec", "sys", "systemd-detect-virt", "--container").stdout.strip() in (
        "container-other", "ctr")
    # /sys/fs/cgroup is the container's own cgroup2 view: systemd's slices appear
    # under the container's folder on the host, and nowhere else
    inside = ctr("exec", "sys", "findmnt", "-n", "-o", "FSTYPE,OPTIONS", "/sys/fs/cgroup")
    assert inside.stdout.split()[0] == "cgroup2" and "rw" in inside.stdout.split()[1]
    assert ctr("exec", "sys", "cat", "/proc/1/cgroup").stdout.splitlines()[-1] == \
        "0::/init.scope"
    state = ctr.state("sys")
    own = state["cgroups"][0] if CGROUP2_ONLY else next(
        p for p in state["cgroups"] if "/unified/" in p)
    with open(os.path.join(own, "init.scope", "cgroup.procs")) as f:
        assert str(state["pid"]) in f.read().split()
    assert os.path.isdir(os.path.join(own, "system.slice", "systemd-journald.service"))
    new = systemd_cgroups() - before
    assert new and all(p.startswith(own + "/") for p in new), sorted(new)
    # /proc/sys is read-only: the image's sysctl.d settings never reach the host
    r = ctr("exec", "sys", "sh", "-c", "echo 4242 > /proc/sys/kernel/pid_max")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert open("/proc/sys/kernel/pid_max").read() == host_pid_max
    ctr("exec", "sys", "systemctl", "restart", "systemd-sysctl", check=False)
    assert open("/proc/sys/kernel/pid_max").read() == host_pid_max
    # a boot id and a machine id of its own
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert ctr("exec", "sys", "cat", "/proc/sys/kernel/random/boot_id").stdout != f.read()
    assert len(ctr("exec", "sys", "cat", "/etc/machine-id").stdout.strip()) == 32
    # still running a while later: no unit failed after its start limit (a console
    # getty on a console that is no terminal would, ~7 s after boot)
    time.sleep(max(0, booted + 10 - time.monotonic()))
    failed = ctr("exec", "sys", "systemctl", "--failed", "--no-legend").stdout.strip()
    assert system_state(ctr) == "running", failed
    # ctr stop sends SIGRTMIN+3: systemd halts well within the timeout, exit 0
    assert ctr.inspect("sys")["spec"]["stop_signal"] == "SIGRTMIN+3"
    start = time.monotonic()
    ctr("stop", "sys", check=True)
    took = time.monotonic() - start
    state = ctr.state("sys")
    assert (state["status"], state["exit_code"], state["reason"]) == ("stopped", 0, "exited")
    assert took < 5, took  # the timeout is 10 s: it was not SIGKILLed
    ctr("rm", "sys", check=True)
    assert not os.path.exists(own)
    assert systemd_cgroups() - before == set()


def test_systemd_alias_rm_f_and_restart(dctr):
    """--systemd is --init; rm -f of a booted system kills every process, also
    those in the cgroups systemd made, and removes those cgroups."""
    ctr = dctr
    boot(ctr, "--systemd")
    assert ctr.inspect("sys")["spec"]["init"] is True
    ctr("stop", "sys", check=True)
    boot_again = time.monotonic()
    ctr("start", "sys", check=True)  # a second boot of the same instance
    assert wait_for(lambda: system_state(ctr) in ("running", "degraded"), BOOT_TIMEOUT)
    assert time.monotonic() - boot_again < BOOT_TIMEOUT
    own = [p for p in ctr.state("sys")["cgroups"] if os.path.isdir(os.path.join(p, "init.scope"))]
    assert len(own) == 1
    ctr("rm", "-f", "sys", check=True)
    assert not os.path.exists(own[0])


def test_init_in_the_foreground_ends_with_ctr_stop(dctr):
    ctr = dctr
    # `ctr stop`, then SIGTERM to ctr itself (systemd stopping a unit, kill): the
    # stop signal is what reaches the init, which halts (SIGTERM would make
    # systemd re-execute)
    for stop in (lambda fg: ctr("stop", "sys", check=True),
                 lambda fg: fg.send_signal(signal.SIGTERM)):
        fg = ctr.popen("run", "--rm", "--name", "sys", "--network", "none", "--init", "debian")
        try:
            assert wait_for(lambda: system_state(ctr) in ("running", "degraded"), BOOT_TIMEOUT)
            stop(fg)
            assert fg.wait(timeout=15) == 0
        finally:
            if fg.poll() is None:
                fg.kill()
                fg.wait()
        assert not os.listdir(ctr.path("instances"))


def test_stop_signal_of_a_plain_container(ctr):
    ctr("run", "-d", "--name", "s", "--network", "none", "--stop-signal", "USR1", "busybox",
        "sh", "-c", "trap 'exit 7' USR1; while :; do sleep 0.05; done", check=True)
    assert ctr.inspect("s")["spec"]["stop_signal"] == "SIGUSR1"
    start = time.monotonic()
    ctr("stop", "s", check=True)
    assert time.monotonic() - start < 5
    state = ctr.state("s")
    assert (state["exit_code"], state["reason"]) == (7, "exited")
    # the default stays SIGTERM
    ctr("create", "--name", "d", "busybox", "true", check=True)
    assert ctr.inspect("d")["spec"]["stop_signal"] == "SIGTERM"


def test_bad_inputs_are_refused(ctr, tmp_path):
    # an image without /sbin/init
    src = ctr.path("images", "busybox", "rootfs")
    tar = tmp_path / "noinit.tar"
    subprocess.run(["tar", "-C", src, "--exclude", "./sbin/init", "-cf", str(tar), "."],
                   check=True)
    ctr("image", "import", str(tar), "noinit", check=True)
    assert_refused(ctr, ctr("run", "-d", "--init", "noinit"), "has no /sbin/init")
    assert_refused(ctr, ctr("run", "--stop-signal", "NOPE", "busybox", "true"),
                   "invalid --stop-signal 'NOPE'")
    assert_refused(ctr, ctr("run", "--stop-signal", "RTMIN+99", "busybox", "true"),
                   "invalid --stop-signal")
    assert_refused(ctr, ctr("run", "--init", "--vm", "busybox"), "--init is for containers")
    assert_refused(ctr, ctr("run", "--init", "--userns=auto", "busybox"),
                   "--init with --userns=auto is not supported")


def test_init_refused_without_a_cgroup2_view(dctr):
    """The host as a v1-only one sees it: the cgroup2 mount covered, in a mount
    namespace of the test's own (on a cgroup2-only host, that leaves no
    hierarchy at all). No init may start (it would see the host's hierarchies,
    or mount them), and nothing is left."""
    ctr = dctr
    before = systemd_cgroups()
    cgroup2 = CGROUP_ROOT if CGROUP2_ONLY else f"{CGROUP_ROOT}/unified"
    r = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs none {cgroup2} && exec "$@"', "-",
         CTR, "run", "-d", "--name", "sys", "--network", "none", "--init", "debian"],
        capture_output=True, text=True, env=ctr.env(), timeout=60)
    assert_refused(ctr, r, "--init needs a cgroup2 hierarchy on the host")
    assert systemd_cgroups() - before == set()


def _read_until(fd, pattern, timeout):
    out = b""
    deadline = time.monotonic() + timeout
    while pattern not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


SLOW_RECIPE = """#!/bin/sh
# Like debootstrap: progress, then mounts in its target, then a long wait.
set -eu
echo "==> fetching"
mkdir -p "$1/proc" "$1/dev"
mount -t proc proc "$1/proc"
mount -t tmpfs dev "$1/dev"
echo "==> unpacking"
exec sleep 600
"""


def _build_in_a_pty(root, recipes):
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["CTR_RECIPES"] = recipes
        argv = [CTR, "--root", root, "image", "build", "slow"]
        os.execvp(argv[0], argv)
    return pid, fd


def _staging_mounts(root):
    """Mounts beneath `root` in any process's mount namespace."""
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/mounts") as f:
                    found += [line for line in f if root in line]
            except OSError:
                pass
    return found


def test_an_interrupted_build_leaves_nothing(tmp_path):
    """Ctrl-C, and kill -9 of ctr, once the recipe has mounted proc and a tmpfs
    in its target (as debootstrap does): no image, no mount in any namespace,
    no process; the staging folder of the killed build goes with the next build."""
    root = str(tmp_path / "root")
    images = os.path.join(root, "images")
    recipes = tmp_path / "recipes"
    (recipes / "slow").mkdir(parents=True)
    (recipes / "slow" / "build.sh").write_text(SLOW_RECIPE)
    (recipes / "slow" / "build.sh").chmod(0o755)
    recipes = str(recipes)
    # on a terminal, progress; Ctrl-C (SIGINT to ctr) stops the build
    pid, fd = _build_in_a_pty(root, recipes)
    out = _read_until(fd, b"unpacking", 60)
    assert b"fetching" in out, out
    assert wait_for(lambda: _staging_mounts(images), 10), "the recipe mounted nothing"
    os.kill(pid, signal.SIGINT)
    _read_until(fd, b"\0", 10)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 130
    assert os.listdir(images) == []
    assert wait_for(lambda: not _staging_mounts(images) and not processes(images), 10)
    # kill -9 of ctr once the target has a mount (proc, in the build's namespace)
    pid, fd = _build_in_a_pty(root, recipes)
    try:
        assert wait_for(lambda: _staging_mounts(images), 60), "the recipe mounted nothing"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    assert wait_for(lambda: not _staging_mounts(images) and not processes(images), 10), \
        (_staging_mounts(images), processes(images))
    assert not mounts_under(root)
    left = os.listdir(images)
    assert len(left) == 1 and left[0].startswith(".build-")  # not an image
    assert json.loads(subprocess.run([CTR, "--root", root, "image", "ls", "--format", "json"],
                                     capture_output=True, text=True).stdout) == []
    subprocess.run([CTR, "--root", root, "image", "build", "busybox"], check=True,
                   capture_output=True)
    assert os.listdir(images) == ["busybox"]
