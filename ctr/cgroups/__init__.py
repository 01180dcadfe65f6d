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

Imports go one way: this package picks a backend; the backends build on
ctr.cgroups.common (the file access every read and write goes through, the
host's mounts, BaseCgroup), which imports neither.
"""

import os

from ctr.cgroups.common import hierarchies, host_memory, read_kib, self_path
from ctr.errors import CtrError

__all__ = ["DEFAULT_PARENT", "Cgroup", "at", "hierarchies", "host_memory", "read_kib"]

# ctr's own folder at each hierarchy's root (docker: /docker). CTR_CGROUP_PARENT
# names another one: a test session uses its own, apart from any other on the host.
DEFAULT_PARENT = "/" + (os.environ.get("CTR_CGROUP_PARENT") or "ctr").strip("/")
if "/" in DEFAULT_PARENT[1:] or DEFAULT_PARENT in ("/", "/.", "/.."):
    raise CtrError(f"CTR_CGROUP_PARENT must be one folder name, not {DEFAULT_PARENT!r}")


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
