"""The v2 backend against the real kernel's cgroup2.

On a v2 host this is the host's own hierarchy. On a hybrid host (the build
machines) the cgroup2 mount at /sys/fs/cgroup/unified has no memory, cpu or pids
controller, but folders, cgroup.procs, cgroup.freeze, cgroup.events and
cgroup.kill are real there: the backend's freeze, kill and cleanup are tested on
it, and the limit tests skip, saying why."""

import os
import subprocess

import pytest
from helpers import wait_for

from ctr.cgroups import Cgroup, hierarchies

UNIFIED = [(m, c) for m, c in hierarchies() if c == ("unified",)]
if not UNIFIED:
    pytest.skip("this host mounts no cgroup2 hierarchy", allow_module_level=True)


@pytest.fixture
def v2(cgroup_parents_before):
    cg = Cgroup(None, f"v2test-{os.getpid()}", found=UNIFIED)
    procs = []
    yield cg, procs
    for p in procs:
        p.kill()
        p.wait()
    cg.destroy()
    assert not cg.exists()


def _controllers(cg):
    with open(os.path.join(os.path.dirname(cg.path), "cgroup.controllers")) as f:
        return f.read().split()


def _state(pid):
    with open(f"/proc/{pid}/status") as f:
        return [line.split()[1] for line in f if line.startswith("State:")][0]


def test_freeze_thaw_and_kill_all(v2):
    cg, procs = v2
    cg.create()
    assert cg.version == 2 and os.path.isdir(cg.path)
    # a shell and the daemon it double-forks, both in the cgroup
    p = subprocess.Popen(["sh", "-c", "(sleep 1000 &); exec sleep 1000"],
                         preexec_fn=lambda: cg.add(0))
    procs.append(p)
    assert wait_for(lambda: len(cg.pids()) == 2)
    if not os.path.exists(os.path.join(cg.path, "cgroup.freeze")):
        pytest.skip("this kernel has no cgroup.freeze (Linux < 5.2)")
    assert cg.freeze()
    assert cg.frozen()
    cg.thaw()
    assert not cg.frozen()
    pids = cg.pids()
    cg.kill_all()  # cgroup.kill where the kernel has it
    assert not cg.pids()
    assert all(not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z" for pid in pids)


def test_limits_on_real_v2(v2):
    cg, _ = v2
    cg.create()
    missing = [c for c in ("memory", "pids", "cpu") if c not in _controllers(cg)]
    if missing:
        pytest.skip(f"the cgroup2 mount here offers no {', '.join(missing)} controller "
                    "(hybrid host: those are v1 hierarchies, tested through the v1 backend)")
    cg.apply({"memory": 64 << 20, "pids_limit": 20, "cpus": 0.5})
    with open(os.path.join(cg.path, "memory.max")) as f:
        assert f.read().strip() == str(64 << 20)
    with open(os.path.join(cg.path, "cpu.max")) as f:
        assert f.read().split() == ["50000", "100000"]


def test_device_rules_are_a_bpf_filter_the_kernel_asks(v2):
    """cgroup v2's device controller: the eBPF program attached to the folder
    (ctr.cgroups.devicefilter), the same rules v1 writes to devices.allow/deny.
    A cgroup2 folder of this host's takes it, hybrid or not."""
    cg, procs = v2
    cg.create()
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse to open")
    from ctr.cgroups.common import device_rules

    cg.restrict_devices(device_rules(rules=[(False, "a *:* rwm"), (True, "c 10:229 rwm"),
                                            (False, "c 10:229 w")]))

    def opens(script):
        return subprocess.run(["sh", "-c", script + " && echo yes"],
                              preexec_fn=lambda: cg.add(0), capture_output=True,
                              text=True).stdout.strip() == "yes"

    assert opens("exec 3</dev/fuse")  # read: allowed
    assert not opens("exec 3<>/dev/fuse")  # write: denied again by the last rule
    assert opens("echo x > /dev/null")  # ctr's own devices stay allowed
    assert not opens("exec 3</dev/kmsg")  # anything else: denied


def test_unified_files_are_written_and_a_missing_one_is_named(v2):
    """An OCI bundle's linux.resources.unified: each file written in the
    instance's folder; one the kernel does not offer there is an error naming it."""
    from ctr.errors import CgroupError

    cg, _ = v2
    cg.create()
    if "memory" in _controllers(cg):
        cg.apply({"unified": {"memory.high": str(48 << 20)}})
        with open(os.path.join(cg.path, "memory.high")) as f:
            assert f.read().strip() == str(48 << 20)
    else:  # a hybrid host: no memory controller on its cgroup2 mount
        with pytest.raises(CgroupError, match="unified memory.high is not supported here"):
            cg.apply({"unified": {"memory.high": str(48 << 20)}})


def test_hugepage_limits_where_the_hugetlb_controller_is_offered(v2):
    cg, _ = v2
    size = "2MB"
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("this host has no 2MB hugepages")
    top = os.path.dirname(os.path.dirname(cg.path))
    with open(os.path.join(top, "cgroup.subtree_control")) as f:
        if "hugetlb" not in f.read().split():
            pytest.skip("hugetlb is not enabled in the cgroup2 root's subtree_control, and a "
                        "test does not change the host's root (ctr enables it from the root "
                        "down only for an instance that asks for hugepage limits)")
    cg.create({"hugepage_limits": [(size, 4 << 20)]})
    with open(os.path.join(cg.path, f"hugetlb.{size}.max")) as f:
        assert f.read().strip() == str(4 << 20)
