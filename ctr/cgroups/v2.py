"""The v2 backend: the host mounts only cgroup2 (current distributions). One
folder per instance, plain files; controllers are enabled in
cgroup.subtree_control of every folder along the path, as runc's fs2 does.
"""

import errno
import os
import signal
import time

from ctr.cgroups.common import (
    BaseCgroup,
    device_rules,
    host_memory,
    mkdir,
    read,
    read_keyed,
    write,
)
from ctr.errors import CgroupError

WANTED = ("cpu", "cpuset", "io", "memory", "pids")
FILES = {  # what a limit needs, for the error when the controller is missing
    "memory.max": "--memory", "memory.swap.max": "--memory-swap", "cpu.max": "--cpus",
    "cpu.weight": "--cpu-shares/--cpu-weight", "cpuset.cpus": "--cpuset-cpus",
    "pids.max": "--pids-limit", "io.weight": "--blkio-weight", "io.max": "--device-*-bps",
    "memory.low": "--memory-reservation",
}
HUGETLB = "hugetlb"  # enabled along the path only for an instance that limits hugepages


def shares_to_weight(shares):
    """v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000], runc's mapping."""
    return 1 + ((shares - 2) * 9999) // 262142


SUPERVISOR = "supervisor"


def _lineage():
    """This process and its ancestors, nearest first."""
    pid, out = os.getpid(), []
    while pid > 1:
        out.append(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def leave_for_supervisor(folder):
    """cgroup v2's no-internal-processes rule: a cgroup with processes of its own
    cannot enable controllers for its children. When ctr itself is what sits in
    `folder` (--cgroup-parent self: a systemd unit's delegated cgroup, whose main
    process is the foreground ctr), ctr moves into `folder`/supervisor, a leaf
    beside the instance's, as podman's --cgroups=split does: this process and
    those of its ancestors in `folder` (`run -d` creates the cgroup in the
    monitor it forked, while the `ctr` that started it still waits there).
    True if it moved."""
    op = "make room for the instance's controllers"
    procs = read(op, os.path.join(folder, "cgroup.procs"), "").split()
    ours = [pid for pid in _lineage() if str(pid) in procs]
    if not ours or ours[0] != os.getpid():
        return False
    leaf = os.path.join(folder, SUPERVISOR)
    mkdir(op, leaf)
    for pid in ours:
        try:
            write(op, os.path.join(leaf, "cgroup.procs"), pid)
        except CgroupError as err:
            if err.errno != errno.ESRCH:  # an ancestor that ended meanwhile
                raise
    return True


class V2Cgroup(BaseCgroup):
    version = 2
    wanted = WANTED

    @property
    def path(self):
        return next(iter(self.dirs.values()))

    def create(self, resources=None):
        if resources and resources.get("hugepage_limits"):
            self.wanted = (*WANTED, HUGETLB)
        return super().create(resources)

    def _delegate(self):
        """Let the instance's folder use the controllers we limit with: enable
        them in cgroup.subtree_control of every folder above it, from the top
        (each folder's cgroup.controllers says what the kernel offers there)."""
        chain = []
        p = os.path.dirname(self.path)
        while os.path.exists(os.path.join(p, "cgroup.controllers")):
            chain.append(p)
            if p == "/":
                break
            p = os.path.dirname(p)
        op = "delegate controllers"
        for folder in reversed(chain):
            offered = read(op, os.path.join(folder, "cgroup.controllers"), "").split()
            enabled = read(op, os.path.join(folder, "cgroup.subtree_control"), "").split()
            todo = [c for c in self.wanted if c in offered and c not in enabled]
            if not todo:
                continue
            control = os.path.join(folder, "cgroup.subtree_control")
            try:
                try:
                    write(op, control, " ".join("+" + c for c in todo))
                except CgroupError as err:
                    if err.errno != errno.EBUSY or not leave_for_supervisor(folder):
                        raise
                    write(op, control, " ".join("+" + c for c in todo))
            except CgroupError as err:
                if err.errno != errno.EBUSY:
                    raise
                raise CgroupError(f"{err} (a cgroup with processes of its own cannot "
                                  "delegate controllers to its children)", op=err.op,
                                  path=err.path, value=err.value, errno=err.errno) from err

    def _write(self, name, value, what=None):
        what = what or FILES.get(name, name)
        try:
            write(f"set {what}", os.path.join(self.path, name), value)
        except CgroupError as err:
            # a file cgroupfs does not have cannot be created: ENOENT or EACCES
            if err.errno in (errno.ENOENT, errno.EACCES) and not os.path.exists(
                    os.path.join(self.path, name)):
                raise CgroupError(f"{what} is not supported here: no {name} (controller "
                                  "not enabled for ctr's cgroup parent)", op=err.op,
                                  path=err.path, value=err.value, errno=err.errno) from err
            raise

    def apply(self, res):
        if "memory" in res:
            self._write("memory.max", res["memory"])
            swap = res.get("memory_swap", 2 * res["memory"])
            if "memory_swap" in res or os.path.exists(os.path.join(self.path, "memory.swap.max")):
                self._write("memory.swap.max", "max" if swap == -1 else swap - res["memory"])
        if "cpus" in res:
            self._write("cpu.max", f"{round(res['cpus'] * 100_000)} 100000")
        if "cpu_period" in res or "cpu_quota" in res:
            quota = res.get("cpu_quota", -1)
            self._write("cpu.max", f"{'max' if quota == -1 else quota} "
                                   f"{res.get('cpu_period', 100_000)}")
        if "memory_reservation" in res:
            self._write("memory.low", res["memory_reservation"])
        if "cpu_shares" in res or "cpu_weight" in res:
            self._write("cpu.weight",
                        res.get("cpu_weight") or shares_to_weight(res["cpu_shares"]))
        if "cpuset_cpus" in res:
            self._write("cpuset.cpus", res["cpuset_cpus"])
        if "pids_limit" in res:
            self._write("pids.max", "max" if res["pids_limit"] < 0 else res["pids_limit"])
        if "blkio_weight" in res:
            self._write("io.weight", f"default {res['blkio_weight']}")
        for dev, weight in res.get("blkio_weight_device", ()):
            self._write("io.weight", f"{dev} {weight}")
        rates = {}
        for key, field in (("device_read_bps", "rbps"), ("device_write_bps", "wbps"),
                           ("device_read_iops", "riops"), ("device_write_iops", "wiops")):
            for dev, rate in res.get(key, ()):
                rates.setdefault(dev, []).append(f"{field}={rate}")
        for dev, fields in sorted(rates.items()):
            self._write("io.max", f"{dev} {' '.join(fields)}")
        for size, limit in res.get("hugepage_limits", ()):
            self._write(f"hugetlb.{size}.max", limit, f"hugepageLimits {size}")
        for name, value in sorted((res.get("unified") or {}).items()):
            self._write(name, value, f"unified {name}")

    def restrict_devices(self, rules=None):
        """cgroup2 has no devices.allow: the rules become an eBPF program
        attached to the instance's folder (ctr.cgroups.devicefilter)."""
        from ctr.cgroups.devicefilter import attach

        attach(self.path, device_rules() if rules is None else rules)

    def freeze(self, missing_ok=False):
        if not os.path.exists(os.path.join(self.path, "cgroup.freeze")):
            if missing_ok:
                return False
            raise CgroupError("pausing needs cgroup.freeze (Linux 5.2 or later)")
        write("freeze", os.path.join(self.path, "cgroup.freeze"), 1)
        self._wait_for(self.frozen, "freezing the instance")
        return True

    def thaw(self):
        if os.path.exists(os.path.join(self.path, "cgroup.freeze")):
            write("thaw", os.path.join(self.path, "cgroup.freeze"), 0)
            self._wait_for(lambda: not self.frozen(), "thawing the instance")

    def frozen(self):
        # Read without a default: a cgroup that went away meanwhile (its instance
        # ended and the reaper removed it, while kill_all was freezing it) is an
        # ENOENT that kill_all stops at, not a freeze that never completes.
        events = read("read the freezer's state", os.path.join(self.path, "cgroup.events"))
        return "frozen 1" in events.splitlines()

    def kill_all(self, sig=None, timeout=5.0):
        if not self.dirs:
            return  # no hierarchy at all (a start refused before any folder was made)
        sig = signal.SIGKILL if sig is None else sig
        kill = os.path.join(self.path, "cgroup.kill")
        if sig != signal.SIGKILL or not os.path.exists(kill):
            super().kill_all(sig, timeout)  # freeze, signal each, thaw
            return
        # Linux 5.14: the kernel kills the whole subtree at once, forks in flight
        # included; then only wait until it is empty. No freezing: tasks that are
        # exiting never count as frozen, and the freeze would time out.
        deadline = time.monotonic() + timeout
        try:
            if self.pids():
                write("kill", kill, 1)
        except CgroupError as err:
            if err.errno in (errno.ENOENT, errno.ENODEV):
                return  # the instance ended and its reaper removed the cgroup meanwhile
            raise
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.005)

    def stats(self):
        p = self.path
        op = "read the stats"
        cpu = read_keyed(op, os.path.join(p, "cpu.stat"))
        mem_limit = read(op, os.path.join(p, "memory.max"), "max")
        pids_limit = read(op, os.path.join(p, "pids.max"), "max")
        out = {
            "cpu_usage_ns": cpu["usage_usec"] * 1000 if "usage_usec" in cpu else None,
            "memory_usage": None,
            "memory_limit": host_memory() if mem_limit == "max" else int(mem_limit),
            "pids": len(self.pids()),
            "pids_limit": None if pids_limit == "max" else int(pids_limit),
            "blkio_read": 0, "blkio_write": 0,
        }
        current = read(op, os.path.join(p, "memory.current"), "")
        if current:
            stat = read_keyed(op, os.path.join(p, "memory.stat"))
            out["memory_usage"] = max(0, int(current) - stat.get("inactive_file", 0))
        for line in read(op, os.path.join(p, "io.stat"), "").splitlines():
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key in ("rbytes", "wbytes"):
                    out["blkio_read" if key == "rbytes" else "blkio_write"] += int(value)
        return out

    def oom_kills(self):
        return read_keyed("count the OOM kills",
                          os.path.join(self.path, "memory.events")).get("oom_kill", 0)
