"""One Cgroup interface over the hosts users have, two backends:

- v2 (ctr.cgroups.v2): the host mounts only cgroup2; one folder, plain files.
- v1 (ctr.cgroups.v1): v1 and hybrid hosts; one folder per mounted v1 hierarchy
  (limits through cgroupspy's controllers), plus a folder in the cgroup2 mount
  (/sys/fs/cgroup/unified) when there is one, so that systemd inside a
  container has a cgroup2 view of its own.

The backend is picked by what the host mounts, read once from
/proc/self/mountinfo. Instance cgroups live under a parent (default /ctr at the
root of each hierarchy, like docker's /docker); "self" nests under the cgroup
ctr runs in. The interface: create, apply(resources), add, pids, freeze, thaw,
kill_all, stats, oom_kills, destroy.
"""

import errno
import os
import signal
import time

from ctr.errors import CtrError

# ctr's own folder at each hierarchy's root (docker: /docker). CTR_CGROUP_PARENT
# names another one: a test session uses its own, apart from any other on the host.
DEFAULT_PARENT = "/" + (os.environ.get("CTR_CGROUP_PARENT") or "ctr").strip("/")
if "/" in DEFAULT_PARENT[1:] or DEFAULT_PARENT in ("/", "/.", "/.."):
    raise CtrError(f"CTR_CGROUP_PARENT must be one folder name, not {DEFAULT_PARENT!r}")


def hierarchies(mountinfo="/proc/self/mountinfo"):
    """[(mountpoint, controllers)] for every visible cgroup mount; controllers is
    ("unified",) for cgroup2. A mountpoint covered by a later mount (a tmpfs over
    /sys/fs/cgroup/unified, say) is not a cgroup any more: the last mount wins."""
    top = {}
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, options = right.split()[:3]
            top[left.split()[4]] = (fstype, options)
    found = []
    seen = set()
    for mountpoint, (fstype, options) in top.items():
        if fstype == "cgroup2":
            ctrls = ("unified",)
        elif fstype == "cgroup":
            ctrls = tuple(sorted(
                o for o in options.split(",")
                if o not in ("rw", "ro", "relatime", "noexec", "nosuid", "nodev",
                             "clone_children", "noprefix", "xattr")
                and not o.startswith("release_agent")))
        else:
            continue
        if ctrls in seen or any(c.startswith("name=") for c in ctrls):
            # the same hierarchy twice, or a named one (name=systemd) that controls
            # nothing and belongs to the host's init
            continue
        seen.add(ctrls)
        found.append((mountpoint, ctrls))
    return found


def self_path(ctrls):
    """The cgroup ctr runs in, in the hierarchy with these controllers."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if ctrls == ("unified",) and names == "":
                return path
            if names and tuple(sorted(names.split(","))) == ctrls:
                return path
    return "/"


def write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as err:
        # ENODEV: a cgroup removed between the open and the read
        if default is None or err.errno not in (errno.ENOENT, errno.ENODEV):
            raise
        return default


def read_keyed(path):
    """'key value' lines (memory.stat, cpu.stat, memory.events) -> {key: int}."""
    out = {}
    for line in read(path, "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def read_kib(path, key):
    """A "Key:  N kB" line of /proc/meminfo or /proc/PID/status, in bytes; 0
    when the file or the key is not there (a process that ended)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def host_memory():
    return read_kib("/proc/meminfo", "MemTotal")


# The devices a container may use, like runc's and docker's defaults: mknod of
# anything (the node is useless without access), the /dev ctr makes, and
# /dev/net/tun. Each is "type major:minor access" as the v1 devices cgroup reads.
DEFAULT_DEVICES = (
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null zero full (u)random
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",  # tty console ptmx pts
    "c 10:200 rwm",  # net/tun
)


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
        try:
            for ctrls, path in self.dirs.items():
                self._mkdir_chain(path, ctrls)
            self._delegate()
            if resources:
                self.apply(resources)
        except OSError as err:
            self.destroy()
            raise CtrError(f"creating cgroup {err.filename}: {err.strerror}") from err
        except CtrError:
            self.destroy()
            raise
        return self

    def _prepare(self, path, ctrls):
        """Called for each folder ctr creates, parents first."""

    def restrict_devices(self, rules=None):
        """Deny every device but `rules` (done before any task joins). Backends
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
                    try:
                        os.mkdir(d, 0o755)
                    except FileExistsError:
                        pass
                    self._prepare(d, ctrls)
                return
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise

    def add(self, pid, init_pid=None):
        """Move a process (0: the caller) into every hierarchy's folder.

        `init_pid`, for `ctr exec`: on cgroup2 a folder whose children have
        controllers enabled takes no process (EBUSY), which is what an init in
        the container (systemd) makes of the container's folder on a
        cgroup2-only host: the process joins the init's own cgroup instead, as
        runc does."""
        for ctrls, path in self.dirs.items():
            try:
                write(os.path.join(path, "cgroup.procs"), pid)
            except OSError as err:
                if err.errno == errno.EBUSY and init_pid and ctrls == ("unified",):
                    alt = _cgroup_of(init_pid, path)
                    if alt and alt != path:
                        try:
                            write(os.path.join(alt, "cgroup.procs"), pid)
                            continue
                        except OSError:
                            pass
                raise CtrError(
                    f"adding process {pid} to cgroup {path}: {err.strerror}") from err

    def pids(self):
        """Every process of the instance, also those in cgroups an init inside
        made beneath its own."""
        for path in self.dirs.values():
            try:
                pids = [int(x) for x in read(os.path.join(path, "cgroup.procs")).split()]
            except OSError as err:
                # ENODEV: the cgroup was removed while open (its reaper cleaned up)
                if err.errno not in (errno.ENOENT, errno.ENODEV):
                    raise
                continue
            for sub in _subdirs(path):
                pids += [int(x) for x in read(os.path.join(sub, "cgroup.procs"), "").split()]
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
            except OSError as err:
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
                raise CtrError(f"timed out {what}")
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
                    os.rmdir(os.path.dirname(path))
                except OSError:
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
        with open(f"{proc}/{pid}/cgroup") as f:
            rel = next((line[3:].strip() for line in f if line.startswith("0::")), None)
    except OSError:
        return None
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
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CtrError(f"removing cgroup {path}: {err.strerror}") from err
            time.sleep(0.005)


def _backend(found):
    if any(ctrls != ("unified",) for _, ctrls in found):
        from ctr.cgroups.v1 import V1Cgroup

        return V1Cgroup
    from ctr.cgroups.v2 import V2Cgroup

    return V2Cgroup


def Cgroup(parent, leaf, found=None):  # noqa: N802 - a factory standing in for a class
    """The cgroup of instance `leaf` under `parent` (None: /ctr; "self": beneath
    the cgroup ctr runs in), on the backend this host calls for."""
    found = hierarchies() if found is None else found
    parent = parent or DEFAULT_PARENT
    dirs = {}
    for mountpoint, ctrls in found:
        base = self_path(ctrls) if parent == "self" else ""
        rel = parent if parent != "self" else ""
        dirs[ctrls] = os.path.normpath(f"{mountpoint}/{base}/{rel}/{leaf}")
    return _backend(found)(dirs, default_parent=parent == DEFAULT_PARENT)


def at(paths, found=None):
    """The cgroup recorded in an instance's state (its folders, one per hierarchy)."""
    found = hierarchies() if found is None else found
    dirs = {}
    for mountpoint, ctrls in found:
        for p in paths:
            if p.startswith(mountpoint.rstrip("/") + "/"):
                dirs[ctrls] = p
    default = all(os.path.basename(os.path.dirname(p)) == DEFAULT_PARENT.strip("/")
                  and os.path.dirname(os.path.dirname(p)) in [m for m, _ in found]
                  for p in dirs.values())
    return _backend(found)(dirs, default_parent=default)
