"""Unpack one OCI layer into a directory of its own, ready to be an overlayfs lowerdir.

    unpack(blob_path, "/var/lib/ctr/layers/<digest>", diff_id="sha256:...",
           media_type="application/vnd.oci.image.layer.v1.tar+gzip")

What a layer becomes:
- The tar is read as a stream (tarfile's "r|"): memory stays bounded whatever the
  compression ratio; no size cap (real layers reach many GiB). Runs of zeros (a
  sparse member, a bomb of zeros) become holes, so they cost no disk either.
  A pax or GNU long-name header is the one thing tarfile reads whole; one larger than
  1 MiB is refused (Go's archive/tar, which containerd uses, has the same limit).
- Compression is sniffed from the stream (gzip, zstd or none), as containerd does; the
  media type, when given, only has to be a layer type we know. gzip is Python's own;
  zstd is Python's `compression.zstd` (3.14+) or else the host's `zstd` program as a
  stream filter (its default 128 MiB window limit bounds its memory too).
- The diff ID (the digest of the uncompressed stream, trailing padding included) is
  computed while reading, returned, and checked against `diff_id` when given.
- Whiteouts become overlayfs's own: `.wh.NAME` is a 0/0 character device NAME,
  `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory; other `.wh..wh.`
  names (aufs bookkeeping) are skipped. A layer's own `trusted.overlay.*` and
  `user.overlay.*` xattrs are dropped: they would steer overlayfs, not the files.
- Regular files, directories, hardlinks (to members already unpacked by this layer),
  symlinks (kept verbatim, never followed), device nodes and fifos; numeric uid/gid,
  mode bits including setuid/setgid/sticky, SCHILY.xattr.* xattrs, mtimes
  (directories' set once everything is in place).
- A later member replaces an earlier one at the same path (tar's rule), except that a
  directory over a directory merges.

Hostile layers: nothing is ever written outside the layer's directory. Every
operation is relative to a directory fd opened component by component with
O_NOFOLLOW from the layer's root, so no symlink, earlier or concurrent, can redirect
a write. A leading "/" is dropped (contained, as tar and docker do); a ".." component,
a path whose parent is a symlink or a non-directory, and a hardlink to anything but a
member of this layer are refused. A refused or failed layer is one CtrError naming the
member and the reason, and leaves nothing: the layer is unpacked into a temporary
sibling (`DEST.tmp-*`) renamed into place only when complete.
"""

import contextlib
import dataclasses
import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import zlib

from ctr.errors import Conflict, CtrError
from ctr.revert import Reverter

# The layer media types of the OCI image spec and docker's manifest v2.
MEDIA_TYPES = frozenset({
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
})
DIGESTS = ("sha256", "sha384", "sha512")

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
DROPPED_XATTRS = ("trusted.overlay.", "user.overlay.")
MAX_HEADER = 1 << 20  # the largest pax or GNU long-name header read into memory
CHUNK = 1 << 20
FD_CACHE = 64  # directory fds kept open while unpacking

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclasses.dataclass(frozen=True)
class Unpacked:
    diff_id: str  # "sha256:<hex>", the digest of the uncompressed tar stream
    size: int  # bytes of the uncompressed tar stream


class _Refused(Exception):
    """A member refused; becomes a CtrError naming the layer."""

    def __init__(self, member, reason):
        if len(member) > 160:
            member = member[:80] + "..." + member[-40:]
        super().__init__(f"member {member!r}: {reason}")


def unpack(source, dest, *, diff_id=None, media_type=None):
    """Unpack the layer `source` (a path or a binary file object, read once) into the
    new directory `dest`. Returns Unpacked(diff_id, size); raises CtrError and leaves
    nothing when the layer is refused or fails."""
    label = diff_id or (source if isinstance(source, str) else "stream")
    if media_type is not None and media_type not in MEDIA_TYPES:
        raise CtrError(f"layer {label}: unsupported media type {media_type}")
    algorithm = "sha256"
    if diff_id is not None:
        algorithm, _, hexdigest = diff_id.partition(":")
        if algorithm not in DIGESTS or not hexdigest:
            raise CtrError(f"layer {label}: unsupported diff ID {diff_id!r}")
    dest = os.path.abspath(dest)
    if os.path.lexists(dest):
        raise Conflict(f"layer {label}: {dest} already exists")
    try:
        with Reverter() as revert, contextlib.ExitStack() as stack:
            tmp = tempfile.mkdtemp(prefix=os.path.basename(dest) + ".tmp-",
                                   dir=os.path.dirname(dest))
            revert.add(shutil.rmtree, tmp)
            raw = stack.enter_context(open(source, "rb")) if isinstance(source, str) else source
            stream = _Hashing(_decompressed(raw, stack), algorithm)
            root = os.open(tmp, _DIR)
            stack.callback(os.close, root)
            writer = _Writer(root)
            stack.callback(writer.close)
            # 64 KiB: tarfile's stream copies its buffer's remainder on every read.
            tar = tarfile.open(fileobj=stream, mode="r|", tarinfo=_TarInfo,
                               errors="surrogateescape", bufsize=1 << 16)
            # next() rather than iteration, and members forgotten as we go: tarfile
            # would otherwise keep every TarInfo of the layer in memory.
            while (member := tar.next()) is not None:
                tar.members.clear()
                try:
                    writer.add(tar, member)
                except (OSError, ValueError) as err:
                    raise _Refused(member.name, getattr(err, "strerror", None) or str(err)) \
                        from None
            stream.drain()
            got = f"{algorithm}:{stream.hexdigest()}"
            if diff_id is not None and got != diff_id:
                raise CtrError(f"layer {label}: refused, the content's digest is {got}")
            writer.finish()
            writer.close()
            os.rename(tmp, dest)
            revert.success()
            return Unpacked(got, stream.size)
    except _Refused as err:
        raise CtrError(f"layer {label}: {err}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise CtrError(f"layer {label}: not a valid tar stream: {err}") from None
    except OSError as err:
        if os.path.lexists(dest) and err.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise Conflict(f"layer {label}: {dest} already exists") from None
        where = f" {err.filename}" if err.filename else ""
        raise CtrError(f"layer {label}:{where}: {err.strerror or err}") from None


class _TarInfo(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header whole: refuse a huge one first."""

    def _proc_member(self, tarfile_):
        if (self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                          tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
                and self.size > MAX_HEADER):
            raise _Refused(self.name, f"a {self.size}-byte extended header (limit {MAX_HEADER})")
        return super()._proc_member(tarfile_)


class _Hashing:
    """The uncompressed stream, digested and counted as it is read."""

    def __init__(self, inner, algorithm):
        self._inner = inner
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def read(self, n=-1):
        data = self._inner.read(CHUNK if n is None or n < 0 else n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self):
        """Read what follows the end-of-archive blocks: the diff ID covers it too."""
        while self.read(CHUNK):
            pass

    def hexdigest(self):
        return self._hash.hexdigest()


def _decompressed(raw, stack):
    """The uncompressed stream of `raw`, compression sniffed from its first bytes."""
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw, CHUNK)
    magic = raw.peek(4)[:4]
    if magic[:2] == b"\x1f\x8b":
        return stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            from compression import zstd  # Python 3.14+
        except ImportError:
            return _ZstdProgram(raw, stack)
        return stack.enter_context(zstd.ZstdFile(raw))
    return raw


class _ZstdProgram:
    """zstd -d as a stream filter: a thread feeds it `raw`, we read its output."""

    def __init__(self, raw, stack):
        exe = shutil.which("zstd")
        if exe is None:
            raise CtrError("a zstd layer needs Python 3.14 or the zstd program")
        self._proc = subprocess.Popen([exe, "-d", "-c", "-q"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._feeder = threading.Thread(target=self._feed, args=(raw,), daemon=True)
        self._feeder.start()
        stack.callback(self._close)

    def _feed(self, raw):
        try:
            while chunk := raw.read(CHUNK):
                self._proc.stdin.write(chunk)
        except (OSError, ValueError):
            pass  # zstd exited (refused the stream) or we stopped reading: check() says
        finally:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def read(self, n):
        data = self._proc.stdout.read(n)
        if not data:
            self._check()
        return data

    def _check(self):
        """At the end of zstd's output: did it decompress the whole stream?"""
        self._feeder.join()
        err = self._proc.stderr.read().decode(errors="replace").strip()
        if self._proc.wait() != 0:
            raise CtrError(f"zstd: {err.splitlines()[-1] if err else 'invalid stream'}")

    def _close(self):
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.stdout.close()
        self._feeder.join()
        self._proc.stderr.close()
        self._proc.wait()


def _parts(member, name):
    """The path components of `name` under the layer's root; refuses '..'."""
    if "\0" in name:
        raise _Refused(member, "a NUL byte in a name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Refused(member, "a '..' component")
    return parts


class _Writer:
    """Creates members under the directory fd `root`, never following a symlink."""

    def __init__(self, root):
        self._root = root
        self._fds = {}  # ('a', 'b') -> fd of a/b, oldest first
        self._dirs = {}  # "a/b" -> (mode, mtime): set once every member is in
        self._root_owned = os.geteuid() == 0

    def close(self):
        while self._fds:
            os.close(self._fds.popitem()[1])

    # -- walking -----------------------------------------------------------------

    def _parent(self, member, parts, create):
        """An fd of the directory `parts`, each component opened with O_NOFOLLOW from
        the root; missing ones are made (0755) when `create`. Borrowed: valid until the
        next call. The last FD_CACHE directories walked are kept open: a layer lists a
        directory's files, then its subdirectories', then more of its own."""
        key = tuple(parts)
        start = len(key)
        while start and key[:start] not in self._fds:
            start -= 1
        fd = self._fds[key[:start]] if start else self._root
        if start:
            self._fds[key[:start]] = self._fds.pop(key[:start])  # the most recent now
        for i in range(start, len(key)):
            part = key[i]
            try:
                nxt = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise _Refused(member, f"{'/'.join(key[:i + 1])} is not in this "
                                   "layer") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, _DIR, dir_fd=fd)
            except OSError as err:
                if err.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                what = "a symlink" if stat.S_ISLNK(
                    os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode) \
                    else "not a directory"
                raise _Refused(member, f"its parent {'/'.join(key[:i + 1])} is "
                               f"{what}") from None
            # Evicting the oldest never closes nxt, the newest.
            self._fds[key[:i + 1]] = fd = nxt
            if len(self._fds) > FD_CACHE:
                os.close(self._fds.pop(next(iter(self._fds))))
        return fd

    def _remove(self, parent, name, path):
        """Remove `name` (anything, a directory with its content) from `parent`."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)
            # Its fds and pending directory times (and those below it) are stale now.
            path = tuple(path)
            for key in [k for k in self._fds if k[:len(path)] == path]:
                os.close(self._fds.pop(key))
            prefix = "/".join(path)
            for key in [k for k in self._dirs if k == prefix or k.startswith(prefix + "/")]:
                del self._dirs[key]
        else:
            os.unlink(name, dir_fd=parent)

    # -- members -----------------------------------------------------------------

    def add(self, tar, member):
        name = member.name
        parts = _parts(name, name)
        if not parts:
            if not member.isdir():
                raise _Refused(name, "a non-directory at the layer's root")
            self._meta_fd(self._root, member)
            self._dirs[""] = (member.mode, member.mtime)
            return
        *dirs, leaf = parts
        if leaf.startswith(WHITEOUT):
            self._whiteout(name, dirs, leaf)
            return
        parent = self._parent(name, dirs, create=True)
        if member.isdir():
            self._directory(parent, leaf, parts, member)
            return
        self._remove(parent, leaf, parts)
        if member.isreg():
            self._regular(tar, parent, leaf, member)
        elif member.issym():
            os.symlink(member.linkname, leaf, dir_fd=parent)
            self._meta_symlink(parent, leaf, member)
        elif member.islnk():
            self._hardlink(name, dirs, leaf, member.linkname)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = (stat.S_IFCHR if member.ischr() else
                    stat.S_IFBLK if member.isblk() else stat.S_IFIFO)
            os.mknod(leaf, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=parent)
            fd = os.open(leaf, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                self._meta_fd(fd, member, path=True)
                os.utime(_proc(fd), ns=(_ns(member.mtime),) * 2)
            finally:
                os.close(fd)
        else:
            raise _Refused(name, f"an unsupported member type {member.type!r}")

    def _whiteout(self, member, dirs, leaf):
        parent = self._parent(member, dirs, create=True)
        if leaf == OPAQUE:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        if leaf.startswith(WHITEOUT + WHITEOUT):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no meaning here
        target = leaf[len(WHITEOUT):]
        if target in ("", ".", ".."):
            raise _Refused(member, "a whiteout of nothing")
        try:
            st = os.stat(target, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            os.mknod(target, stat.S_IFCHR | 0o000, 0, dir_fd=parent)
            if self._root_owned:
                os.chown(target, 0, 0, dir_fd=parent, follow_symlinks=False)
            return
        # The spec's whiteouts hide the lower layers only. A directory of this layer
        # already there then hides them by being opaque; a non-directory already does.
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(target, _DIR, dir_fd=parent)
            try:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)

    def _directory(self, parent, leaf, parts, member):
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        opaque = False
        if st is not None and not stat.S_ISDIR(st.st_mode):
            # A directory over this layer's whiteout stays a whiteout of lower content.
            opaque = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            os.unlink(leaf, dir_fd=parent)
            st = None
        if st is None:
            os.mkdir(leaf, 0o700, dir_fd=parent)
        fd = os.open(leaf, _DIR, dir_fd=parent)
        try:
            self._meta_fd(fd, member)
            if opaque:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        self._dirs["/".join(parts)] = (member.mode, member.mtime)

    def _regular(self, tar, parent, leaf, member):
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            src = tar.extractfile(member)
            while chunk := src.read(CHUNK):
                if not (chunk[0] or chunk[-1]) and chunk.count(0) == len(chunk):
                    # A hole, not zeros on disk: a sparse member, or a bomb of zeros,
                    # costs no more disk than its real data.
                    os.lseek(fd, len(chunk), os.SEEK_CUR)
                    continue
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
            self._meta_fd(fd, member)
            os.utime(fd, ns=(_ns(member.mtime),) * 2)
        finally:
            os.close(fd)

    def _hardlink(self, member, dirs, leaf, linkname):
        *tdirs, tleaf = _parts(member, linkname) or [""]
        if not tleaf:
            raise _Refused(member, "a hardlink to the layer's root")
        # The target's parent is walked like any other (no symlink, no escape); dup'd
        # because walking to the link's own parent replaces the cached fd.
        tparent = os.dup(self._parent(member, tdirs, create=False))
        try:
            try:
                st = os.stat(tleaf, dir_fd=tparent, follow_symlinks=False)
            except FileNotFoundError:
                raise _Refused(member, f"a hardlink to {linkname!r}, not in this layer") \
                    from None
            if stat.S_ISDIR(st.st_mode):
                raise _Refused(member, f"a hardlink to the directory {linkname!r}")
            parent = self._parent(member, dirs, create=False)
            os.link(tleaf, leaf, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(tparent)

    # -- metadata ----------------------------------------------------------------

    def _meta_fd(self, fd, member, path=False):
        """Owner, mode (not a directory's: it waits for finish) and xattrs of the file
        open as `fd` (an O_PATH one when `path`, reached through /proc/self/fd)."""
        target = _proc(fd) if path else fd
        if self._root_owned:
            os.chown(target, member.uid, member.gid)
        for key, value in _xattrs(member):
            _setxattr(target, key, value)
        if not member.isdir():
            os.chmod(target, member.mode & 0o7777)  # after chown, which clears setuid

    def _meta_symlink(self, parent, leaf, member):
        if self._root_owned:
            os.chown(leaf, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        for key, value in _xattrs(member):
            _setxattr(f"{_proc(parent)}/{leaf}", key, value, follow_symlinks=False)
        os.utime(leaf, ns=(_ns(member.mtime),) * 2, dir_fd=parent, follow_symlinks=False)

    def finish(self):
        """Directories' modes and mtimes, now that nothing is created in them."""
        for path, (mode, mtime) in self._dirs.items():
            parts = path.split("/") if path else []
            fd = self._parent(path, parts, create=False)
            os.chmod(fd, mode & 0o7777)
            os.utime(fd, ns=(_ns(mtime),) * 2)
        if "" not in self._dirs:
            os.chmod(self._root, 0o755)


def _proc(fd):
    return f"/proc/self/fd/{fd}"


def _ns(mtime):
    return int(round(mtime * 1_000_000_000))


def _setxattr(target, key, value, **kw):
    try:
        os.setxattr(target, key, value, **kw)
    except OSError as err:
        raise OSError(err.errno, f"xattr {key}: {err.strerror}") from None


def _xattrs(member):
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            if not name.startswith(DROPPED_XATTRS):
                yield name, value.encode("utf-8", "surrogateescape")
