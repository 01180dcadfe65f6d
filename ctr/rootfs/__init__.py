"""The container's root filesystem, assembled inside its own mount namespace.

Everything here runs in the container's init before pivot_root, so every mount
lives and dies with the container's mount namespace: nothing can be left on the
host, even after kill -9. `sc` is the syscall seam (ctr.native.Syscalls or a
recording fake in unit tests).
"""

import errno
import os
import stat

from ctr.native import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_UNBINDABLE,
)

# An OCI mount's propagation options (and linux.rootfsPropagation) as mount(2) flags.
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}

# runc's defaults (libcontainer/specconv/example.go).
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# name, major, minor: the nodes every container gets (mode 0666).
DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
)


def _join(root, path):
    return root + path


def mount_overlay(sc, lower, upper, work, target, userns=False):
    """`lower`: the lowerdirs, colon-joined; or (folder, lowerdirs relative to it)
    when an image's many layers would not fit in one page of mount options
    (the kernel resolves relative lowerdirs from the working directory)."""
    if not isinstance(lower, str):
        base, lower = lower
        sc.chdir(base)
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    # In a user namespace overlayfs may not use trusted.* xattrs for its
    # whiteouts and opaque dirs: user.* ones instead.
    sc.mount("overlay", target, "overlay", 0, opts + (",userxattr" if userns else ""))


def open_pty(sc, dev="/dev"):
    """A pty of the devpts mounted at DEV/pts: (master fd, slave path)."""
    master, number = sc.open_pty(f"{dev}/pts/ptmx")
    return master, f"{dev}/pts/{number}"


DEFAULT_SHM_SIZE = 64 << 20  # docker's


def mount_dev(sc, root, tty=False, userns=False, shm_size=None, shm_source=None):
    """A minimal /dev on tmpfs: device nodes, devpts, shm, mqueue, links, console.

    With `tty`, a pty is opened in the container's own devpts (so `tty` inside
    says /dev/pts/0) and becomes /dev/console; returns (master fd, slave path).
    /dev/shm is a tmpfs of `shm_size` bytes (--shm-size; 64m), or `shm_source`:
    a path bound (--ipc host: the host's /dev/shm), or the fd of a detached
    mount attached (--ipc container:NAME: a copy of NAME's).
    """
    dev = _join(root, "/dev")
    sc.makedirs(dev)
    sc.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        path = f"{dev}/{name}"
        if userns:  # no mknod in a user namespace: the host's node, bound
            sc.touch(path)
            sc.mount(f"/dev/{name}", path, None, MS_BIND)
            continue
        sc.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        sc.chmod(path, 0o666)  # mknod is subject to the umask
    sc.makedirs(f"{dev}/pts")
    sc.mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5")
    sc.makedirs(f"{dev}/shm")
    if isinstance(shm_source, int):
        sc.attach_tree(shm_source, f"{dev}/shm")
    elif shm_source:
        sc.mount(shm_source, f"{dev}/shm", None, MS_BIND | MS_REC)
    else:
        sc.mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 f"mode=1777,size={(shm_size or DEFAULT_SHM_SIZE) >> 10}k")
    sc.makedirs(f"{dev}/mqueue")
    sc.mount("mqueue", f"{dev}/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for target, name in DEV_LINKS:
        sc.symlink(target, f"{dev}/{name}")
    # /dev/console is the container's terminal with -t; otherwise /dev/null, so a
    # program that logs to the console neither fails nor reaches the host's console.
    pty = open_pty(sc, dev) if tty else None
    sc.touch(f"{dev}/console")
    sc.mount(pty[1] if pty else f"{dev}/null", f"{dev}/console", None, MS_BIND)
    return pty


def add_devices(sc, root, devices, userns=False):
    """--device (and a bundle's linux.devices): each node made at its place in
    the container's /dev, with its mode and owner (what the device controller
    allows of it: ctr.cgroups). In a user namespace, where mknod is refused,
    the host's node is bound."""
    for d in devices:
        path = _join(root, d["target"])
        sc.makedirs(os.path.dirname(path))
        if userns:  # over one of ctr's own (itself bound there): bound over it
            if not sc.exists(path):
                sc.touch(path)
            sc.mount(d["source"], path, None, MS_BIND)
            continue
        if sc.exists(path):
            sc.unlink(path)  # over one of ctr's own: the user's wins
        kind = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d["type"]]
        sc.mknod(path, kind | d["mode"], os.makedev(d["major"], d["minor"]))
        sc.chmod(path, d["mode"])  # mknod is subject to the umask
        sc.chown(path, d["uid"], d["gid"])


def mask_paths(sc, root, masked=MASKED_PATHS, readonly=READONLY_PATHS):
    null = _join(root, "/dev/null")
    for path in masked:
        target = _join(root, path)
        if not sc.exists(target):
            continue
        if sc.isdir(target):
            sc.mount("tmpfs", target, "tmpfs", MS_RDONLY, None)
        else:
            sc.mount(null, target, None, MS_BIND)
    for path in readonly:
        readonly_path(sc, root, path)


def bind_files(sc, root, binds):
    """Bind host files (the instance's /etc/hosts, /etc/resolv.conf,
    /etc/hostname) over the image's. The folder must resolve inside the root: an
    image whose /etc is a symlink out of it is refused, and a symlink at the file
    itself is replaced, never followed."""
    for source, target in binds:
        path = _join(root, target)
        folder = os.path.dirname(path)
        sc.makedirs(folder)
        real = sc.realpath(folder)
        if real != root and not real.startswith(root + "/"):
            raise OSError(errno.EXDEV, f"{os.path.dirname(target)} leads out of the "
                          "image's root", target)
        sc.plain_file(path)
        sc.mount(source, path, None, MS_BIND)


def resolve_in_root(sc, root, path):
    """The host path of `path` as the container will see it: symlinks are
    resolved as if `root` were /, so none can lead out of it ("securejoin")."""
    parts = [p for p in path.split("/") if p]
    current = ""
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = current.rsplit("/", 1)[0]
            continue
        candidate = f"{current}/{part}"
        target = sc.readlink(root + candidate)
        if target is None:
            current = candidate
            continue
        links += 1
        if links > 40:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
        if target.startswith("/"):
            current = ""
        parts = [p for p in target.split("/") if p] + parts
    return root + current if current else root


def _mount_point(sc, root, target, is_dir):
    path = resolve_in_root(sc, root, target)
    if is_dir:
        sc.makedirs(path)
    else:
        sc.makedirs(os.path.dirname(path))
        if not sc.exists(path):
            sc.touch(path)
    return path


# Where no image volume may be (nor lead to through its symlinks): the kernel's own.
KERNEL_FILESYSTEMS = ("/proc", "/sys", "/dev")


def mount_volumes(sc, root, volumes):
    """-v SRC:DST[:ro]: host paths bound at their place inside the root. An
    anonymous volume (the image's) is seeded first, on its first start, with
    what the image has there, and a named one while it is empty, unless
    nocopy (ctr.rootfs.volumes)."""
    for vol in volumes:
        if vol.get("anonymous") or (vol.get("name") and not vol.get("nocopy")):
            from ctr.rootfs.volumes import seed, seed_named

            source = resolve_in_root(sc, root, vol["target"])
            inside = source[len(root):] or "/"
            in_kernel = any(inside == k or inside.startswith(k + "/")
                            for k in KERNEL_FILESYSTEMS)
            if vol.get("anonymous"):
                if in_kernel:
                    raise OSError(errno.EPERM, f"the image's volume {vol['target']} leads "
                                  f"to {inside}: refused", vol["target"])
                seed(source, vol["source"])
            elif not in_kernel:
                try:
                    seed_named(source, vol["source"])
                except PermissionError:
                    raise OSError(errno.EACCES, f"the volume {vol['name']} belongs to ids "
                                  "this instance's user namespace does not map: it cannot "
                                  "be seeded (use nocopy, or a volume of its own)",
                                  vol["target"]) from None
        path = _mount_point(sc, root, vol["target"], sc.isdir(vol["source"]))
        sc.mount(vol["source"], path, None, MS_BIND | MS_REC)
        flags = MS_RDONLY if vol.get("readonly") else 0
        for f in vol.get("flags") or ():
            flags |= TMPFS_FLAG_BITS[f]
        if flags:
            sc.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_REC | flags)
        set_propagation(sc, path, vol.get("propagation"))


def set_propagation(sc, path, names):
    """A mount's propagation options (rslave, shared...), in order."""
    for name in names or ():
        sc.mount(None, path, None, PROPAGATION[name])


TMPFS_FLAG_BITS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV,
                   "noexec": MS_NOEXEC}


def mount_tmpfs(sc, root, mounts):
    """Each tmpfs at its place; with `copyup` (an OCI bundle's tmpcopyup),
    what the folder held beneath is copied into it, as runc does."""
    for m in mounts:
        path = _mount_point(sc, root, m["path"], True)
        flags = 0
        for f in m.get("flags", ()):
            flags |= TMPFS_FLAG_BITS.get(f, 0)
        if m.get("copyup"):
            # the folder beneath, still reachable through an fd once covered
            below = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                sc.mount("tmpfs", path, "tmpfs", flags & ~MS_RDONLY, m.get("data") or None)
                sc.copy_tree(below, path)
            finally:
                os.close(below)
            if flags & MS_RDONLY:
                sc.mount(None, path, None, MS_REMOUNT | MS_RDONLY | (flags & ~MS_RDONLY))
        else:
            sc.mount("tmpfs", path, "tmpfs", flags, m.get("data") or None)
        set_propagation(sc, path, m.get("propagation"))


CGROUP_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC
INIT_CGROUP_VIEW = {"cgroup2": True, "readonly": False}


def mount_cgroup_view(sc, root, view):
    """The container's own cgroup at /sys/fs/cgroup, as `view` says
    (ctr.cgroups' view()): {"cgroup2": True} mounts cgroup2 there, inside the
    container's cgroup namespace, so its root is the container's cgroup;
    {"binds": [(name, host folder)], "links": [(name, target)]} (v1 and
    hybrid hosts) makes a tmpfs with each hierarchy's folder of the
    container bound at its name. "readonly": every part of it read-only, so
    a write there fails with EROFS.

    An init (INIT_CGROUP_VIEW) gets a writable cgroup2 view, on a cgroup2-only
    host and on a hybrid one alike (there the container's folder in the host's
    cgroup2 mount): systemd finds cgroup2 and runs in unified mode, so it never
    mounts, nor creates anything in, the host's v1 hierarchies (the caller
    checked that the container has a cgroup2 folder of its own)."""
    path = _join(root, "/sys/fs/cgroup")
    ro = MS_RDONLY if view["readonly"] else 0
    sc.makedirs(path)
    if view.get("cgroup2"):
        sc.mount("cgroup2", path, "cgroup2", CGROUP_FLAGS | ro, None)
        return
    sc.mount("tmpfs", path, "tmpfs", CGROUP_FLAGS, "mode=755,size=64k")
    for name, source in view["binds"]:
        target = f"{path}/{name}"
        sc.makedirs(target)
        sc.mount(source, target, None, MS_BIND)
        if ro:
            sc.mount(None, target, None, MS_BIND | MS_REMOUNT | CGROUP_FLAGS | ro)
    for name, target in view["links"]:
        sc.symlink(target, f"{path}/{name}")
    if ro:
        sc.mount(None, path, None, MS_BIND | MS_REMOUNT | CGROUP_FLAGS | ro)


# What lxcfs serves in place of the kernel's host-wide figures, bound over
# them as Incus and LXC do: free, top, uptime and nproc read these.
LXCFS_ROOT = "/var/lib/lxcfs"
LXCFS_FILES = ("/proc/cpuinfo", "/proc/diskstats", "/proc/loadavg", "/proc/meminfo",
               "/proc/stat", "/proc/swaps", "/proc/uptime", "/sys/devices/system/cpu/online")


def lxcfs_root(environ=os.environ):
    """Where a running lxcfs serves its files (CTR_LXCFS_ROOT, default
    /var/lib/lxcfs), or None when it does not run there. One stat: an lxcfs
    that is not mounted leaves an empty folder (ENOENT), a dead one a mount
    that answers ENOTCONN."""
    path = (environ.get("CTR_LXCFS_ROOT") or LXCFS_ROOT).rstrip("/") or "/"
    try:
        st = os.stat(path + "/proc/meminfo")
    except OSError:
        return None
    return path if stat.S_ISREG(st.st_mode) else None


def bind_lxcfs(sc, root, lxcfs):
    """lxcfs's files over the kernel's, each one that both have (an older
    lxcfs lacks some)."""
    for path in LXCFS_FILES:
        target = _join(root, path)
        if not sc.exists(target):
            continue
        try:
            sc.mount(lxcfs + path, target, None, MS_BIND)
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise


BOOT_ID = "/proc/sys/kernel/random/boot_id"


def new_boot_id():
    """A random (version 4) UUID, as the kernel's boot_id reads."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}\n"


def bind_boot_id(sc, root):
    """A boot id of the container's own over the host's (systemd's journal and
    `systemctl` tell boots apart by it), the way systemd-nspawn does it: a file
    on the container's /run tmpfs, bound read-only, then unlinked."""
    target = _join(root, BOOT_ID)
    if not sc.exists(target):
        return
    source = _join(root, "/run/.ctr-boot-id")
    sc.write_file(source, new_boot_id())
    try:
        sc.mount(source, target, None, MS_BIND)
        sc.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
                 | MS_NOEXEC)
    finally:
        sc.unlink(source)


def readonly_path(sc, root, path):
    target = _join(root, path)
    if not sc.exists(target):
        return
    sc.mount(target, target, None, MS_BIND | MS_REC)
    sc.mount(None, target, None,
             MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def host_devices(sc, root):
    """--privileged: the host's device nodes too (docker's behaviour)."""
    dev = _join(root, "/dev")
    for name, mode, rdev in sc.host_devices():
        if not sc.exists(f"{dev}/{name}"):
            sc.mknod(f"{dev}/{name}", mode, rdev)


def prepare(sc, *, lower, upper, work, root, tty=False, binds=(), volumes=(), tmpfs=(),
            read_only=False, privileged=False, userns=False, init=False,
            masked=MASKED_PATHS, readonly=READONLY_PATHS, cgroup_view=None, lxcfs=None,
            shm_size=None, shm_source=None, devices=(), root_propagation=None,
            idmapped=()):
    """Build the container's tree at `root` (a folder on the host, seen from the
    container's own mount namespace). Returns mount_dev's pty, if any. `init`:
    what an init system needs besides (its cgroup view, a boot id, /proc/sys
    read-only even with --privileged, lest it apply the image's sysctl.d files
    to the host). `lower` None: `root` is used as it is, bound onto itself
    (an OCI bundle's root, which its caller owns), not an overlay. `masked`,
    `readonly`: the paths masked and made read-only (a bundle names its own).
    `cgroup_view`: what /sys/fs/cgroup shows (mount_cgroup_view; None: nothing,
    INIT_CGROUP_VIEW with `init`); `lxcfs`: where lxcfs's files are, if they
    are to be bound over /proc's (bind_lxcfs); `shm_size`, `shm_source`:
    /dev/shm's (see mount_dev); `devices`: --device's. `root_propagation`: an
    OCI bundle's (PROPAGATION's names) for every mount the container starts
    with (ctr's own: rprivate); see finish_propagation for after the pivot.
    `idmapped`: [(fd, folder)] of detached mounts (--userns=auto's idmapped
    layers) attached at their folders before the overlay, whose lowerdirs they
    are: in this mount namespace only, so they go with it."""
    sc.mount(None, "/", None, PROPAGATION[root_propagation or "rprivate"])
    for fd, folder in idmapped:
        sc.attach_tree(fd, folder)
        sc.close(fd)
    if lower is None:
        if root_propagation not in (None, "rprivate"):
            # The mount the root lies on must not be shared: pivot_root refuses
            # it, and the mounts made inside the root would reach the host.
            sc.mount(None, sc.mount_point(root), None, MS_PRIVATE)
        sc.mount(root, root, None, MS_BIND | MS_REC)
    else:
        mount_overlay(sc, lower, upper, work, root, userns)
    proc = _join(root, "/proc")
    sc.makedirs(proc)
    sc.mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    sys_ = _join(root, "/sys")
    sc.makedirs(sys_)
    sc.mount("sysfs", sys_, "sysfs",
             (0 if privileged else MS_RDONLY) | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if init:
        cgroup_view = INIT_CGROUP_VIEW
    if cgroup_view is not None:
        mount_cgroup_view(sc, root, cgroup_view)
    if lxcfs:
        bind_lxcfs(sc, root, lxcfs)
    pty = mount_dev(sc, root, tty, userns, shm_size, shm_source)
    if privileged:
        host_devices(sc, root)
        if init:
            readonly_path(sc, root, "/proc/sys")
    else:
        mask_paths(sc, root, masked, readonly)
    if devices:
        add_devices(sc, root, devices, userns)
    bind_files(sc, root, binds)
    # Volumes and tmpfs parents first (docker sorts mounts the same way): a -v
    # below a --tmpfs, or below --read-only's /run and /tmp, lands on the tmpfs
    # instead of being hidden by it. Equal depths keep volumes first.
    mounts = [(v["target"], mount_volumes, v) for v in volumes]
    mounts += [(m["path"], mount_tmpfs, m) for m in tmpfs]
    for _, mount, m in sorted(mounts, key=lambda e: e[0].rstrip("/").count("/")):
        mount(sc, root, [m])
    if init:
        bind_boot_id(sc, root)
    if read_only:
        sc.mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    return pty


def finish_propagation(sc, root_propagation):
    """After the pivot, an OCI bundle's linux.rootfsPropagation (shared or
    slave) applied to the container's root, as runc does; private it already is."""
    if root_propagation and "private" not in root_propagation:
        sc.mount(None, "/", None, PROPAGATION[root_propagation])


def pivot(sc, root):
    """pivot_root into `root` and detach the old root, the way runc does it:
    with new and old root the same folder, no put_old directory is needed."""
    sc.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", MNT_DETACH)
    sc.chdir("/")
