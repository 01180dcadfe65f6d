"""The syscall seam.

`SYSCALLS` is the real implementation; the container-side setup code takes a
`Syscalls` object as a parameter, so unit tests can pass a recording fake and
check what would be mounted without root (see tests/unit/test_rootfs.py).

A failed mount or umount raises MountError (runc's mountError): an OSError
with the kernel's errno whose message names the source, the target, the
filesystem type and the flags, translated here, once, for every caller.
"""

import os

from ctr.native import _native
from ctr.native._native import (  # noqa: F401  (re-exported constants)
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
)

# mount(2)'s propagation flags (linux/mount.h), beside MS_PRIVATE from the helper
MS_UNBINDABLE = 1 << 17
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# linux/prctl.h, for prctl_set
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 1, 4, 8, 38

clone = _native.clone
unshare = _native.unshare
setns = _native.setns
setfsids = _native.setfsids
cap_ambient_clear = _native.cap_ambient_clear
cap_ambient_raise = _native.cap_ambient_raise

MS_FLAG_NAMES = (  # mount(2)'s flags, as errors name them
    (MS_RDONLY, "MS_RDONLY"), (MS_NOSUID, "MS_NOSUID"), (MS_NODEV, "MS_NODEV"),
    (MS_NOEXEC, "MS_NOEXEC"), (MS_REMOUNT, "MS_REMOUNT"), (MS_BIND, "MS_BIND"),
    (MS_REC, "MS_REC"), (MS_PRIVATE, "MS_PRIVATE"), (MS_STRICTATIME, "MS_STRICTATIME"),
    (MS_SLAVE, "MS_SLAVE"), (MS_SHARED, "MS_SHARED"), (MS_UNBINDABLE, "MS_UNBINDABLE"),
)
MNT_FLAG_NAMES = ((MNT_DETACH, "MNT_DETACH"),)  # umount2(2)'s
OPEN_TREE_CLONE = 1
OPEN_TREE_FLAG_NAMES = ((OPEN_TREE_CLONE, "OPEN_TREE_CLONE"),)  # open_tree(2)'s
MOUNT_ATTR_NAMES = ((0x1, "MOUNT_ATTR_RDONLY"), (0x100000, "MOUNT_ATTR_IDMAP"))
IDMAP_ATTRS = 0x100001  # what idmap_tree sets


def flag_names(flags, names=MS_FLAG_NAMES):
    """MS_BIND|MS_REC for the bits named in `names`, the rest in hex; 0 for none."""
    out = []
    for bit, name in names:
        if flags & bit:
            out.append(name)
            flags &= ~bit
    if flags:
        out.append(hex(flags))
    return "|".join(out) or "0"


class MountError(OSError):
    """A mount(2) or umount2(2) the kernel refused: an OSError with its errno,
    whose message names the operation, source, target, fstype, flags and data.
    The message is also its `strerror` (and there is no `filename`), so every
    reader of an OSError shows all of it: the init's report to the parent
    sends "step: strerror"."""

    def __init__(self, op, err, *, target, source=None, fstype=None, flags=0, data=None,
                 names=MS_FLAG_NAMES):
        self.op = op
        self.source = source
        self.target = target
        self.fstype = fstype
        self.flags = flags
        self.data = data
        fields = [f"{key}={value!r}" for key, value in (
            ("source", source), ("target", target), ("fstype", fstype)) if value is not None]
        fields.append(f"flags={flag_names(flags, names)}")
        if data:
            fields.append(f"data={data!r}")
        super().__init__(err.errno, f"{op} {' '.join(fields)}: {err.strerror or err}")

    def __str__(self):
        return self.strerror

EXEC_STUB = os.path.join(os.path.dirname(__file__), "ctr-exec")


def sealed_exec_stub():
    """ctr-exec (execstub.c) copied into a memfd sealed against any change: the
    program a container's process is exec'd through, so that its
    /proc/self/exe is never a host file (CVE-2019-5736). Close-on-exec."""
    import fcntl

    fd = os.memfd_create("ctr-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        with open(EXEC_STUB, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            while size > 0:
                size -= os.sendfile(fd, f.fileno(), None, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Syscalls:
    """The operations the container's init sequence performs on the kernel."""

    def mount(self, source, target, fstype, flags=0, data=None):
        try:
            _native.mount(source, target, fstype, flags, data)
        except OSError as err:
            raise MountError("mount", err, source=source, target=target, fstype=fstype,
                             flags=flags, data=data) from err

    def umount2(self, target, flags=0):
        try:
            _native.umount2(target, flags)
        except OSError as err:
            raise MountError("umount2", err, target=target, flags=flags,
                             names=MNT_FLAG_NAMES) from err

    def attach_tree(self, fd, target):
        """Attach a detached mount (clone_tree's fd) at target."""
        try:
            _native.attach_tree(fd, target)
        except OSError as err:
            raise MountError("move_mount", err, source=f"fd {fd}", target=target) from err

    def idmapped_tree(self, path, userns_fd):
        """A detached, read-only copy of the folder `path`, idmapped with the
        maps of the user namespace `userns_fd` (an fd, close-on-exec)."""
        try:
            fd = _native.clone_tree(path)
        except OSError as err:
            raise MountError("open_tree", err, target=path, flags=OPEN_TREE_CLONE,
                             names=OPEN_TREE_FLAG_NAMES) from err
        try:
            _native.idmap_tree(fd, userns_fd)
        except OSError as err:
            os.close(fd)
            raise MountError("mount_setattr", err, target=path, flags=IDMAP_ATTRS,
                             names=MOUNT_ATTR_NAMES) from err
        return fd

    def userns_fd(self, uid_map, gid_map):
        """The fd of a new user namespace with these maps (lines of /proc's
        uid_map and gid_map), held by nothing else."""
        return _native.userns_fd(uid_map, gid_map)

    def close(self, fd):
        os.close(fd)

    def pivot_root(self, new_root, put_old):
        _native.pivot_root(new_root, put_old)

    def mknod(self, path, mode, device):
        os.mknod(path, mode, device)

    def symlink(self, target, path):
        os.symlink(target, path)

    def makedirs(self, path, mode=0o755):
        os.makedirs(path, mode, exist_ok=True)

    def touch(self, path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))

    def write_file(self, path, text, mode=0o444):
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def unlink(self, path):
        os.unlink(path)

    def plain_file(self, path):
        """Make `path` a regular file; a symlink there is removed, never followed."""
        if os.path.islink(path):
            os.unlink(path)
        self.touch(path)

    def realpath(self, path):
        return os.path.realpath(path)

    def readlink(self, path):
        """The target of a symlink at `path`, None if there is none."""
        try:
            return os.readlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            if err.errno == 22:  # EINVAL: not a symlink
                return None
            raise

    def host_devices(self):
        """(name, mode, rdev) of the character and block devices in /dev."""
        import stat

        out = []
        with os.scandir("/dev") as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    out.append((e.name, st.st_mode, st.st_rdev))
        return out

    def exists(self, path):
        return os.path.lexists(path)

    def isdir(self, path):
        return os.path.isdir(path)

    def chdir(self, path):
        os.chdir(path)

    def chmod(self, path, mode):
        os.chmod(path, mode)

    def chown(self, path, uid, gid):
        os.chown(path, uid, gid)

    def mount_point(self, path):
        """The mount point of the mount `path` lies on (the longest mount point
        of /proc/self/mountinfo that contains it)."""
        path = os.path.realpath(path)
        best = "/"
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(
                        point) > len(best):
                    best = point
        return best

    def copy_tree(self, source_fd, dest):
        """What the folder open at `source_fd` holds, copied into `dest` as cp -a
        would (modes, owners, times, links as links, device nodes and fifos
        made again); symlinks are never followed."""
        import shutil
        import stat

        src = f"/proc/self/fd/{source_fd}"
        for dirpath, dirnames, filenames in os.walk(src):
            rel = os.path.relpath(dirpath, src)
            out = os.path.normpath(os.path.join(dest, rel))
            for name in dirnames + filenames:
                s, d = os.path.join(dirpath, name), os.path.join(out, name)
                st = os.lstat(s)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(s), d)
                elif stat.S_ISDIR(st.st_mode):
                    os.mkdir(d, 0o700)
                elif stat.S_ISREG(st.st_mode):
                    shutil.copyfile(s, d, follow_symlinks=False)
                else:
                    os.mknod(d, st.st_mode, st.st_rdev)
                os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(d, stat.S_IMODE(st.st_mode))
                os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            dirnames[:] = [n for n in dirnames if not os.path.islink(os.path.join(dirpath, n))]
        st = os.fstat(source_fd)
        os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, stat.S_IMODE(st.st_mode))

    def open_pty(self, ptmx):
        return _native.open_pty(ptmx)

    def sethostname(self, name):
        _native.sethostname(name)


SYSCALLS = Syscalls()
