"""Anonymous volumes: a folder of an instance's own for each of its image's
Volumes (docker's anonymous volumes), under STATE_ROOT/volumes/ID/_data.

    create   assign(): an ID and its folder for each, the spec's sources filled in
    start    seed(): on the first start, the image's content at the volume's
             path is copied into it (docker's copy-up), inside the container's
             mount namespace, from its own root: symlinks in the image are
             resolved inside that root and copied as links, never followed
    rm -v    remove(): the folders go (with --rm too); a plain `rm` keeps them,
             as docker's does

The volume's folder is filled under a temporary name and renamed to _data
when complete, so a start killed halfway seeds again from scratch.
"""

import os
import re
import stat

VOLUME_ID_RE = re.compile(r"[0-9a-f]{64}")
DATA = "_data"


def volumes_dir(store):
    return os.path.join(store.root, "volumes")


def assign(revert, store, spec):
    """`spec` with a folder of its own for each anonymous volume (made here,
    undone by `revert` on failure)."""
    import dataclasses
    import shutil

    top = volumes_dir(store)
    os.makedirs(top, 0o711, exist_ok=True)
    out = []
    for vol in spec.volumes:
        if vol.get("anonymous") and not vol.get("source"):
            path = os.path.join(top, os.urandom(32).hex())
            os.mkdir(path, 0o711)
            revert.add(shutil.rmtree, path, ignore_errors=True)
            vol = {**vol, "source": os.path.join(path, DATA)}
        out.append(vol)
    return dataclasses.replace(spec, volumes=tuple(out))


def owned(store, vol):
    """The folder of an anonymous volume, if it is one of this store's (a spec
    that says otherwise is not followed out of it); else None."""
    source = vol.get("source")
    if not vol.get("anonymous") or not source:
        return None
    folder = os.path.dirname(source)
    if (os.path.basename(source) != DATA or os.path.dirname(folder) != volumes_dir(store)
            or not VOLUME_ID_RE.fullmatch(os.path.basename(folder))):
        return None
    return folder


def chown(store, spec, uid, gid):
    """--userns=auto: the container's root owns its volumes' folders."""
    for vol in spec.volumes:
        folder = owned(store, vol)
        if folder:
            os.chown(folder, uid, gid)


def remove(store, spec):
    """Remove the instance's anonymous volumes (rm -v, --rm)."""
    import shutil

    for vol in spec.volumes:
        folder = owned(store, vol)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def seed(source, data):
    """Fill the volume's `data` folder on its first use: a copy of `source`
    (the image's folder at the volume's path, already resolved inside the
    container's root; absent, an empty volume). Called by the container's
    init before pivot_root."""
    if os.path.isdir(data):
        return
    import shutil

    staging = f"{data}.tmp"
    shutil.rmtree(staging, ignore_errors=True)  # what a killed start left
    try:
        st = os.lstat(source)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is None or not stat.S_ISDIR(st.st_mode):
        os.mkdir(staging, 0o755)
    else:
        _copy_tree(source, staging, st)
    os.rename(staging, data)


def seed_named(source, data):
    """Fill a named volume's `data` folder while it is empty, as docker does: a
    copy of `source` (the image's folder at the mount's path, resolved inside
    the container's root), and the folder's owner and mode. The copy is made
    beside it and its entries moved in one by one: a start killed halfway
    leaves at most part of them, and two starts at once the same ones."""
    with os.scandir(data) as entries:
        if next(entries, None) is not None:
            return
    try:
        st = os.lstat(source)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    import shutil

    staging = os.path.join(os.path.dirname(data), f".seed-{os.urandom(8).hex()}")
    try:
        _copy_tree(source, staging, st)
        for name in os.listdir(staging):
            try:
                os.rename(os.path.join(staging, name), os.path.join(data, name))
            except OSError:
                continue  # filled meanwhile: what is there stays
        _copy_meta(data, st)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_meta(path, st):
    os.lchown(path, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src, dst):
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    fin = os.open(src, os.O_RDONLY | nofollow)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, 0o600)
        try:
            while os.sendfile(fout, fin, None, 1 << 20):
                pass
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_tree(src, dst, st):
    """Copy a tree without following any symlink in it; owners, modes and times
    kept. Iterative: however deep the image's tree, no recursion limit."""
    os.mkdir(dst, 0o700)
    dirs = [(src, dst, st)]
    stack = [(src, dst)]
    while stack:
        sdir, ddir = stack.pop()
        with os.scandir(sdir) as entries:
            for entry in entries:
                s, d = entry.path, os.path.join(ddir, entry.name)
                est = entry.stat(follow_symlinks=False)
                mode = est.st_mode
                if stat.S_ISDIR(mode):
                    os.mkdir(d, 0o700)
                    dirs.append((s, d, est))
                    stack.append((s, d))
                    continue
                if stat.S_ISLNK(mode):
                    os.symlink(os.readlink(s), d)
                elif stat.S_ISREG(mode):
                    _copy_file(s, d)
                elif stat.S_ISFIFO(mode):
                    os.mkfifo(d, 0o600)
                elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    try:
                        os.mknod(d, stat.S_IFMT(mode) | 0o600, est.st_rdev)
                    except PermissionError:
                        continue  # no mknod in a user namespace: left out
                else:
                    continue  # a socket: nothing to copy
                _copy_meta(d, est)
    for _, d, est in reversed(dirs):  # times last: filling a folder changes its mtime
        _copy_meta(d, est)
