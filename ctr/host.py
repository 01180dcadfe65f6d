"""What a spec's checks need to know of this machine (ctr.spec reads nothing
itself): whoever makes or changes a spec (the CLI's run and create,
Instances.update) makes a HostFacts and passes it in.

Each fact is read the first time a check asks for it and then kept: most runs
ask for none (no --cpus, no VM), so a start reads nothing it does not need.
Tests and other front ends may pin the CPUs and the memory instead:
`HostFacts(cpus_online=(0, 1), memory=8 << 30)`.
"""

import functools
import os

CPUS_ONLINE = "/sys/devices/system/cpu/online"


class HostFacts:
    """The host as ctr.spec sees it (the protocol is ctr.spec.model.Host)."""

    def __init__(self, *, cpus_online=None, memory=None):
        if cpus_online is not None:
            self.__dict__["cpus_online"] = tuple(cpus_online)
        if memory is not None:
            self.__dict__["memory"] = memory

    def __setattr__(self, name, value):
        raise AttributeError(f"HostFacts is read-only: cannot set {name}")

    @functools.cached_property
    def cpus_online(self):
        """The numbers of the CPUs online."""
        from ctr.spec.parse import cpu_list

        with open(CPUS_ONLINE) as f:
            return tuple(cpu_list(f.read().strip()))

    @functools.cached_property
    def memory(self):
        """Bytes of RAM; None when unknown."""
        from ctr.cgroups import host_memory

        return host_memory() or None

    @staticmethod
    def block_device(path):
        """"MAJOR:MINOR" of the block device at `path`, None when it is not one;
        OSError when there is nothing there."""
        import stat

        st = os.stat(path)
        if not stat.S_ISBLK(st.st_mode):
            return None
        return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"

    @staticmethod
    def device(path):
        """The device node at `path` (symlinks followed, as docker's --device):
        {type: "c"|"b", major, minor, mode (permission bits), uid, gid}; None
        when it is not a device; OSError when there is nothing there."""
        import stat

        st = os.stat(path)
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            return None
        return {"type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}

    @staticmethod
    def seccomp_profile(path):
        """A docker-format profile read from a file and checked; ValueError
        (seccomp.ProfileError) says what is wrong."""
        from ctr import seccomp

        return seccomp.load_file(path)

    @staticmethod
    def has_init(rootfs, path):
        """Whether `path`, resolved inside the image's root (its symlinks as the
        container will see them), is an executable file."""
        from ctr.native import SYSCALLS
        from ctr.rootfs import resolve_in_root

        found = resolve_in_root(SYSCALLS, rootfs, path)
        return os.path.isfile(found) and os.access(found, os.X_OK)
