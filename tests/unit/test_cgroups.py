import errno

import pytest

import ctr.cgroups
from ctr.cgroups import Cgroup, at, hierarchies
from ctr.errors import CgroupError, CtrError


@pytest.fixture(autouse=True)
def default_parent(monkeypatch):
    """ctr's own default, whatever CTR_CGROUP_PARENT the test session set."""
    monkeypatch.setattr(ctr.cgroups, "DEFAULT_PARENT", "/ctr")

MOUNTINFO = """\
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
"""


def test_hierarchies(tmp_path):
    f = tmp_path / "mountinfo"
    f.write_text(MOUNTINFO)
    assert hierarchies(str(f)) == [
        ("/sys/fs/cgroup/memory", ("memory",)),
        ("/sys/fs/cgroup/cpu,cpuacct", ("cpu", "cpuacct")),
        ("/sys/fs/cgroup/unified", ("unified",)),
    ]


def test_a_covered_cgroup_mount_is_not_used(tmp_path):
    f = tmp_path / "mountinfo"
    f.write_text(MOUNTINFO + "40 33 0:40 / /sys/fs/cgroup/unified rw - tmpfs none rw\n")
    assert ("/sys/fs/cgroup/unified", ("unified",)) not in hierarchies(str(f))


def test_cgroup_mounts_below_a_later_mount_are_hidden(tmp_path):
    """cgroup2 mounted over /sys/fs/cgroup (a private mount namespace made to
    look like a cgroup2-only host): the v1 mounts beneath it are out of sight."""
    f = tmp_path / "mountinfo"
    f.write_text(MOUNTINFO + "41 33 0:41 / /sys/fs/cgroup rw - tmpfs none rw\n"
                 "42 41 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    assert hierarchies(str(f)) == [("/sys/fs/cgroup", ("unified",))]


def test_pure_v2(tmp_path):
    f = tmp_path / "mountinfo"
    f.write_text("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")
    assert hierarchies(str(f)) == [("/sys/fs/cgroup", ("unified",))]


# -- the backends, against cgroupfs trees laid out in a temp dir ------------------------
# (the kernel makes a folder's files on mkdir; here the test lays out the ones read)

def put(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_backend_follows_the_mounts():
    v2 = Cgroup(None, "x", found=[("/sys/fs/cgroup", ("unified",))])
    v1 = Cgroup(None, "x", found=[("/sys/fs/cgroup/memory", ("memory",)),
                                  ("/sys/fs/cgroup/unified", ("unified",))])
    assert (v2.version, v1.version) == (2, 1)
    assert v2.paths == ["/sys/fs/cgroup/ctr/x"]
    assert v1.paths == ["/sys/fs/cgroup/memory/ctr/x", "/sys/fs/cgroup/unified/ctr/x"]
    assert Cgroup("/a/b", "x", found=[("/sys/fs/cgroup", ("unified",))]).paths == [
        "/sys/fs/cgroup/a/b/x"]


def test_recorded_paths_round_trip():
    found = [("/sys/fs/cgroup/memory", ("memory",)), ("/sys/fs/cgroup/pids", ("pids",))]
    cg = Cgroup(None, "x", found=found)
    again = at(cg.paths, found=found)
    assert again.dirs == cg.dirs and again.default_parent
    assert not at(Cgroup("/mine", "x", found=found).paths, found=found).default_parent


def test_v2_delegates_controllers_and_writes_limits(tmp_path):
    root = tmp_path / "cg"
    put(root / "cgroup.controllers", "cpuset cpu io memory hugetlb pids")
    put(root / "cgroup.subtree_control", "memory")
    put(root / "ctr" / "cgroup.controllers", "cpuset cpu io memory pids")
    put(root / "ctr" / "cgroup.subtree_control", "")
    cg = Cgroup(None, "x", found=[(str(root), ("unified",))])
    cg.create({"memory": 64 << 20, "memory_swap": 96 << 20, "cpus": 0.5, "cpu_shares": 1024,
               "cpuset_cpus": "0,1", "pids_limit": 20, "blkio_weight": 300,
               "device_read_bps": [["8:0", 1 << 20]], "device_write_bps": [["8:0", 2 << 20]]})
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +cpuset +io +pids"
    assert (root / "ctr" / "cgroup.subtree_control").read_text() == \
        "+cpu +cpuset +io +memory +pids"
    leaf = root / "ctr" / "x"
    got = {f.name: f.read_text() for f in leaf.iterdir()}
    assert got == {"memory.max": str(64 << 20), "memory.swap.max": str(32 << 20),
                   "cpu.max": "50000 100000", "cpu.weight": "39", "cpuset.cpus": "0,1",
                   "pids.max": "20", "io.weight": "default 300",
                   "io.max": f"8:0 rbps={1 << 20} wbps={2 << 20}"}


def test_v2_counters_freeze_and_oom(tmp_path):
    leaf = tmp_path / "cg" / "ctr" / "x"
    put(leaf / "cgroup.procs", "10\n11\n")
    put(leaf / "cpu.stat", "usage_usec 1500\nuser_usec 1000\n")
    put(leaf / "memory.current", "4096000")
    put(leaf / "memory.stat", "anon 1000\ninactive_file 96000\n")
    put(leaf / "memory.max", "max")
    put(leaf / "pids.max", "64")
    put(leaf / "io.stat", "8:0 rbytes=100 wbytes=200 rios=1\n8:16 rbytes=1 wbytes=2\n")
    put(leaf / "memory.events", "low 0\noom 2\noom_kill 1\n")
    put(leaf / "cgroup.freeze", "0")
    put(leaf / "cgroup.events", "populated 1\nfrozen 1\n")
    cg = Cgroup(None, "x", found=[(str(tmp_path / "cg"), ("unified",))])
    s = cg.stats()
    assert s["cpu_usage_ns"] == 1_500_000 and s["memory_usage"] == 4_000_000
    assert s["pids"] == 2 and s["pids_limit"] == 64 and s["memory_limit"] > 0
    assert (s["blkio_read"], s["blkio_write"]) == (101, 202)
    assert cg.oom_kills() == 1
    assert cg.freeze() and (leaf / "cgroup.freeze").read_text() == "1"


def test_v2_kill_all_stops_when_the_cgroup_goes_away_while_freezing(tmp_path, monkeypatch):
    """The instance ends and its reaper removes the cgroup between the
    freeze's write and its check: kill_all is done, not stuck until a timeout."""
    leaf = tmp_path / "cg" / "ctr" / "x"
    put(leaf / "cgroup.procs", "10\n")
    put(leaf / "cgroup.freeze", "0")
    put(leaf / "cgroup.events", "populated 1\nfrozen 0\n")
    cg = Cgroup(None, "x", found=[(str(tmp_path / "cg"), ("unified",))])
    real_write = ctr.cgroups.v2.write

    def write_then_vanish(op, path, value):
        real_write(op, path, value)
        if path.endswith("cgroup.freeze") and str(value) == "1":
            for f in leaf.iterdir():
                f.unlink()
            leaf.rmdir()

    monkeypatch.setattr(ctr.cgroups.v2, "write", write_then_vanish)
    monkeypatch.setattr("os.kill", lambda pid, sig: None)
    cg.kill_all(timeout=30)  # returns at once
    assert not leaf.exists()


def test_v1_writes_limits_through_cgroupspy(tmp_path):
    found = []
    for name in ("memory", "cpu", "cpuset", "pids", "blkio", "freezer"):
        found.append((str(tmp_path / name), (name,)))
    put(tmp_path / "cpuset" / "cpuset.cpus", "0-1")
    put(tmp_path / "cpuset" / "cpuset.mems", "0")
    cg = Cgroup(None, "x", found=found)
    cg.create({"memory": 64 << 20, "cpus": 1.5, "cpu_weight": 100, "cpuset_cpus": "1",
               "pids_limit": -1, "device_write_bps": [["8:0", 1024]]})

    def leaf(name, f):
        return (tmp_path / name / "ctr" / "x" / f).read_text()

    assert leaf("memory", "memory.limit_in_bytes") == str(64 << 20)
    assert (leaf("cpu", "cpu.cfs_period_us"), leaf("cpu", "cpu.cfs_quota_us")) == (
        "100000", "150000")
    assert leaf("cpu", "cpu.shares") == "2597"  # weight 100 on the v1 scale
    assert leaf("cpuset", "cpuset.cpus") == "1" and leaf("cpuset", "cpuset.mems") == "0"
    assert leaf("pids", "pids.max") == "max"
    assert leaf("blkio", "blkio.throttle.write_bps_device") == "8:0 1024"


def test_v1_swap_limit_refused_without_swap_accounting(tmp_path):
    cg = Cgroup(None, "x", found=[(str(tmp_path / "memory"), ("memory",))])
    with pytest.raises(CtrError, match="--memory-swap is not supported"):
        cg.create({"memory": 64 << 20, "memory_swap": 128 << 20})
    assert not (tmp_path / "memory" / "ctr").exists()  # nothing left


# -- errors: every refused read and write names the operation, the file and the value --

def test_a_refused_freeze_names_the_file_and_the_value(tmp_path):
    state = tmp_path / "freezer" / "ctr" / "x" / "freezer.state"
    state.mkdir(parents=True)  # writing to a folder: EISDIR, as a refusal would be
    cg = Cgroup(None, "x", found=[(str(tmp_path / "freezer"), ("freezer",))])
    with pytest.raises(CgroupError) as info:
        cg.freeze()
    assert str(info.value) == f"cannot freeze: writing 'FROZEN' to {state}: Is a directory"
    assert (info.value.errno, info.value.path, info.value.value) == (
        errno.EISDIR, str(state), "FROZEN")
    assert isinstance(info.value, CtrError) and info.value.exit_code == 125


def test_v2_refused_writes_and_reads_name_the_file(tmp_path):
    leaf = tmp_path / "cg" / "ctr" / "x"
    (leaf / "cgroup.freeze").mkdir(parents=True)
    (leaf / "cpu.stat").mkdir()
    cg = Cgroup(None, "x", found=[(str(tmp_path / "cg"), ("unified",))])
    with pytest.raises(CgroupError, match=f"^cannot freeze: writing '1' to {leaf}/cgroup.freeze"):
        cg.freeze()
    with pytest.raises(CgroupError,
                       match=f"^cannot read the stats: reading {leaf}/cpu.stat: Is a directory"):
        cg.stats()
    with pytest.raises(CgroupError, match=f"^cannot set --cpus: writing '50000 100000' to "
                                          f"{leaf}/cpu.max: Is a directory"):
        (leaf / "cpu.max").mkdir()
        cg.apply({"cpus": 0.5})


def test_v1_refused_limit_through_cgroupspy_names_the_option_the_file_and_the_value(tmp_path):
    for d in (tmp_path / "cpuset", tmp_path / "cpuset" / "ctr"):
        put(d / "cpuset.cpus", "0-1")
        put(d / "cpuset.mems", "0")
    target = tmp_path / "cpuset" / "ctr" / "x" / "cpuset.cpus"
    target.mkdir(parents=True)
    put(target.parent / "cpuset.mems", "0")
    cg = Cgroup(None, "x", found=[(str(tmp_path / "cpuset"), ("cpuset",))])
    with pytest.raises(CgroupError) as info:
        cg.apply({"cpuset_cpus": "1"})
    assert str(info.value) == f"cannot set --cpuset-cpus: writing '1' to {target}: Is a directory"


def test_v1_limit_refused_by_the_kernel_names_the_option_the_file_and_the_value(tmp_path):
    found = [(str(tmp_path / "pids"), ("pids",))]
    cg = Cgroup(None, "x", found=found)
    (tmp_path / "pids" / "ctr" / "x" / "pids.max").mkdir(parents=True)
    with pytest.raises(CgroupError, match=f"^cannot set --pids-limit: writing '20' to "
                                          f"{tmp_path}/pids/ctr/x/pids.max: Is a directory$"):
        cg.create({"pids_limit": 20})
    assert not (tmp_path / "pids" / "ctr").exists()  # the reverter removed what create made


def test_a_cgroup_that_cannot_be_made_names_the_folder(tmp_path):
    put(tmp_path / "memory" / "ctr", "a file where the parent folder goes")
    cg = Cgroup(None, "x", found=[(str(tmp_path / "memory"), ("memory",))])
    with pytest.raises(CgroupError, match=f"^cannot create the cgroup: creating "
                                          f"{tmp_path}/memory/ctr/x: Not a directory"):
        cg.create()


def test_a_cgroup_that_cannot_be_removed_names_the_folder(tmp_path):
    leaf = tmp_path / "memory" / "mine" / "x"
    put(leaf / "memory.stat", "a file rmdir refuses to remove with its folder")
    cg = Cgroup("/mine", "x", found=[(str(tmp_path / "memory"), ("memory",))])
    with pytest.raises(CgroupError, match=f"^cannot remove the cgroup: removing {leaf}: "
                                          "Directory not empty$"):
        cg.destroy()


def test_the_backends_import_the_package_nowhere():
    """Imports go one way: ctr.cgroups -> v1/v2 -> common (in-function ones too)."""
    import ast
    import pathlib

    here = pathlib.Path(ctr.cgroups.__file__).parent
    for name in ("common.py", "v1.py", "v2.py"):
        for node in ast.walk(ast.parse((here / name).read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "ctr.cgroups", name
                assert name != "common.py" or not (node.module or "").startswith("ctr.cgroups")
            elif isinstance(node, ast.Import):
                assert all(not a.name.startswith("ctr.cgroups") for a in node.names), name


def test_v1_limit_without_its_hierarchy_is_refused(tmp_path):
    cg = Cgroup(None, "x", found=[(str(tmp_path / "pids"), ("pids",))])
    with pytest.raises(CgroupError, match="the memory cgroup controller is not mounted"):
        cg.create({"memory": 64 << 20})
    assert not (tmp_path / "pids" / "ctr").exists()


def test_the_views_of_each_backend():
    v1 = Cgroup(None, "x", found=[("/c/memory", ("memory",)),
                                  ("/c/cpu,cpuacct", ("cpu", "cpuacct")),
                                  ("/c/unified", ("unified",))])
    assert v1.view() == {
        "binds": [("cpu,cpuacct", "/c/cpu,cpuacct/ctr/x"), ("memory", "/c/memory/ctr/x"),
                  ("unified", "/c/unified/ctr/x")],
        "links": [("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")], "readonly": True}
    v2 = Cgroup(None, "x", found=[("/c", ("unified",))])
    assert v2.view(readonly=False) == {"cgroup2": True, "readonly": False}
