"""What both backends share: the one way in and out of cgroupfs, the host's
cgroup mounts, and the folder handling every backend does the same way
(BaseCgroup). The backends import from here; nothing here imports a backend.

Every read and write of a cgroup file, and every cgroup folder made or removed,
goes through read(), write(), mkdir() or rmdir() below: an OSError becomes a
CgroupError there, once, naming the operation, the file and the value ("cannot
freeze: writing 'FROZEN' to .../freezer.state: Device or resource busy"), with
the kernel's errno kept for the callers that retry on EBUSY or ENOENT.
"""

import errno
import os
import signal
import time

from ctr.errors import CgroupError
from ctr.revert import Reverter

# -- the boundary -----------------------------------------------------------------


def _error(op, doing, path, err, value=None):
    return CgroupError(f"cannot {op}: {doing}: {err.strerror or err}", op=op,
                       path=os.fsdecode(path), value=value, errno=err.errno or 0)


def read(op, path, default=None):
    """The stripped text of a cgroup (or /proc) file. With a `default`, a file
    that is not there (ENOENT; ENODEV: a cgroup removed between the open and the
    read) reads as the default."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as err:
        if default is not None and err.errno in (errno.ENOENT, errno.ENODEV):
            return default
        raise _error(op, f"reading {os.fsdecode(path)}", path, err) from err


def write(op, path, value):
    """Write `value` (as text) to a cgroup file, for operation `op`."""
    value = str(value)
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as err:
        raise _error(op, f"writing {value!r} to {os.fsdecode(path)}", path, err,
                     value) from err


def mkdir(op, path):
    """Make one cgroup folder; one that is already there will do."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except OSError as err:
        raise _error(op, f"creating {path}", path, err) from err


def rmdir(op, path):
    """Remove one cgroup folder; one already gone is fine."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise _error(op, f"removing {path}", path, err) from err


def read_keyed(op, path):
    """'key value' lines (memory.stat, cpu.stat, memory.events) -> {key: int}."""
    out = {}
    for line in read(op, path, "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def read_kib(path, key):
    """A "Key:  N kB" line of /proc/meminfo or /proc/PID/status, in bytes; 0
    when the file or the key is not there (a process that ended)."""
    try:
        text = read(f"read {key}", path)
    except CgroupError:
        return 0
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            try:
                return int(line.split()[1]) * 1024
            except (ValueError, IndexError):
                return 0
    return 0


def host_memory():
    return read_kib("/proc/meminfo", "MemTotal")


# -- the host's hierarchies -------------------------------------------------------


def hierarchies(mountinfo="/proc/self/mountinfo"):
    """[(mountpoint, controllers)] for every visible cgroup mount; controllers is
    ("unified",) for cgroup2. A mountpoint covered by a later mount, there or
    above it (a tmpfs over /sys/fs/cgroup/unified, or a cgroup2 mounted over
    /sys/fs/cgroup in a private mount namespace) is not a cgroup any more: the
    last mount wins."""
    top = {}
    last = {}  # mountpoint -> index of the last mount there
    for i, line in enumerate(read("find the cgroup mounts", mountinfo).splitlines()):
        left, _, right = line.partition(" - ")
        fstype, _source, options = right.split()[:3]
        mountpoint = left.split()[4]
        last[mountpoint] = i
        if fstype in ("cgroup", "cgroup2"):
            top[mountpoint] = (i, fstype, options)
    found = []
    seen = set()
    for mountpoint, (i, fstype, options) in top.items():
        if _covered(mountpoint, i, last):
            continue
        if fstype == "cgroup2":
            ctrls = ("unified",)
        else:
            ctrls = tuple(sorted(
                o for o in options.split(",")
                if o not in ("rw", "ro", "relatime", "noexec", "nosuid", "nodev",
                             "clone_children", "noprefix", "xattr")
                and not o.startswith("release_agent")))
        if ctrls in seen or any(c.startswith("name=") for c in ctrls):
            # the same hierarchy twice, or a named one (name=systemd) that controls
            # nothing and belongs to the host's init
            continue
        seen.add(ctrls)
        found.append((mountpoint, ctrls))
    return found


def _covered(mountpoint, index, last):
    """Whether a mount made after `index` hides `mountpoint` (there or above)."""
    path = mountpoint
    while True:
        if last.get(path, -1) > index:
            return True
        if path == "/":
            return False
        path = os.path.dirname(path)


def self_path(ctrls):
    """The cgroup ctr runs in, in the hierarchy with these controllers."""
    for line in read("find ctr's own cgroup", "/proc/self/cgroup").splitlines():
        _, names, path = line.split(":", 2)
        if ctrls == ("unified",) and names == "":
            return path
        if names and tuple(sorted(names.split(","))) == ctrls:
            return path
    return "/"


# The devices a container may use, like runc's and docker's defaults: mknod of
# anything (the node is useless without access), the /dev ctr makes, and
# /dev/net/tun. Each is "type major:minor access" as the v1 devices cgroup reads.
DEFAULT_DEVICES = (
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null zero full (u)random
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",  # tty console ptmx pts
    "c 10:200 rwm",  # net/tun
)


def device_rules(devices=(), rules=None):
    """A container's device controller rules, in order from "deny all", as
    (allow, "type major:minor access") pairs: `rules` (an OCI bundle's, the
    same pairs) then DEFAULT_DEVICES, as runc appends its own; without
    `rules`, DEFAULT_DEVICES and each of `devices` (--device's {type, major,
    minor, access}) with its access."""
    if rules is None:
        rules = [(True, f"{d['type']} {d['major']}:{d['minor']} {d['access']}")
                 for d in devices]
    return [*rules, *((True, r) for r in DEFAULT_DEVICES)]


# -- the folders ------------------------------------------------------------------


class BaseCgroup:
    """An instance's cgroup: one folder per hierarchy (a single one on v2).
    Backends add the controller files: apply, freeze/thaw, stats, oom_kills."""

    version = None

    def __init__(self, dirs, default_parent=False):
        self.dirs = dirs  # controllers -> folder
        self.default_parent = default_parent

    @property
    def paths(self):
        return sorted(self.dirs.values())

    def dir_of(self, controller):
        for ctrls, path in self.dirs.items():
            if controller in ctrls:
                return path
        return None

    def create(self, resources=None):
        """Make the folders and apply the limits; on any failure nothing is left."""
        with Reverter() as revert:
            revert.add(self.destroy)
            for ctrls, path in self.dirs.items():
                self._mkdir_chain(path, ctrls)
            self._delegate()
            if resources:
                self.apply(resources)
            revert.success()
        return self

    def _prepare(self, path, ctrls):
        """Called for each folder ctr creates, parents first."""

    def view(self, readonly=True):
        """What the container is shown at /sys/fs/cgroup (ctr.rootfs.mount_cgroup_view),
        as docker and podman show it: on a cgroup2-only host, cgroup2 mounted
        in its cgroup namespace (so rooted at its own folder)."""
        return {"cgroup2": True, "readonly": readonly}

    def restrict_devices(self, rules=None):
        """Deny every device, then apply `rules` in order (device_rules();
        None: device_rules() with no more), before any task joins. Backends
        without a device controller rely on the container's minimal /dev."""

    def _delegate(self):
        """Called once the folders exist, before the limits are applied."""

    def _mkdir_chain(self, path, ctrls, attempts=5):
        """mkdir -p, preparing each new folder. Another ctr may remove an empty
        parent between our check and our mkdir (destroy does): then start over."""
        for attempt in range(attempts):
            missing = []
            p = path
            while not os.path.isdir(p):
                missing.append(p)
                p = os.path.dirname(p)
            try:
                for d in reversed(missing):
                    mkdir("create the cgroup", d)
                    self._prepare(d, ctrls)
                return
            except CgroupError as err:
                if err.errno != errno.ENOENT or attempt == attempts - 1:
                    raise

    def add(self, pid, init_pid=None, skip=()):
        """Move a process (0: the caller) into every hierarchy's folder but
        those of the controllers in `skip` (where it already is).

        `init_pid`, for `ctr exec`: on cgroup2 a folder whose children have
        controllers enabled takes no process (EBUSY), which is what an init in
        the container (systemd) makes of the container's folder on a
        cgroup2-only host: the process joins the init's own cgroup instead, as
        runc does."""
        op = f"add process {pid} to the cgroup"
        for ctrls, path in self.dirs.items():
            if ctrls in skip:
                continue
            try:
                write(op, os.path.join(path, "cgroup.procs"), pid)
            except CgroupError as err:
                if err.errno == errno.EBUSY and init_pid and ctrls == ("unified",):
                    alt = _cgroup_of(init_pid, path)
                    if alt and alt != path:
                        try:
                            write(op, os.path.join(alt, "cgroup.procs"), pid)
                            continue
                        except CgroupError:
                            pass
                raise

    def v1_controllers(self):
        """The controllers of the folders in cgroup v1 hierarchies."""
        return {ctrls for ctrls in self.dirs if ctrls != ("unified",)}

    def join_self(self):
        """Move the calling process, single-threaded, into its folder of every
        v1 hierarchy, by the tasks file and "0": a thread that moves itself is
        not waited for as a process another moves is (cgroup.procs waits for an
        RCU grace period, ~10 ms here). The cgroup2 folder is the caller's to
        join (a clone made into it, or add())."""
        op = f"add process {os.getpid()} to the cgroup"
        for ctrls, path in self.dirs.items():
            if ctrls != ("unified",):
                write(op, os.path.join(path, "tasks"), 0)

    def pids(self):
        """Every process of the instance, also those in cgroups an init inside
        made beneath its own."""
        op = "list the instance's processes"
        for path in self.dirs.values():
            try:
                pids = [int(x) for x in read(op, os.path.join(path, "cgroup.procs")).split()]
            except CgroupError as err:
                # ENODEV: the cgroup was removed while open (its reaper cleaned up)
                if err.errno not in (errno.ENOENT, errno.ENODEV):
                    raise
                continue
            for sub in _subdirs(path):
                pids += [int(x) for x in read(op, os.path.join(sub, "cgroup.procs"), "").split()]
            return pids
        return []

    def exists(self):
        return any(os.path.isdir(p) for p in self.dirs.values())

    def kill_all(self, sig=signal.SIGKILL, timeout=5.0):
        """Signal every process in the cgroup, also those that left the instance's
        init by double forking: freeze, signal each, thaw, so none can fork
        away in between. With SIGKILL, wait until the cgroup is empty."""
        deadline = time.monotonic() + timeout
        while self.pids():
            try:
                self._signal_frozen(sig)
            except CgroupError as err:
                if err.errno in (errno.ENOENT, errno.ENODEV):
                    return  # the instance ended and its reaper removed the cgroup meanwhile
                raise
            if sig != signal.SIGKILL or time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def _signal_frozen(self, sig):
        frozen = self.freeze(missing_ok=True)
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def _wait_for(self, check, what, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise CgroupError(f"timed out {what}")
            time.sleep(0.002)

    def destroy(self, timeout=2.0):
        """Remove the folders. A folder whose last task is still exiting is busy
        for a moment: retry until the timeout. The default parent goes too when
        this was its last instance, so the host is left as ctr found it; a
        parent the user named is left, as docker leaves it."""
        deadline = time.monotonic() + timeout
        for path in self.dirs.values():
            # An init in the container (ctr run --init) made cgroups of its own
            # beneath: they go first, deepest first.
            for sub in _subdirs(path):
                _rmdir(sub, deadline)
            _rmdir(path, deadline)
            if self.default_parent:
                try:
                    rmdir("remove the cgroup parent", os.path.dirname(path))
                except CgroupError:
                    pass  # other instances still live there

    # -- per backend --------------------------------------------------------------

    def apply(self, resources):
        raise NotImplementedError

    def freeze(self, missing_ok=False):
        raise NotImplementedError

    def thaw(self):
        raise NotImplementedError

    def stats(self):
        raise NotImplementedError

    def oom_kills(self):
        raise NotImplementedError


def _cgroup_of(pid, inside, proc="/proc", found=None):
    """The cgroup2 folder process `pid` sits in, if it lies beneath `inside`
    (the instance's own folder): None otherwise."""
    try:
        text = read(f"find the cgroup of process {pid}", f"{proc}/{pid}/cgroup")
    except CgroupError:
        return None
    rel = next((line[3:].strip() for line in text.splitlines() if line.startswith("0::")),
               None)
    if not rel:
        return None
    for mountpoint, ctrls in hierarchies() if found is None else found:
        if ctrls == ("unified",):
            path = os.path.normpath(f"{mountpoint}/{rel}")
            if path.startswith(inside.rstrip("/") + "/"):
                return path
    return None


def _subdirs(path):
    """The cgroups beneath `path`, deepest first."""
    out = []
    for dirpath, dirnames, _ in os.walk(path, topdown=False):
        out += [os.path.join(dirpath, d) for d in dirnames]
    return out


def _rmdir(path, deadline):
    """Remove one cgroup; one whose last task is still exiting is busy for a
    moment: retry until the deadline."""
    while True:
        try:
            rmdir("remove the cgroup", path)
            return
        except CgroupError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
