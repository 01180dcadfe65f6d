"""What a container sees of its own resources, as a user (or a JVM, Go's
GOMAXPROCS helpers, .NET, Node) checks them inside:

- /sys/fs/cgroup: its own cgroup, read-only (a cgroup namespace with cgroup2 on a
  cgroup2-only host; a tmpfs with each v1 hierarchy's folder of the container
  bound on a v1/hybrid host), `--cgroupns private|host`.
- lxcfs: /proc/meminfo, cpuinfo, stat, uptime... of the container's own when
  lxcfs runs. The tests start lxcfs themselves, in a mount namespace of their
  own, at a private mountpoint (CTR_LXCFS_ROOT), and stop it after.

Each layout's assertions run where the host has that layout and are skipped,
with the reason, elsewhere: this host is hybrid (v1), the cgroup2-only VM run
(make test-cgroup2) takes the v2 ones.
"""

import os
import shutil
import signal
import subprocess

import pytest
from helpers import PARENT, Ctr, assert_refused, wait_for

from ctr.cgroups import hierarchies

V1 = any(ctrls != ("unified",) for _, ctrls in hierarchies())
v1_only = pytest.mark.skipif(not V1, reason="a cgroup2-only host: the v1 view is not made here")
v2_only = pytest.mark.skipif(V1, reason="a v1/hybrid host: the cgroup2-only view is not made here")

LIMITS = ("-m", "64m", "--cpus", "0.5", "--pids-limit", "10", "--cpuset-cpus", "0")


def run(ctr, *args):
    r = ctr("run", "--rm", "--network", "none", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


# -- /sys/fs/cgroup ---------------------------------------------------------------------------

@v1_only
def test_v1_host_each_controller_shows_the_containers_own_limits(ctr):
    out = run(ctr, *LIMITS, "busybox", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
              "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/pids/pids.max",
              "/sys/fs/cgroup/cpuset/cpuset.cpus")
    assert out.split() == ["67108864", "50000", "10", "0"]
    # its cgroup is the root of what it sees: no other instance's, no host's
    out = run(ctr, "busybox", "sh", "-c", "ls /sys/fs/cgroup; cat /proc/self/cgroup; "
              "find /sys/fs/cgroup/memory -type d")
    names = set(out.split())
    assert {"memory", "cpu", "pids", "cpuset", "freezer", "devices"} <= names
    cgroup_lines = [line for line in out.splitlines() if line[:1].isdigit()]
    assert cgroup_lines and all(line.endswith(":/") for line in cgroup_lines), out
    assert out.splitlines()[-1] == "/sys/fs/cgroup/memory"  # no folder beneath


@v2_only
def test_v2_host_cgroup2_is_rooted_at_the_containers_cgroup(ctr):
    with open("/sys/fs/cgroup/cgroup.controllers") as f:
        missing = {"cpu", "cpuset", "memory", "pids"} - set(f.read().split())
    if missing:
        pytest.skip(f"this cgroup2 mount offers no {', '.join(sorted(missing))} controller")
    out = run(ctr, *LIMITS, "busybox", "sh", "-c",
              "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max "
              "/sys/fs/cgroup/cpuset.cpus; cat /proc/self/cgroup")
    assert out.split() == ["67108864", "50000", "100000", "10", "0", "0::/"]


def test_the_cgroup_view_is_read_only(ctr):
    # a limit on v1; on cgroup2 a file every cgroup has, whatever its controllers
    limit, value = (("memory/memory.limit_in_bytes", "67108864") if V1 else
                    ("cgroup.max.descendants", "max"))
    r = ctr("run", "--rm", "--network", "none", *(("-m", "64m") if V1 else ()), "busybox",
            "sh", "-c", f"echo 10 > /sys/fs/cgroup/{limit}; mkdir /sys/fs/cgroup/escape; "
            f"mkdir /sys/fs/cgroup/{os.path.dirname(limit) or '.'}/child; "
            f"cat /sys/fs/cgroup/{limit}")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("Read-only file system") == 3, r.stderr
    assert r.stdout.split() == [value]  # unchanged


def test_a_userns_container_sees_its_own_cgroup_read_only(ctr, subids):
    limit = "memory/memory.limit_in_bytes" if V1 else "cgroup.max.descendants"
    r = ctr("run", "--rm", "--network", "none", "--userns=auto",
            *(("-m", "64m") if V1 else ()), "busybox", "sh", "-c",
            f"cat /sys/fs/cgroup/{limit}; echo 10 > /sys/fs/cgroup/{limit}", env=subids)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r
    assert r.stdout.split() == ["67108864" if V1 else "max"]


def test_exec_sees_the_same_view(ctr):
    ctr("run", "-d", "--name", "c", "--network", "none", "busybox", "sleep", "60", check=True)
    try:
        r = ctr("exec", "c", "sh", "-c", "cat /proc/self/cgroup; ls /sys/fs/cgroup")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert "0::/" in lines and all(line.endswith(":/") for line in lines if ":" in line)
        assert ("memory" if V1 else "cgroup.procs") in lines
    finally:
        ctr("rm", "-f", "c", check=True)


def test_cgroupns_host_shows_the_hosts_paths(ctr):
    ctr("run", "-d", "--name", "h", "--network", "none", "--cgroupns", "host",
        *(("-m", "64m") if V1 else ()), "busybox", "sleep", "60", check=True)
    try:
        cid = ctr.inspect("h")["id"]
        mode = ctr("inspect", "-f", "{{.HostConfig.CgroupnsMode}}", "h", check=True).stdout
        assert mode.strip() == "host"
        own = ctr("exec", "h", "cat", "/proc/self/cgroup", check=True).stdout
        # the host's namespace: the container's cgroup by its full path
        assert f"/{PARENT}/{cid}" in own
        if V1:  # each hierarchy still shows the container's own folder (docker's)
            out = ctr("exec", "h", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                      check=True).stdout
            assert out.split() == ["67108864"]
        else:  # cgroup2 from the host's namespace: its whole hierarchy, read-only
            ctr("exec", "h", "test", "-d", f"/sys/fs/cgroup/{PARENT}/{cid}", check=True)
        r = ctr("exec", "h", "mkdir", "/sys/fs/cgroup/escape")
        assert r.returncode != 0 and "Read-only file system" in r.stderr
    finally:
        ctr("rm", "-f", "h", check=True)
    # the default is a namespace of its own
    assert "0::/\n" in run(ctr, "busybox", "cat", "/proc/self/cgroup")


def test_privileged_gets_a_writable_view_as_docker_gives_it(ctr):
    out = run(ctr, "--privileged", "busybox", "grep", " /sys/fs/cgroup", "/proc/self/mountinfo")
    assert out and all(line.split()[5].startswith("rw") for line in out.splitlines()), out


def test_an_init_keeps_its_writable_cgroup2_view(ctr):
    if not any(ctrls == ("unified",) for _, ctrls in hierarchies()):
        pytest.skip("this host mounts no cgroup2 hierarchy: --init is refused here")
    # --init with a command: that command is the init, given what systemd gets
    out = run(ctr, "--init", "busybox", "grep", " /sys/fs/cgroup ", "/proc/self/mountinfo")
    fields = out.split()
    assert "cgroup2" in fields and fields[5].startswith("rw,"), out


def test_bad_cgroupns_and_lxcfs_values_are_refused(ctr):
    r = ctr("run", "--rm", "--cgroupns", "shared", "busybox", "true")
    assert_refused(ctr, r, "invalid --cgroupns 'shared': expected private or host")
    r = ctr("run", "--rm", "--init", "--cgroupns", "host", "busybox", "true")
    assert_refused(ctr, r, "--init needs a cgroup namespace of its own")
    r = ctr("run", "--rm", "--lxcfs", "maybe", "busybox", "true")
    assert_refused(ctr, r, "invalid --lxcfs 'maybe': expected true or false")
    r = ctr("run", "--rm", "--vm", "--cgroupns", "host", "busybox", "true")
    assert_refused(ctr, r, "--cgroupns is for containers")


# -- lxcfs ------------------------------------------------------------------------------------

def _host_meminfo_total():
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))


def _host_uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


@pytest.fixture
def lxcfs(tmp_path):
    """lxcfs serving at a private mountpoint, in a mount namespace of the test's
    own (held by a `sleep`), so nothing of it reaches the host's mounts. Yields
    (ctr's command prefix to run in that namespace, the mountpoint)."""
    binary = shutil.which("lxcfs")
    if binary is None:
        pytest.skip("lxcfs is not installed (make dev installs it)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: lxcfs cannot run here")
    mnt = tmp_path / "lxcfs"
    mnt.mkdir()
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "600"])
    enter = ["nsenter", "-t", str(holder.pid), "-m", "--"]
    daemon = None
    try:
        assert wait_for(lambda: os.readlink(f"/proc/{holder.pid}/ns/mnt")
                        != os.readlink("/proc/self/ns/mnt"))
        daemon = subprocess.Popen([*enter, binary, "-f", "-p", str(tmp_path / "lxcfs.pid"),
                                   str(mnt)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        assert wait_for(lambda: os.path.isfile(f"/proc/{holder.pid}/root{mnt}/proc/meminfo"))
        yield enter, str(mnt)
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        holder.kill()
        holder.wait()


@pytest.fixture
def lctr(ctr, lxcfs):
    """The `ctr` fixture's state root, with ctr run beside lxcfs and told where it is."""
    enter, mnt = lxcfs
    c = Ctr(ctr.root, prefix=[*enter, "env", f"CTR_LXCFS_ROOT={mnt}"])
    return c


def _procps(ctr):
    """The host's procps free and uptime, bound into the debian image (which has
    their libraries but libproc2): what users of a Debian or Ubuntu image run."""
    debian = "/var/lib/ctr/images/debian"
    if not os.path.isfile(os.path.join(debian, "image.json")):
        pytest.skip("no debian image: run `make dev` (it builds one)")
    tools = [shutil.which(t) for t in ("free", "uptime")]
    lib = "/lib/x86_64-linux-gnu/libproc2.so.0"
    if None in tools or not os.path.exists(lib):
        pytest.skip("the host has no procps 4 (free, uptime, libproc2) to lend")
    subprocess.run(["cp", "-al", debian, ctr.path("images", "debian")], check=True)
    return [a for t in [*tools, lib] for a in ("-v", f"{os.path.realpath(t)}:{t}:ro")]


def test_lxcfs_free_shows_the_containers_memory(lctr):
    binds = _procps(lctr)
    out = run(lctr, "-m", "64m", *binds, "debian", "free", "-m")
    total = int(next(line for line in out.splitlines() if line.startswith("Mem:")).split()[1])
    assert total == 64, out
    out = run(lctr, "-m", "64m", "busybox", "grep", "MemTotal", "/proc/meminfo")
    assert out.split()[1] == "65536", out
    # --lxcfs=false: the host's, as before
    out = run(lctr, "-m", "64m", "--lxcfs=false", "busybox", "grep", "MemTotal", "/proc/meminfo")
    assert int(out.split()[1]) == _host_meminfo_total()


def test_lxcfs_cpus_are_the_containers_cpuset(lctr):
    script = ("nproc; cat /sys/devices/system/cpu/online; grep -c ^processor /proc/cpuinfo; "
              "getconf _NPROCESSORS_ONLN")
    out = run(lctr, "--cpuset-cpus", "0", *_procps(lctr), "debian", "sh", "-c", script)
    assert out.split() == ["1", "0", "1", "1"], out
    ncpu = os.cpu_count()
    if ncpu > 1:
        out = run(lctr, "--cpuset-cpus", "0", "--lxcfs=false", "debian", "sh", "-c", script)
        assert out.split()[0] == "1"  # the affinity, with or without lxcfs
        assert out.split()[2:] == [str(ncpu), str(ncpu)], out


def test_lxcfs_uptime_is_the_containers(lctr):
    binds = _procps(lctr)
    host = _host_uptime()
    if host < 120:
        pytest.skip("the host booted less than 2 minutes ago: its uptime is no contrast")
    out = run(lctr, *binds, "debian", "sh", "-c", "cat /proc/uptime; uptime -p")
    assert float(out.split()[0]) < 30, out
    assert "up 0 minutes" in out, out
    out = run(lctr, "--lxcfs=false", "busybox", "cat", "/proc/uptime")
    assert float(out.split()[0]) >= host


def test_lxcfs_a_system_container_boots_and_sees_its_own(lctr):
    _procps(lctr)  # the debian image
    lctr("run", "-d", "--init", "--name", "sys", "--network", "none", "-m", "256m", "debian",
         check=True)
    try:
        def booted():
            r = lctr("exec", "sys", "systemctl", "is-system-running")
            return r.stdout.strip() in ("running", "degraded")

        assert wait_for(booted, timeout=60)
        assert lctr("exec", "sys", "systemctl", "is-system-running").stdout.strip() == "running"
        out = lctr("exec", "sys", "grep", "MemTotal", "/proc/meminfo", check=True).stdout
        assert out.split()[1] == str(256 << 10)
    finally:
        lctr("rm", "-f", "sys", check=True)


def test_without_lxcfs_the_host_is_unchanged(ctr, tmp_path):
    """A host where lxcfs does not run (an empty mountpoint: the package
    installed, the daemon not started) gives the kernel's own files."""
    empty = tmp_path / "no-lxcfs"
    empty.mkdir()
    out = run(Ctr(ctr.root, prefix=["env", f"CTR_LXCFS_ROOT={empty}"]), "-m", "64m",
              "busybox", "sh", "-c", "grep MemTotal /proc/meminfo; grep -c fuse "
              "/proc/self/mountinfo || true")
    assert int(out.split()[1]) == _host_meminfo_total()
    assert out.split()[-1] == "0"


# -- ctr-oci: a bundle whose config.json mounts cgroup at /sys/fs/cgroup -----------------------

def test_an_oci_bundles_cgroup_mount_is_its_own_cgroup(tmp_path):
    from oci_helpers import CGROUP_PARENT, make_bundle, make_rootfs, oci, remove_cgroup_tree

    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    limit = "pids/pids.max" if V1 else "cgroup.max.descendants"

    def edit(config):
        if V1:
            config["linux"]["resources"] = {"pids": {"limit": 7}}
        assert [m for m in config["mounts"] if m["destination"] == "/sys/fs/cgroup"
                and "ro" in m.get("options", ())]  # as runc's and podman's configs have it

    try:
        b = make_bundle(str(tmp_path / "bundle"), rootfs,
                        ["sh", "-c", f"cat /sys/fs/cgroup/{limit}; cat /proc/self/cgroup; "
                         f"echo 1 > /sys/fs/cgroup/{limit}"], "v1", edit=edit)
        r = oci("run", "--bundle", b, "v1", root=str(tmp_path / "state"))
        assert r.returncode != 0 and "Read-only file system" in r.stderr, r
        assert r.stdout.split()[0] == ("7" if V1 else "max")
        assert "0::/" in r.stdout.splitlines()
    finally:
        remove_cgroup_tree(CGROUP_PARENT)
