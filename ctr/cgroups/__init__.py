"""One Cgroup interface over the hosts users have.

- v2 (unified): one folder under /sys/fs/cgroup.
- v1 and hybrid: one folder per mounted v1 hierarchy, plus the cgroup2 mount
  (/sys/fs/cgroup/unified) when there is one, so cgroup.kill and friends work
  there too.

The hierarchies are read once from /proc/self/mountinfo. Instance cgroups live
under a parent (default /ctr at the root of each hierarchy, like docker's
/docker); "self" nests under the cgroup ctr runs in.
"""

import errno
import os
import time

from ctr.errors import CtrError

DEFAULT_PARENT = "/ctr"


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


def _self_path(ctrls):
    """The cgroup ctr runs in, in the hierarchy with these controllers."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if ctrls == ("unified",) and names == "":
                return path
            if names and tuple(sorted(names.split(","))) == ctrls:
                return path
    return "/"


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def _copy_cpuset(parent_dir, child_dir):
    # A new v1 cpuset cgroup has no cpus and no mems: tasks cannot join it.
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(child_dir, name)) as f:
            if f.read().strip():
                continue
        with open(os.path.join(parent_dir, name)) as f:
            _write(os.path.join(child_dir, name), f.read().strip())


class Cgroup:
    """An instance's cgroup: one folder per hierarchy."""

    def __init__(self, parent, leaf):
        self.parent = parent or DEFAULT_PARENT
        self.leaf = leaf
        self.dirs = {}  # controllers -> folder
        for mountpoint, ctrls in hierarchies():
            base = _self_path(ctrls) if self.parent == "self" else ""
            rel = self.parent if self.parent != "self" else ""
            path = os.path.normpath(f"{mountpoint}/{base}/{rel}/{leaf}")
            self.dirs[ctrls] = path

    @property
    def paths(self):
        return sorted(self.dirs.values())

    def create(self):
        try:
            for ctrls, path in self.dirs.items():
                self._mkdir_chain(path, cpuset="cpuset" in ctrls)
        except OSError as err:
            self.destroy()
            raise CtrError(f"creating cgroup {err.filename}: {err.strerror}") from err
        return self

    @staticmethod
    def _mkdir_chain(path, cpuset, attempts=5):
        """mkdir -p, copying cpuset settings down. Another ctr may remove an empty
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
                    if cpuset:
                        _copy_cpuset(os.path.dirname(d), d)
                return
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise

    def add(self, pid):
        """Move a process (0: the caller) into every hierarchy's folder."""
        for path in self.dirs.values():
            try:
                _write(os.path.join(path, "cgroup.procs"), str(pid))
            except OSError as err:
                raise CtrError(
                    f"adding process {pid} to cgroup {path}: {err.strerror}") from err

    def pids(self):
        for path in self.dirs.values():
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
                    return [int(x) for x in f.read().split()]
            except FileNotFoundError:
                continue
        return []

    def destroy(self, timeout=2.0):
        """Remove the folders. A folder whose last task is still exiting is busy
        for a moment: retry until the timeout. The default parent goes too when
        this was its last instance, so the host is left as ctr found it."""
        deadline = time.monotonic() + timeout
        for path in self.dirs.values():
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CtrError(f"removing cgroup {path}: {err.strerror}") from err
                    time.sleep(0.005)
            if self.parent == DEFAULT_PARENT:
                try:
                    os.rmdir(os.path.dirname(path))
                except OSError:
                    pass  # other instances still live there
