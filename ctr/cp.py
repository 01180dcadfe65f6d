"""`ctr cp`: files between an instance's root and the host, or a tar stream.

The instance's side is worked by a child process chrooted into the instance's
root, as docker's chrootarchive does, so every path there, symlinks included,
resolves inside that root and never out of it:
    running    the root of its process (/proc/PID/root; a VM's overlay in
               QEMU's mount namespace): what the instance sees, volumes included
    stopped    its overlay and volumes, mounted in a mount namespace of the
               child's own (gone with it: nothing is left on the host), under
               the instance's lock (a start waits)
The child imports nothing once chrooted (an instance's files are never run or
loaded: no NSS lookup, no Python module) and resolves no user or group name.

Both sides speak tar: the reading side packs (ctr.cp.pack), the writing side
unpacks (ctr.cp.unpack) below one directory it opened, each member created
through directory fds with O_NOFOLLOW, so no symlink in the tree (nor one
swapped in meanwhile) is followed. Where the copy lands is docker's rule
(`plan`): into an existing directory under the source's name; over an existing
file; a new file or folder named as the destination; `SRC/.` copies a folder's
content; a folder over a file is refused.

Ownership: into an instance the files belong to its root unless -a (archive:
the source's ids kept, a `-` stream's too); out of it to the caller unless -a;
a `-` stream out carries the instance's ids. Device nodes are copied into instances, never out onto
the host, and files that become the caller's lose setuid and setgid (GNU cp's rule).
"""

import errno
import json
import os
import signal
import stat
import sys
import tarfile

from ctr.errors import Conflict, CtrError, InvalidSpec

CHUNK = 1 << 16
KERNEL_DIRS = ("/proc", "/sys")


class CopyError(CtrError):
    """A copy refused or failed (the message is docker's where it has one)."""


# -- arguments ----------------------------------------------------------------------------

def split_arg(arg):
    """(instance, path) for NAME:PATH; (None, arg) for a host path or '-'.
    As docker: a path starting with / or . is the host's, colons and all."""
    if arg == "-" or arg.startswith(("/", ".")):
        return None, arg
    name, sep, path = arg.partition(":")
    if not sep or not name:
        return None, arg
    return name, path


# -- the plan: where a copy lands (docker's table) -----------------------------------------

def source_info(path, follow):
    """What `pack` tells the writing side: the source's kind and whether only its
    content goes (SRC/.)."""
    contents = path.endswith("/.") or path == "."
    try:
        st = os.stat(path) if follow or path.endswith("/") or contents else os.lstat(path)
    except FileNotFoundError:
        raise CopyError(f"could not find the file {path}") from None
    except NotADirectoryError:
        raise CopyError(f"{path}: not a directory") from None
    isdir = stat.S_ISDIR(st.st_mode)
    if path.endswith("/") and not isdir:
        raise CopyError(f"{path}: not a directory")
    return {"dir": isdir, "contents": contents and isdir}


def plan(src, dst):
    """(folder to unpack into, new name of the archive's top entry or None).
    `src`: source_info; `dst`: the destination path on the writing side. For
    SRC/. the archive has no top entry (its members are the content)."""
    try:
        st = os.stat(dst)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise CopyError(f"{dst}: a component of the path is not a directory") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        return dst, None
    if st is not None:
        if src["dir"]:
            raise CopyError(f"cannot copy a directory to a file: {dst}")
        if dst.endswith("/"):
            raise CopyError(f"{dst}: not a directory")
    elif dst.endswith(("/", "/.")) and not src["dir"]:
        raise CopyError(f"the destination directory {dst} does not exist")
    parent, name = os.path.split(dst.rstrip("/").removesuffix("/.") or "/")
    parent = parent or "."
    if not os.path.isdir(parent):
        raise CopyError(f"the destination directory {parent} does not exist")
    if src["contents"]:  # SRC/. to a new folder: made, the content goes in
        os.mkdir(dst, 0o755)
        return dst, None
    return parent, name


# -- pack ---------------------------------------------------------------------------------

class _Exactly:
    """A file's bytes, exactly `size` of them (a file that shrinks while it is
    read is padded with zeros, one that grows cut), as a tar header promised."""

    def __init__(self, fd, size):
        self.fd, self.left = fd, size

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        data = os.read(self.fd, n) or b"\0" * n
        self.left -= len(data)
        return data


def _info(path, arcname, st, shift, inodes):
    ti = tarfile.TarInfo(arcname)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = max(st.st_uid - shift, 0), max(st.st_gid - shift, 0)
    ti.mtime = st.st_mtime
    ti.uname = ti.gname = ""  # never a name lookup: see the module's doc
    mode = st.st_mode
    if stat.S_ISREG(mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in inodes:
        ti.type, ti.linkname = tarfile.LNKTYPE, inodes[(st.st_dev, st.st_ino)]
    elif stat.S_ISREG(mode):
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
        if st.st_nlink > 1:
            inodes[(st.st_dev, st.st_ino)] = arcname
    elif stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        return None  # a socket: nothing to copy
    return ti


def _add(tar, path, arcname, st, shift, inodes):
    ti = _info(path, arcname, st, shift, inodes)
    if ti is None:
        return
    if ti.type != tarfile.REGTYPE:
        tar.addfile(ti)
        return
    # O_NONBLOCK: a file swapped for a FIFO meanwhile does not hang the copy
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CopyError(f"{path} changed while it was copied")
        tar.addfile(ti, _Exactly(fd, ti.size))
    finally:
        os.close(fd)


def pack(path, out, info, follow=False, shift=0):
    """Write a tar of `path` to the binary file `out`: its top entry named as
    the source (its content only for SRC/.; `info` is source_info's).
    Symlinks are archived as links; with `follow`, the source itself is
    followed if it is one. Ids are less `shift` (an instance's id base)."""
    tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    inodes = {}
    top = os.path.normpath(path)
    name = os.path.basename(top) or "root"
    if follow or info["contents"] or path.endswith("/"):
        top = os.path.realpath(top)  # the link followed (inside the root, chrooted)
    st = os.lstat(top)
    if info["contents"]:
        stack = [(top, "")]
    else:
        _add(tar, top, name, st, shift, inodes)
        stack = [(top, name)] if stat.S_ISDIR(st.st_mode) else []
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            items = sorted((e.name, e.path, e.stat(follow_symlinks=False)) for e in entries)
        for name, full, est in items:
            arcname = f"{prefix}/{name}" if prefix else name
            _add(tar, full, arcname, est, shift, inodes)
            if stat.S_ISDIR(est.st_mode):
                stack.append((full, arcname))
    tar.close()


# -- unpack -------------------------------------------------------------------------------

def _parts(name):
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CopyError(f"refused: the archive's member {name!r} leads out of the destination")
    return parts


def _open_dir(dirfd, name):
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=dirfd)


def _parent_fd(top, parts, make=True):
    """An fd of the folder holding parts[-1] below `top`, folders made as
    needed (`make`); never through a symlink (ELOOP, refused)."""
    fd = os.dup(top)
    try:
        for part in parts[:-1]:
            try:
                nxt = _open_dir(fd, part)
            except FileNotFoundError:
                if not make:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = _open_dir(fd, part)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise CopyError(f"refused: {'/'.join(parts[:-1])} is not a folder "
                                    "(a symlink is never followed)") from None
                raise
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _clear(fd, name, keep_dir=False):
    """Make room for a new entry `name` in the folder `fd` (docker replaces)."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return st
        raise CopyError(f"cannot overwrite the directory {name} with a non-directory")
    os.unlink(name, dir_fd=fd)
    return None


def _owner(ti, owner, shift):
    if owner is not None:
        return owner
    return ti.uid + shift, ti.gid + shift


def _write_file(fd, name, ti, tar):
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o600, dir_fd=fd)
    try:
        src = tar.extractfile(ti)
        while chunk := src.read(CHUNK):
            os.write(out, chunk)
    finally:
        os.close(out)


def _member(fd, name, ti, tar, top_fd, rename):
    if ti.isdir():
        if _clear(fd, name, keep_dir=True) is None:
            os.mkdir(name, 0o700, dir_fd=fd)
        return
    _clear(fd, name)
    if ti.isreg():
        _write_file(fd, name, ti, tar)
    elif ti.issym():
        os.symlink(ti.linkname, name, dir_fd=fd)
    elif ti.islnk():
        parts = _parts(ti.linkname)
        if rename and parts:
            parts[0] = rename
        src_fd = _parent_fd(top_fd, parts, make=False)
        try:
            os.link(parts[-1], name, src_dir_fd=src_fd, dst_dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(src_fd)
    elif ti.isfifo():
        os.mkfifo(name, 0o600, dir_fd=fd)
    elif ti.ischr() or ti.isblk():
        kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
        os.mknod(name, kind | 0o600, os.makedev(ti.devmajor, ti.devminor), dir_fd=fd)


def _meta(fd, name, ti, owner, shift):
    uid, gid = _owner(ti, owner, shift)
    os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
    if not ti.issym():
        os.chmod(name, ti.mode & 0o7777, dir_fd=fd)  # after chown, which clears setuid
        os.utime(name, (ti.mtime, ti.mtime), dir_fd=fd, follow_symlinks=False)


def unpack(inp, dest, rename=None, owner=None, shift=0, devices=True, setid=True):
    """Unpack the tar stream `inp` below the folder `dest`. `rename`: the new
    name of the archive's top entry. `owner`: (uid, gid) of every file, None
    for the archive's (plus `shift`, an instance's id base). `devices`: make
    device nodes (not on the host: a node an instance made, say a 0666 disk,
    must not appear there). `setid`: keep setuid and setgid bits (not where
    the files become someone else's, as GNU cp: no setuid root program on the
    host out of an instance's files)."""
    top_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    dirs = []
    try:
        try:
            tar = tarfile.open(fileobj=inp, mode="r|")
        except tarfile.ReadError as err:
            raise CopyError(f"the input is not a tar archive: {err}") from None
        for ti in tar:
            parts = _parts(ti.name)
            if rename and parts:
                parts[0] = rename
            if not parts:
                continue  # the archive's "." entry: dest is there already
            if not devices and (ti.ischr() or ti.isblk()):
                continue
            fd = _parent_fd(top_fd, parts)
            try:
                _member(fd, parts[-1], ti, tar, top_fd, rename)
                if ti.isdir():
                    dirs.append((parts, ti))  # times and modes last
                elif not ti.islnk():
                    if not setid:
                        ti.mode &= ~(stat.S_ISUID | stat.S_ISGID)
                    _meta(fd, parts[-1], ti, owner, shift)
            finally:
                os.close(fd)
        for parts, ti in reversed(dirs):
            fd = _parent_fd(top_fd, parts)
            try:
                _meta(fd, parts[-1], ti, owner, shift)
            finally:
                os.close(fd)
    except tarfile.TarError as err:
        raise CopyError(f"a broken tar archive: {err}") from None
    finally:
        os.close(top_fd)


# -- the instance's side: a chrooted child ------------------------------------------------

def _seal_imports():
    """After chroot, no module may be loaded from the instance's files."""
    import importlib.machinery as m

    sys.path.clear()
    sys.path_importer_cache.clear()
    sys.meta_path[:] = [f for f in sys.meta_path
                        if f in (m.BuiltinImporter, m.FrozenImporter)]


def _enter(root):
    os.chroot(root)
    os.chdir("/")
    _seal_imports()


def _refuse_kernel(path):
    """A running instance's /proc and /sys are the kernel's: not written from here."""
    real = os.path.realpath(path)
    for k in KERNEL_DIRS:
        if real == k or real.startswith(k + "/"):
            raise CopyError(f"refused: {path} is in {k}, the kernel's")


def _child(tgt, job, ctl_w, data_fd):
    """The instance's side of a copy, in a child: the report goes to `ctl_w` as
    one JSON line ({"error": ...} or {"ok": ...})."""
    code = 1
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)  # what it has to say goes to ctl_w
    os.close(null)
    try:
        tgt.enter()
        result = job(data_fd)
        os.write(ctl_w, json.dumps({"ok": result}).encode() + b"\n")
        code = 0
    except CopyError as err:
        os.write(ctl_w, json.dumps({"error": str(err)}).encode() + b"\n")
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        os.write(ctl_w, json.dumps({"error": f"{err.strerror or err}{where}",
                                    "errno": err.errno}).encode() + b"\n")
    except BaseException as err:  # noqa: BLE001 - a child never returns into the CLI
        os.write(ctl_w, json.dumps({"error": f"{type(err).__name__}: {err}"}).encode()
                 + b"\n")
    finally:
        os._exit(code)


def _fork(tgt, job, data_fd, close_in_child):
    ctl_r, ctl_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ctl_r)
        for fd in close_in_child:
            os.close(fd)
        _child(tgt, job, ctl_w, data_fd)
    os.close(ctl_w)
    return pid, ctl_r


def _finish(pid, ctl_r, quiet=False):
    """Reap the helper; raise what it reported (unless `quiet`: the caller
    has an error of its own to raise)."""
    with os.fdopen(ctl_r, "rb") as f:
        lines = f.read().splitlines()
    os.waitpid(pid, 0)
    msg = json.loads(lines[0]) if lines else {"error": "the copy's helper died"}
    if quiet:
        return msg
    if "error" in msg:
        raise CopyError(msg["error"])
    return msg["ok"]


def _failed(pid, ctl, err):
    """The caller's side failed with `err`: reap the helper; its own failure
    says more, unless it only saw the caller go (EPIPE)."""
    if isinstance(err, BrokenPipeError):
        os.kill(pid, signal.SIGKILL)
    msg = _finish(pid, ctl, quiet=True)
    if "error" in msg and msg.get("errno") != errno.EPIPE and not isinstance(
            err, (BrokenPipeError, KeyboardInterrupt)):
        raise CopyError(msg["error"]) from err


# -- entry points -------------------------------------------------------------------------

class Target:
    """How to reach an instance's root: `root` to chroot into and `mount` (the
    child's own mounts, a stopped instance's) or None; `shift` its id base;
    `running` whether /proc and /sys there are the kernel's (and, with a
    shift, its root belongs to the instance's user namespace)."""

    def __init__(self, root, mount, shift, running):
        self.root, self.mount, self.shift, self.running = root, mount, shift, running

    def enter(self):
        """In the helper: its mounts, its ids, then the chroot."""
        if self.mount is not None:
            self.mount()
        if self.running and self.shift:
            from ctr.native import setfsids

            setfsids(self.shift, self.shift)  # files made there are the instance's root's
        _enter(self.root)


def _stopped_mount(rec, lower):
    spec = rec.spec

    def mount():
        from ctr.native import (
            CLONE_NEWNS,
            MS_BIND,
            MS_PRIVATE,
            MS_RDONLY,
            MS_REC,
            MS_REMOUNT,
            SYSCALLS,
            unshare,
        )
        from ctr.rootfs import mount_overlay, mount_volumes

        unshare(CLONE_NEWNS)
        SYSCALLS.mount(None, "/", None, MS_REC | MS_PRIVATE)
        if lower is None:
            return
        mount_overlay(SYSCALLS, lower, rec.upper, rec.work, rec.rootfs, bool(spec.userns))
        if spec.read_only:
            SYSCALLS.mount(None, rec.rootfs, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        mount_volumes(SYSCALLS, rec.rootfs, spec.volumes)
    return mount


def target(instances, rec, state):
    """The Target of an instance in its present state; the caller holds the
    instance's lock while a stopped one is copied."""
    from ctr import store as st
    from ctr.store import alive

    spec = rec.spec
    shift = spec.userns.get("uid") or 0 if spec.userns else 0
    if state["status"] in (st.RUNNING, st.PAUSED) and alive(state.get("pid"),
                                                            state.get("starttime")):
        root = f"/proc/{state['pid']}/root"
        return Target(root + rec.rootfs if spec.kind == "vm" else root, None, shift, True)
    if state["status"] in (st.RUNNING, st.PAUSED, st.RESTARTING):
        raise Conflict(f"instance {rec.name} is {state['status']}: try again")
    lower = instances.lowerdir(rec)
    for d in (rec.rootfs, rec.upper, rec.work):
        os.makedirs(d, exist_ok=True)
    return Target(rec.rootfs, _stopped_mount(rec, lower), shift, False)


def _header(f):
    line = f.readline()
    try:
        return json.loads(line)
    except ValueError:
        raise CopyError("the copy's helper sent no header") from None


def copy_out(tgt, src, dst, *, follow=False, archive=False, stdout=None):
    """Instance -> host path, or to `stdout` (a binary file) as a tar for '-'."""
    r, w = os.pipe()

    def job(fd):
        with os.fdopen(fd, "wb") as out:
            info = source_info(src, follow)
            out.write(json.dumps(info).encode() + b"\n")
            pack(src, out, info, follow, tgt.shift)

    pid, ctl = _fork(tgt, job, w, (r,))
    os.close(w)
    try:
        _receive(r, dst, archive, stdout)
    except BaseException as err:
        _failed(pid, ctl, err)
        raise
    _finish(pid, ctl)


def _receive(r, dst, archive, stdout):
    with os.fdopen(r, "rb") as inp:
        if not inp.peek(1):
            return  # the helper failed before it began: its report says why
        info = _header(inp)
        if stdout is not None:
            while chunk := inp.read(CHUNK):
                stdout.write(chunk)
            stdout.flush()
            return
        where, rename = plan(info, dst)
        owner = None if archive else (os.getuid(), os.getgid())
        unpack(inp, where, rename=rename, owner=owner, devices=False, setid=archive)


def copy_in(tgt, src, dst, *, follow=False, archive=False, stdin=None):
    """Host path, or a tar on `stdin` (a binary file) for '-' -> instance."""
    info = source_info(src, follow) if stdin is None else None
    owner = None if archive else (tgt.shift, tgt.shift)  # None: the archive's ids
    r, w = os.pipe()

    def job(fd):
        if tgt.running:
            _refuse_kernel(dst)
        with os.fdopen(fd, "rb") as inp:
            header = _header(inp)
            if header is None:  # a tar stream: unpacked into dst, a folder
                if not os.path.isdir(dst):
                    raise CopyError(f"the destination {dst} must be a directory")
                where, rename = dst, None
            else:
                where, rename = plan(header, dst)
            unpack(inp, where, rename=rename, owner=owner, shift=tgt.shift)

    pid, ctl = _fork(tgt, job, r, (w,))
    os.close(r)
    try:
        with os.fdopen(w, "wb") as out:
            out.write(json.dumps(info).encode() + b"\n")
            if stdin is None:
                pack(src, out, info, follow)
            else:
                while chunk := stdin.read(CHUNK):
                    out.write(chunk)
    except BrokenPipeError:
        pass  # the helper stopped reading: its report says why
    except BaseException as err:
        _failed(pid, ctl, err)
        raise
    _finish(pid, ctl)


def validate_args(src, dst):
    """(direction, instance name, instance path, host path) of `ctr cp SRC DST`."""
    s_name, s_path = split_arg(src)
    d_name, d_path = split_arg(dst)
    if s_name and d_name:
        raise InvalidSpec("copying between instances is not supported")
    if not s_name and not d_name:
        raise InvalidSpec("must specify at least one instance source (NAME:PATH)")
    if s_name:
        if not s_path:
            raise InvalidSpec(f"invalid source {src!r}: a path in the instance is needed")
        return "out", s_name, s_path, d_path
    if not d_path:
        raise InvalidSpec(f"invalid destination {dst!r}: a path in the instance is needed")
    return "in", d_name, d_path, s_path


def copy(instances, src, dst, *, follow=False, archive=False, stdin=None, stdout=None):
    """`ctr cp SRC DST`: one side NAME:PATH, the other a host path or '-'
    (stdin's or stdout's binary file: a tar stream)."""
    import contextlib

    from ctr import store as st

    direction, name, inner, outer = validate_args(src, dst)
    rec = instances.get(name)
    state = rec.state()
    running = state["status"] in (st.RUNNING, st.PAUSED)
    with contextlib.nullcontext() if running else rec.lock():
        if not running:
            state = rec.read_state()  # under the lock: a start waits for us
        tgt = target(instances, rec, state)
        if direction == "out":
            copy_out(tgt, inner, outer, follow=follow, archive=archive,
                     stdout=stdout if outer == "-" else None)
        else:
            copy_in(tgt, outer, inner, follow=follow, archive=archive,
                    stdin=stdin if outer == "-" else None)
