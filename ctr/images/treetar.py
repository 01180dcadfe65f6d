"""Folders back into tar streams: a layer (an instance's upper directory, or a layer
of the store) with its overlayfs whiteouts turned back into OCI ones, or the merged
view of several layers (what an instance sees as its root).

    write_layer(tar, folder)            .wh.NAME for a 0/0 character device,
                                        DIR/.wh..wh..opq for an opaque DIR
    write_merged(tar, [top, ..., bottom])   the union, whiteouts applied

No mount is needed: the union is computed here, with overlayfs's rules (the top
layer that has a name wins; a whiteout hides it below; a directory merges with the
directories below it unless it is opaque, or a non-directory lies between).

Deterministic: the same folder gives the same bytes (sorted names, integer mtimes,
no user or group names, xattrs sorted, fixed metadata for whiteouts), so a layer
unpacked by ctr.images.layers and written again here keeps its diff ID.
overlayfs's own xattrs (trusted.overlay.*, user.overlay.*) are never written.
`idmap` (uid base, gid base, size) shifts the owners of a --userns=auto instance's
files back to the ids its container sees.
"""

import os
import stat
import tarfile

from ctr.errors import CtrError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
# What overlayfs writes when redirect_dir or metacopy is on: a layer that needs them
# cannot be expressed as an OCI layer by its upper directory alone.
UNSUPPORTED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy",
                      "user.overlay.redirect", "user.overlay.metacopy")


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _at(fd, name):
    """`name` in the directory open as `fd`: the magic link is the directory itself,
    so no symlink (one a running container swaps in meanwhile) is ever followed; the
    last component is not followed either (follow_symlinks=False, O_NOFOLLOW)."""
    return f"/proc/self/fd/{fd}/{name}"


def _xattrs(path):
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for key in sorted(keys):
        try:
            out[key] = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue
    return out


def _opaque(fd):
    for key in OPAQUE_XATTRS:
        try:
            if os.getxattr(fd, key) == b"y":
                return True
        except OSError:
            continue
    return False


def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _TreeWriter:
    """Walks directory fds opened component by component with O_NOFOLLOW: the
    folders may belong to a running instance (export, commit -P), whose processes
    can turn a directory into a symlink at any moment."""

    def __init__(self, tar, idmap=None, diff=False, skip=()):
        self.tar = tar
        self.skip = set(skip)
        self.idmap = idmap
        self.diff = diff
        self.links = {}  # (dev, ino) -> the name it was first written as

    def _owner(self, st):
        uid, gid = st.st_uid, st.st_gid
        if self.idmap:
            ubase, gbase, size = self.idmap
            uid = uid - ubase if ubase <= uid < ubase + size else 65534
            gid = gid - gbase if gbase <= gid < gbase + size else 65534
        return uid, gid

    def _marker(self, name):
        info = tarfile.TarInfo(name)
        info.mode, info.mtime = 0o600, 0
        self.tar.addfile(info)

    def roots(self, folders):
        fds = []
        try:
            for folder in folders:
                fds.append(os.open(folder, _DIR))
            self.tree(fds)
        finally:
            for fd in fds:
                os.close(fd)

    def tree(self, fds, rel=""):
        """The directory `rel`, open as a directory in each of `fds` (top first)."""
        stack = []
        for fd in fds:
            stack.append(fd)
            if (rel or self.diff) and _opaque(fd):
                break
        listings = [set(os.listdir(fd)) for fd in stack]
        for name in sorted(set().union(*listings)):
            top = next(i for i, names in enumerate(listings) if name in names)
            dfd = stack[top]
            arc = f"{rel}/{name}" if rel else name
            if arc in self.skip:
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile (a running instance)
                continue
            if _is_whiteout(st):
                if self.diff:
                    self._marker(f"{rel}/{WHITEOUT}{name}" if rel else WHITEOUT + name)
                continue
            if not stat.S_ISDIR(st.st_mode):
                self.member(dfd, name, arc, st)
                continue
            opened = [os.open(name, _DIR, dir_fd=dfd)]
            try:
                self.member(dfd, name, arc, st)
                for fd in stack[top + 1:]:
                    try:
                        sub = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if not stat.S_ISDIR(sub.st_mode):
                        break
                    opened.append(os.open(name, _DIR, dir_fd=fd))
                if self.diff and _opaque(opened[0]):
                    self._marker(f"{arc}/{OPAQUE}")
                self.tree(opened, arc)
            finally:
                for fd in opened:
                    os.close(fd)

    def member(self, dfd, name, arc, st):
        path = _at(dfd, name)
        info = tarfile.TarInfo(arc)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = self._owner(st)
        info.mtime = int(st.st_mtime)
        for key, value in _xattrs(path).items():
            if key.startswith(UNSUPPORTED_XATTRS):
                raise CtrError(f"{arc}: overlayfs's {key} (redirect_dir or metacopy is "
                               "on): such a change cannot be written as a layer")
            if not key.startswith(OVERLAY_XATTRS):
                info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8",
                                                                       "surrogateescape")
        mode = st.st_mode
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
                self.tar.addfile(info)
                return
            fd = os.open(name, _FILE, dir_fd=dfd)
            with open(fd, "rb") as f:
                now = os.fstat(fd)
                if (now.st_dev, now.st_ino) != key or not stat.S_ISREG(now.st_mode):
                    raise CtrError(f"{arc}: replaced while it was read (the instance is "
                                   "running: pause it)")
                if st.st_nlink > 1:
                    self.links[key] = arc
                info.size = now.st_size
                self.tar.addfile(info, f)
            return
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dfd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # a socket: nothing a tar can carry
        self.tar.addfile(info)


def open_tar(fileobj):
    """A tar stream written to `fileobj` (only .write is used)."""
    return tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT,
                        encoding="utf-8", errors="surrogateescape", bufsize=1 << 16)


def write_layer(tar, folder, idmap=None, skip=()):
    """`skip`: names (relative, like etc/hosts) left out."""
    _TreeWriter(tar, idmap, diff=True, skip=skip).roots([folder])


def write_merged(tar, folders, idmap=None):
    _TreeWriter(tar, idmap).roots(list(folders))


class HashingWriter:
    """A binary file's writer that digests (sha256) and counts what goes through."""

    def __init__(self, f):
        import hashlib

        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        return self.f.write(data)

    def digest(self):
        return "sha256:" + self.hash.hexdigest()
