"""Resource limits, counters, pause and cgroup placement, as a user checks them:
the hog is killed, the fork loop stops at the limit, the busy loop gets half a CPU,
the paused counter stops. These run on the host's cgroups (v1/hybrid on the build
machines), and in the cgroup2-only guest of `make test-cgroup2` (tests/cgroup2)."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
from helpers import (
    CGROUP2_ONLY,
    CGROUP_ROOT,
    PARENT,
    cgroup_dir,
    cgroup_path,
    in_a_pty,
    own_cgroup,
    wait_for,
)

HOG = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"]  # a 100 MiB buffer


def stats(ctr, *names, interval="0.2"):
    r = ctr("stats", "--no-stream", "--format", "json", "--interval", interval, *names, check=True)
    return {row["name"]: row for row in json.loads(r.stdout)}


def remove_parent(parent):
    """A parent the user named stays after its instances: the test removes it."""
    for h in [""] if CGROUP2_ONLY else os.listdir(CGROUP_ROOT):
        if os.path.isdir(f"{CGROUP_ROOT}/{h}{parent}"):
            os.rmdir(f"{CGROUP_ROOT}/{h}{parent}")


def test_memory_hog_is_oom_killed_and_reported(ctr):
    r = ctr("run", "--name", "hog", "-m", "32m", "busybox", *HOG)
    assert r.returncode == 137
    state = ctr.state("hog")
    assert state["oom_killed"] is True and state["reason"] == "oom-killed"
    # the same work under a limit it fits in
    assert ctr("run", "--name", "fits", "-m", "256m", "busybox", *HOG).returncode == 0
    assert ctr.state("fits")["oom_killed"] is False


def has_swap():
    with open("/proc/swaps") as f:
        return len(f.read().splitlines()) > 1


def test_memory_swap_limits_memory_plus_swap(ctr):
    """--memory-swap is memory plus swap (docker's): equal to --memory, no swap at
    all, and a 48 MiB buffer under 32m is OOM-killed; with 64 MiB of swap beside
    it, the same buffer fits where the host has swap to give (the guest of make
    test-cgroup2 has a swap file; the build hosts have none)."""
    hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=48M", "count=1"]
    r = ctr("run", "--name", "noswap", "-m", "32m", "--memory-swap", "32m", "busybox", *hog)
    assert r.returncode == 137 and ctr.state("noswap")["oom_killed"] is True
    ctr("run", "-d", "--name", "swap", "-m", "32m", "--memory-swap", "96m", "busybox",
        "sleep", "1000", check=True)
    folder = cgroup_dir(ctr, "swap", "memory")
    if CGROUP2_ONLY:  # v2 counts swap apart from memory
        with open(f"{folder}/memory.swap.max") as f:
            assert f.read().strip() == str(64 << 20)
    else:
        with open(f"{folder}/memory.memsw.limit_in_bytes") as f:
            assert f.read().strip() == str(96 << 20)
    if has_swap():
        assert ctr("exec", "swap", *hog).returncode == 0
    ctr("rm", "-f", "swap", check=True)


def test_pids_limit_stops_a_fork_loop(ctr):
    # the inner shell forks until it cannot (busybox sh then gives up); its
    # sleeps stay, orphaned to the init
    ctr("run", "-d", "--name", "forky", "--pids-limit", "20", "busybox", "sh", "-c",
        "sh -c 'for i in $(seq 40); do sleep 1000 & done'; echo started; exec sleep 1000",
        check=True)
    assert wait_for(lambda: "started" in ctr("logs", "forky").stdout)
    row = stats(ctr, "forky")["forky"]
    assert row["pids_limit"] == 20 and 15 <= row["pids"] <= 20
    assert "can't fork" in ctr("logs", "forky").stdout + ctr("logs", "forky").stderr
    assert ctr("stop", "-t", "1", "forky").returncode == 0  # still stoppable
    assert ctr.state("forky")["status"] == "stopped"


def test_cpus_limits_a_busy_loop(ctr):
    ctr("run", "-d", "--name", "busy", "--cpus", "0.5", "busybox", "sh", "-c",
        "while :; do :; done", check=True)
    row = stats(ctr, "busy", interval="2")["busy"]
    # CPU % is measured from the cgroup's own usage counter over 2 s
    assert 25 <= row["cpu_percent"] <= 65, row
    ctr("rm", "-f", "busy", check=True)


def test_cpu_shares_and_weight(ctr):
    """--cpu-shares (v1's scale) and --cpu-weight (v2's): each host gets its own
    file, converted as runc converts (shares 512 is weight 20)."""
    ctr("run", "-d", "--name", "w", "--network", "none", "--cpu-shares", "512", "busybox",
        "sleep", "1000", check=True)
    folder = cgroup_dir(ctr, "w", "cpu")
    name, value = ("cpu.weight", "20") if CGROUP2_ONLY else ("cpu.shares", "512")
    with open(f"{folder}/{name}") as f:
        assert f.read().strip() == value
    if CGROUP2_ONLY:
        ctr("update", "--cpu-weight", "300", "w", check=True)
        with open(f"{folder}/cpu.weight") as f:
            assert f.read().strip() == "300"
    ctr("rm", "-f", "w", check=True)


def test_cpuset(ctr):
    r = ctr("run", "--rm", "--cpuset-cpus", "0", "busybox", "grep", "Cpus_allowed_list",
            "/proc/self/status")
    assert r.stdout.split() == ["Cpus_allowed_list:", "0"]


def test_pause_stops_the_counter_and_unpause_resumes_it(ctr):
    ctr("run", "-d", "--name", "tick", "busybox", "sh", "-c",
        "while :; do echo x; usleep 20000; done", check=True)
    log = ctr.path("instances", "tick", "log")
    assert wait_for(lambda: os.path.getsize(log) > 10)
    assert ctr("pause", "tick").returncode == 0
    assert ls_status(ctr, "tick") == "paused"
    size = os.path.getsize(log)
    time.sleep(0.5)
    assert os.path.getsize(log) == size
    r = ctr("exec", "tick", "true")
    assert r.returncode == 125 and "paused" in r.stderr
    r = ctr("kill", "tick")
    assert r.returncode == 125 and "unpause it first" in r.stderr
    assert ctr("unpause", "tick").returncode == 0
    assert wait_for(lambda: os.path.getsize(log) > size + 10)
    assert ls_status(ctr, "tick") == "running"
    # a paused instance can still be stopped
    ctr("pause", "tick", check=True)
    assert ctr("stop", "-t", "1", "tick").returncode == 0
    assert ls_status(ctr, "tick") == "stopped"


def ls_status(ctr, name):
    rows = json.loads(ctr("ls", "-a", "--format", "json").stdout)
    return [r["status"] for r in rows if r["name"] == name][0]


def test_stop_reaches_a_double_forked_daemon(ctr):
    ctr("run", "-d", "--name", "d", "busybox", "sh", "-c",
        "(sh -c 'sleep 1000 &'); trap '' TERM; echo up; while :; do sleep 1; done", check=True)
    assert wait_for(lambda: "up" in ctr("logs", "d").stdout)
    pids = cgroup_pids(ctr, "d")
    assert len(pids) >= 3  # the init, its sleep, the daemon's orphaned sleep
    assert ctr("stop", "-t", "1", "d").returncode == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}")
    # and `kill` (SIGKILL) goes through the cgroup too
    ctr("start", "d", check=True)
    assert wait_for(lambda: len(cgroup_pids(ctr, "d")) >= 3)
    pids = cgroup_pids(ctr, "d")
    assert ctr("kill", "d").returncode == 0
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids))


def cgroup_pids(ctr, name):
    with open(os.path.join(cgroup_dir(ctr, name, "pids"), "cgroup.procs")) as f:
        return f.read().split()


def test_update_changes_live_limits(ctr):
    ctr("run", "-d", "--name", "u", "-m", "256m", "busybox", "sleep", "1000", check=True)
    assert ctr("exec", "u", *HOG).returncode == 0
    assert ctr("update", "u", "--memory", "32m", "--pids-limit", "10").returncode == 0
    assert ctr("exec", "u", *HOG).returncode == 137  # the new limit is enforced
    assert stats(ctr, "u")["u"]["pids_limit"] == 10
    assert ctr.inspect("u")["spec"]["resources"] == {"memory": 32 << 20, "pids_limit": 10}
    ctr("stop", "-t", "0", "u", check=True)
    # kept for the next start
    ctr("update", "u", "--pids-limit", "12", check=True)
    ctr("start", "u", check=True)
    with open(os.path.join(cgroup_dir(ctr, "u", "pids"), "pids.max")) as f:
        assert f.read().strip() == "12"
    ctr("rm", "-f", "u", check=True)


def test_stats_table_and_all_running(ctr):
    for name in ("s1", "s2"):
        ctr("run", "-d", "--name", name, "-m", "64m", "busybox", "sleep", "1000", check=True)
    r = ctr("stats", "--no-stream", "--interval", "0.2", check=True)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "CPU", "%"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["s1", "s2"]
    assert "/ 64.0MiB" in r.stdout
    ctr("rm", "-f", "s1", "s2", check=True)


def test_stats_redraws_on_a_terminal(ctr):
    ctr("run", "-d", "--name", "live", "busybox", "sleep", "1000", check=True)
    code, out = in_a_pty(ctr, "stats", "--interval", "0.3",
                         wrapper=("timeout", "--preserve-status", "-s", "INT", "3"))
    assert code == 130  # ended by ^C, as a person ends it
    assert out.count(b"\x1b[H\x1b[J") >= 2 and out.count(b"live ") >= 2
    ctr("rm", "-f", "live", check=True)


def test_device_rate_limits_are_written(ctr):
    dev = next((d for d in ("/dev/vda", "/dev/sda", "/dev/nvme0n1") if os.path.exists(d)), None)
    if dev is None:
        pytest.skip("no disk block device to name")
    ctr("run", "-d", "--name", "io", "--device-write-bps", f"{dev}:1m", "busybox", "sleep",
        "1000", check=True)
    st = os.stat(dev)
    devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    if CGROUP2_ONLY:
        with open(os.path.join(cgroup_dir(ctr, "io", "io"), "io.max")) as f:
            assert f.read().split() == [devno, "rbps=max", "wbps=1048576", "riops=max",
                                        "wiops=max"]
    else:
        with open(os.path.join(cgroup_dir(ctr, "io", "blkio"),
                               "blkio.throttle.write_bps_device")) as f:
            assert f.read().split() == [devno, "1048576"]
    ctr("rm", "-f", "io", check=True)


def test_custom_cgroup_parent(ctr):
    parent = f"/ctr-test-{os.getpid()}"
    try:
        ctr("run", "-d", "--name", "p", "--cgroup-parent", parent, "busybox", "sleep", "1000",
            check=True)
        mem = cgroup_dir(ctr, "p", "memory")
        assert os.path.dirname(mem) == cgroup_path("memory", parent)
        ctr("rm", "-f", "p", check=True)
        assert not os.path.exists(mem)
    finally:
        remove_parent(parent)


def test_cgroup_parent_self_nests_under_ctrs_own_cgroup(ctr):
    if CGROUP2_ONLY:
        return self_under_a_unit_on_v2(ctr)
    mine = own_cgroup("memory")
    ctr("run", "-d", "--name", "n", "--cgroup-parent", "self", "busybox", "sleep", "1000",
        check=True)
    mem = cgroup_dir(ctr, "n", "memory")
    assert os.path.dirname(mem) == cgroup_path("memory", mine)
    ctr("rm", "-f", "n", check=True)
    assert not os.path.exists(mem)  # nothing left beneath our own cgroup


def self_under_a_unit_on_v2(ctr):
    """cgroup2's no-internal-processes rule: ctr runs alone in a cgroup of its own,
    as the main process of a systemd unit does (Delegate=yes). A cgroup with
    processes cannot give controllers to its children, so ctr moves itself into
    a leaf beside the instance's (unit/supervisor), and the instance gets its
    limits in unit/ID. Nothing is left beneath the unit but that leaf."""
    unit = f"{CGROUP_ROOT}/{PARENT}-unit.service"
    os.mkdir(unit)
    try:
        def enter_unit():
            with open(f"{unit}/cgroup.procs", "w") as f:
                f.write("0")
        # in the foreground, as a generated unit's ExecStart runs it
        fg = ctr.popen("run", "--name", "n", "--network", "none", "--cgroup-parent", "self",
                       "-m", "64m", "--pids-limit", "30", "busybox", "sleep", "1000",
                       stdin=subprocess.DEVNULL, preexec_fn=enter_unit)
        assert wait_for(lambda: ctr("inspect", "n").returncode == 0
                        and ctr.state("n")["status"] == "running", 60), fg.stderr
        folder = cgroup_dir(ctr, "n", "memory")
        assert os.path.dirname(folder) == unit
        with open(f"{folder}/memory.max") as f:
            assert f.read().strip() == str(64 << 20)
        with open(f"{folder}/pids.max") as f:
            assert f.read().strip() == "30"
        with open(f"{unit}/cgroup.subtree_control") as f:
            assert {"memory", "pids"} <= set(f.read().split())
        with open(f"{unit}/cgroup.procs") as f:
            assert f.read() == ""  # no process of its own: the rule holds
        ctr("rm", "-f", "n", check=True)
        fg.wait(timeout=60)
        assert not os.path.exists(folder)
        assert [d for d in os.listdir(unit) if os.path.isdir(f"{unit}/{d}")] == ["supervisor"]
    finally:
        for d in (f"{unit}/supervisor", unit):
            if os.path.isdir(d):
                os.rmdir(d)


def test_gc_cleans_after_an_instance_that_died_unwatched(ctr):
    ctr("run", "-d", "--name", "g", "busybox", "sleep", "1000", check=True)
    state = ctr.state("g")
    os.kill(state["reaper_pid"], signal.SIGKILL)
    os.kill(state["pid"], signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{state['pid']}"))
    assert ls_status(ctr, "g") == "stopped"
    assert any(os.path.isdir(p) for p in state["cgroups"])
    r = ctr("gc", check=True)
    assert r.stdout.split() == ["g"]
    assert not any(os.path.isdir(p) for p in state["cgroups"])


@pytest.mark.parametrize("args,msg", [
    (["-m", "1m"], "minimum is 6m"),
    (["--memory", "lots"], "invalid memory limit"),
    (["--memory-swap", "1g"], "needs --memory"),
    (["--cpus", "99"], "between 0.01"),
    (["--cpuset-cpus", "64"], "CPU 64 is not online"),
    (["--pids-limit", "x"], "expected an integer"),
    (["--cpu-shares", "2", "--cpu-weight", "3"], "not both"),
    (["--device-read-bps", "/dev/null:1m"], "not a block device"),
    (["--cgroup-parent", "../x"], "invalid --cgroup-parent"),
])
def test_bad_limits_are_refused_and_leave_nothing(ctr, args, msg):
    r = ctr("run", "--name", "bad", *args, "busybox", "true")
    assert r.returncode == 125
    assert r.stderr.startswith("ctr: error: ") and msg in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert not os.path.exists(ctr.path("instances", "bad"))


def test_a_limit_the_host_cannot_apply_fails_the_start_and_leaves_nothing(ctr):
    blkio = f"{CGROUP_ROOT}/blkio"
    if not os.path.isdir(blkio) or os.path.exists(f"{blkio}/blkio.weight"):
        pytest.skip("this host supports blkio.weight")
    r = ctr("run", "--name", "w", "--blkio-weight", "500", "busybox", "true")
    assert r.returncode == 125
    assert r.stderr == ("ctr: error: --blkio-weight is not supported by this host's kernel "
                        "(no blkio.weight)\n")
    assert not os.path.exists(ctr.path("instances", "w"))


def test_a_write_the_kernel_refuses_names_the_file_and_the_value(ctr):
    """A v1 cpuset must stay within its parent's: asking for CPU 1 under a parent
    that has only CPU 0 is refused by cgroupfs (EACCES). The user reads the
    option, the file and the value, and nothing is left."""
    cpuset = f"{CGROUP_ROOT}/cpuset"
    if not os.path.isdir(cpuset) or os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        pytest.skip("no v1 cpuset hierarchy (cgroup2 takes any cpuset.cpus and narrows it)")
    if not os.path.exists("/sys/devices/system/cpu/cpu1/topology"):
        pytest.skip("one CPU: there is no second one to ask for")
    parent = f"/ctr-narrow-{os.getpid()}"
    try:
        os.mkdir(cpuset + parent)
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(f"{cpuset}{parent}/{name}", "w") as f:
                f.write("0")
        r = ctr("run", "--name", "c", "--cgroup-parent", parent, "--cpuset-cpus", "1",
                "busybox", "true")
        assert r.returncode == 125
        assert re.fullmatch(rf"ctr: error: cannot set --cpuset-cpus: writing '1' to "
                            rf"{cpuset}{parent}/[0-9a-f]+/cpuset.cpus: Permission denied\n",
                            r.stderr), r.stderr
        assert not os.path.exists(ctr.path("instances", "c"))
        assert not [d for d in os.listdir(cpuset + parent)
                    if os.path.isdir(f"{cpuset}{parent}/{d}")]  # no instance folder left
    finally:
        remove_parent(parent)


def test_bad_verbs_on_limits(ctr):
    r = ctr("update", "nope", "--memory", "64m")
    assert r.returncode == 125 and "no such instance: nope" in r.stderr
    ctr("create", "--name", "c", "busybox", "true", check=True)
    r = ctr("update", "c")
    assert r.returncode == 125 and "nothing to update" in r.stderr
    r = ctr("update", "c", "--memory", "1k")
    assert r.returncode == 125 and "minimum is 6m" in r.stderr
    for verb, msg in (("pause", "not running"), ("unpause", "not paused")):
        r = ctr(verb, "c")
        assert r.returncode == 125 and msg in r.stderr, r.stderr
    r = ctr("stats", "--no-stream", "c")
    assert r.returncode == 125 and "not running" in r.stderr
