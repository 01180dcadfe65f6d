"""The v1 backend: one folder per mounted hierarchy (memory, cpu, cpuacct, cpuset,
pids, blkio, freezer, devices, ...), plus the cgroup2 folder on hybrid hosts.

Limits and counters go through cgroupspy's controllers where it has one
(memory, cpu, cpuacct, cpuset, blkio); pids and freezer, which cgroupspy does
not model, are plain files. cgroupspy is imported only when limits are applied
or counters read, never on a plain `ctr run`.
"""

import contextlib
import functools
import os

from ctr.cgroups.common import (
    BaseCgroup,
    device_rules,
    host_memory,
    read,
    read_keyed,
    write,
)
from ctr.errors import CgroupError

UNLIMITED = 9223372036854771712  # what memory.limit_in_bytes reads when unset (page-aligned)


class _Node:
    """What cgroupspy's controllers need of a tree node: its path. (cgroupspy's
    own Node walks and types the whole tree and imports logging: 20 ms here.)"""

    def __init__(self, path):
        self.full_path = path.encode()


@functools.cache
def _through_boundary(cls):
    """cgroupspy's controller `cls`, its file access going through read() and
    write() like every other, for the operation its `op` names."""

    class Controller(cls):
        op = "use the cgroup"

        def get_property(self, filename):
            return read(self.op, os.fsdecode(self.filepath(filename)))

        def set_property(self, filename, value):
            write(self.op, os.fsdecode(self.filepath(filename)), value)

    Controller.__name__ = cls.__name__
    return Controller


def copy_cpuset(parent_dir, child_dir):
    # A new v1 cpuset cgroup has no cpus and no mems: tasks cannot join it. A
    # parent another ctr has just made may not be filled yet either: fill it
    # first (the hierarchy's root always has both).
    op = "fill the new cpuset"
    for name in ("cpuset.cpus", "cpuset.mems"):
        if read(op, os.path.join(child_dir, name), "").strip():
            continue
        value = read(op, os.path.join(parent_dir, name), "").strip()
        if not value:
            copy_cpuset(os.path.dirname(parent_dir), parent_dir)
            value = read(op, os.path.join(parent_dir, name)).strip()
        write(op, os.path.join(child_dir, name), value)


@contextlib.contextmanager
def _limit(what):
    """Setting the user's option `what`. A file cgroupfs does not have cannot be
    created (ENOENT or EACCES): the host's kernel lacks that limit, and the
    error says so. Any other refusal speaks for itself."""
    try:
        yield
    except CgroupError as err:
        if err.path and not os.path.exists(err.path):
            raise CgroupError(f"{what} is not supported by this host's kernel "
                              f"(no {os.path.basename(err.path)})", op=err.op, path=err.path,
                              value=err.value, errno=err.errno) from err
        raise


class V1Cgroup(BaseCgroup):
    version = 1

    def _prepare(self, path, ctrls):
        if "cpuset" in ctrls:
            copy_cpuset(os.path.dirname(path), path)

    def view(self, readonly=True):
        """On a v1 or hybrid host, a tmpfs with each hierarchy's folder of the
        instance bound at its name (cpu,cpuacct; unified for the cgroup2 one),
        and a link from each controller of a combined hierarchy to it (cpu ->
        cpu,cpuacct), as runc makes it: memory/memory.limit_in_bytes is the
        container's own limit."""
        binds, links = [], []
        for ctrls, path in sorted(self.dirs.items()):
            name = ",".join(ctrls)
            binds.append((name, path))
            if len(ctrls) > 1:
                links += [(c, name) for c in ctrls]
        return {"binds": binds, "links": links, "readonly": readonly}

    def _controller(self, name, op):
        from cgroupspy import controllers

        path = self.dir_of(name)
        if path is None:
            raise CgroupError(f"the {name} cgroup controller is not mounted on this host")
        cls = {
            "memory": controllers.MemoryController,
            "cpu": controllers.CpuController,
            "cpuacct": controllers.CpuAcctController,
            "cpuset": controllers.CpuSetController,
            "blkio": controllers.BlkIOController,
        }.get(name, controllers.Controller)
        controller = _through_boundary(cls)(_Node(path))
        controller.op = op
        return controller

    def restrict_devices(self, rules=None):
        path = self.dir_of("devices")
        if path is None:
            return  # no devices hierarchy: the minimal /dev is the only guard
        op = "set the device rules"
        write(op, os.path.join(path, "devices.deny"), "a")
        for allow, rule in device_rules() if rules is None else rules:
            write(op, os.path.join(path, "devices.allow" if allow else "devices.deny"), rule)

    # -- limits -------------------------------------------------------------------

    def apply(self, res):
        if "memory" in res:
            self._apply_memory(res["memory"], res.get("memory_swap", 2 * res["memory"]),
                               explicit_swap="memory_swap" in res)
        if "cpus" in res:
            self._set("--cpus", "cpu", "cfs_period_us", 100_000)
            self._set("--cpus", "cpu", "cfs_quota_us", round(res["cpus"] * 100_000))
        if "cpu_period" in res or "cpu_quota" in res:
            # the period first: the quota is checked against it (-1: unlimited)
            self._set_file("--cpu-period", "cpu", "cpu.cfs_period_us",
                           res.get("cpu_period", 100_000))
            self._set_file("--cpu-quota", "cpu", "cpu.cfs_quota_us", res.get("cpu_quota", -1))
        if "memory_reservation" in res:
            self._set_file("--memory-reservation", "memory", "memory.soft_limit_in_bytes",
                           res["memory_reservation"])
        if "cpu_shares" in res or "cpu_weight" in res:
            shares = res.get("cpu_shares") or weight_to_shares(res["cpu_weight"])
            self._set("--cpu-shares", "cpu", "shares", shares)
        if "cpuset_cpus" in res:
            cpus = {int(c) for c in res["cpuset_cpus"].split(",")}
            self._set("--cpuset-cpus", "cpuset", "cpus", cpus)
        if "pids_limit" in res:
            n = res["pids_limit"]
            self._set_file("--pids-limit", "pids", "pids.max", "max" if n < 0 else n)
        if "blkio_weight" in res:
            self._set("--blkio-weight", "blkio", "weight", res["blkio_weight"])
        for key, name in (("device_read_bps", "read"), ("device_write_bps", "write")):
            for dev, rate in res.get(key, ()):
                # cgroupspy's write_bps interface names its file with a trailing
                # space, so both directions are written by file name.
                self._set_file(f"--device-{name}-bps", "blkio",
                               f"blkio.throttle.{name}_bps_device", f"{dev} {rate}")
        for key, name in (("device_read_iops", "read"), ("device_write_iops", "write")):
            for dev, rate in res.get(key, ()):
                self._set_file(f"blockIO.throttle{name.title()}IOPSDevice", "blkio",
                               f"blkio.throttle.{name}_iops_device", f"{dev} {rate}")
        for dev, weight in res.get("blkio_weight_device", ()):
            self._set_file("blockIO.weightDevice", "blkio", "blkio.weight_device",
                           f"{dev} {weight}")
        if "memory_swappiness" in res:
            self._set_file("memory.swappiness", "memory", "memory.swappiness",
                           res["memory_swappiness"])
        if res.get("hugepage_limits"):
            if self.dir_of("hugetlb") is None:
                raise CgroupError("hugepageLimits: this host has no hugetlb cgroup hierarchy "
                                  "(cgroup v1)")
            for size, limit in res["hugepage_limits"]:
                self._set_file(f"hugepageLimits {size}", "hugetlb",
                               f"hugetlb.{size}.limit_in_bytes", limit)
        if res.get("unified"):
            raise CgroupError("unified: cgroup v2 files cannot be set on this host, which "
                              "mounts cgroup v1 (hybrid)")

    def _set(self, what, ctrl, attr, value):
        """A limit through cgroupspy's controller `ctrl`, for the user's option `what`."""
        controller = self._controller(ctrl, f"set {what}")
        with _limit(what):
            setattr(controller, attr, value)

    def _set_file(self, what, ctrl, name, value):
        """A limit cgroupspy does not model, written by file name."""
        path = self.dir_of(ctrl)
        if path is None:
            raise CgroupError(f"{what} needs the {ctrl} cgroup controller, not mounted here")
        with _limit(what):
            write(f"set {what}", os.path.join(path, name), value)

    def _apply_memory(self, memory, memsw, explicit_swap):
        mem = self._controller("memory", "set --memory")  # refused here if not mounted
        if not os.path.exists(os.path.join(self.dir_of("memory"), "memory.memsw.limit_in_bytes")):
            if explicit_swap:
                raise CgroupError("--memory-swap is not supported by this host's kernel "
                                  "(no swap accounting: memory.memsw.limit_in_bytes)")
            self._set("--memory", "memory", "limit_in_bytes", memory)
            return
        memsw = None if memsw == -1 else memsw
        # The kernel insists on memory <= memory+swap at every step: raise the
        # larger one first.
        current = mem.memsw_limit_in_bytes or UNLIMITED
        if memory > current:
            self._set("--memory-swap", "memory", "memsw_limit_in_bytes", memsw)
            self._set("--memory", "memory", "limit_in_bytes", memory)
        else:
            self._set("--memory", "memory", "limit_in_bytes", memory)
            self._set("--memory-swap", "memory", "memsw_limit_in_bytes", memsw)

    # -- freezer ------------------------------------------------------------------

    def _freezer(self, missing_ok):
        path = self.dir_of("freezer")
        if path is None:
            if missing_ok:
                return None
            raise CgroupError("pausing needs the freezer cgroup controller, not mounted here")
        return os.path.join(path, "freezer.state")

    def freeze(self, missing_ok=False):
        state = self._freezer(missing_ok)
        if state is None:
            return False
        write("freeze", state, "FROZEN")
        self._wait_for(lambda: read("freeze", state) == "FROZEN", "freezing the instance")
        return True

    def thaw(self):
        state = self._freezer(missing_ok=True)
        if state is not None:
            write("thaw", state, "THAWED")
            self._wait_for(lambda: read("thaw", state) == "THAWED", "thawing the instance")

    # -- counters -----------------------------------------------------------------

    def stats(self):
        out = {"cpu_usage_ns": None, "memory_usage": None, "memory_limit": None,
               "pids": len(self.pids()), "pids_limit": None, "blkio_read": 0, "blkio_write": 0}
        op = "read the stats"
        if self.dir_of("cpuacct"):
            out["cpu_usage_ns"] = self._controller("cpuacct", op).usage
        if self.dir_of("memory"):
            mem = self._controller("memory", op)
            stat = mem.stat
            # As docker does: page cache the kernel can drop is not "used".
            out["memory_usage"] = max(0, mem.usage_in_bytes - stat.get("total_inactive_file", 0))
            limit = mem.limit_in_bytes
            out["memory_limit"] = min(limit or UNLIMITED, host_memory())
        if self.dir_of("pids"):
            limit = read(op, os.path.join(self.dir_of("pids"), "pids.max"), "max")
            out["pids_limit"] = None if limit == "max" else int(limit)
        if self.dir_of("blkio"):
            text = read(op, os.path.join(self.dir_of("blkio"),
                                         "blkio.throttle.io_service_bytes_recursive"), "")
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in ("Read", "Write"):
                    out["blkio_" + parts[1].lower()] += int(parts[2])
        return out

    def oom_kills(self):
        path = self.dir_of("memory")
        if path is None:
            return 0
        return read_keyed("count the OOM kills",
                          os.path.join(path, "memory.oom_control")).get("oom_kill", 0)


def weight_to_shares(weight):
    """cgroup v2 cpu.weight [1, 10000] -> v1 cpu.shares [2, 262144] (runc's mapping, inverted)."""
    return 2 + ((weight - 1) * 262142) // 9999
