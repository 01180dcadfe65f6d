"""The layer store: each layer unpacked once, shared by every image that has it.

    STATE_ROOT/layers/sha256/<hex>        the layer (an overlayfs lowerdir), never written
                                          to once it is in place
    STATE_ROOT/layers/sha256/<hex>.json   its size and where it came from
    STATE_ROOT/layers/l/<16 hex>          a short name of it (podman's l/ links), used
                                          when the full paths of an image's layers do
                                          not fit in one mount's options
    STATE_ROOT/layers/shifted/<algo>/<hex>/<uid>-<gid>-<size>
                                          the layer with its owners moved into a block
                                          of ids (--userns=auto without idmapped mounts:
                                          ctr.userns), made under the layer's lock
    STATE_ROOT/locks/                     one lock file per layer, per image name, and
                                          the store's own

A layer's id is its diff ID (the digest of its uncompressed tar) for a pulled or
imported layer; for a layer a recipe built in place it is the tree digest the
image's id has always been. A layer is unpacked under its own lock: two pulls that
share it both wait for one unpack and use its result. What a killed unpack left
(`<hex>.tmp-*`, ctr.images.layers' staging) is removed by the next pull that takes
that layer's lock, and by `image prune`. A layer's shifted copies go with it, and
so does the copy of a block no instance holds (`collect_shifted`; `kept` is the
rule, which `system df` shows as what a prune would leave).

The store lock: pulls, builds and imports hold it shared from their first layer
to their record; removing unused layers holds it exclusively, so a layer between
its unpack and its image's record is never taken for unused.
"""

import contextlib
import fcntl
import json
import os

from ctr.errors import CtrError

TMP = ".tmp-"
SHORT = 16  # hex digits of a layer's short name


@contextlib.contextmanager
def flock(path, shared=False, blocking=True):
    """An flock on `path` (made when missing). Yields False instead of waiting
    when not `blocking` and someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _split(layer_id):
    algo, _, hexdigest = layer_id.partition(":")
    if algo not in ("sha256", "sha384", "sha512") or not hexdigest or \
            any(c not in "0123456789abcdef" for c in hexdigest):
        raise CtrError(f"invalid layer id {layer_id!r}")
    return algo, hexdigest


class LayerStore:
    def __init__(self, root):
        self.root = root
        self.dir = os.path.join(root, "layers")
        self.locks = os.path.join(root, "locks")

    def ensure(self):
        for d in (self.dir, os.path.join(self.dir, "l"), self.locks):
            os.makedirs(d, 0o711, exist_ok=True)

    def path(self, layer_id):
        algo, hexdigest = _split(layer_id)
        return os.path.join(self.dir, algo, hexdigest)

    def short(self, layer_id):
        return os.path.join(self.dir, "l", _split(layer_id)[1][:SHORT])

    def shifted_dir(self, layer_id):
        return os.path.join(self.dir, "shifted", *_split(layer_id))

    def has(self, layer_id):
        return os.path.isdir(self.path(layer_id))

    def lock(self, layer_id, blocking=True):
        return flock(os.path.join(self.locks, "layer-" + _split(layer_id)[1]), blocking=blocking)

    def store_lock(self, shared):
        self.ensure()
        return flock(os.path.join(self.locks, "store"), shared=shared)

    def size(self, layer_id):
        try:
            with open(self.path(layer_id) + ".json") as f:
                return int(json.load(f).get("size", 0))
        except (OSError, ValueError):
            return 0

    def add(self, blob, diff_id, media_type=None, progress=None):
        """Unpack the blob file `blob` as the layer `diff_id`, unless it is here
        already. Returns True when this call unpacked it."""
        from ctr.images.layers import unpack

        self.ensure()
        dest = self.path(diff_id)
        os.makedirs(os.path.dirname(dest), 0o711, exist_ok=True)
        with self.lock(diff_id):
            if os.path.isdir(dest):
                if not (os.path.exists(dest + ".json") and os.path.lexists(self.short(diff_id))):
                    self._finish(diff_id, _tree_size(dest))  # killed right after its rename
                return False
            self._sweep_one(dest)
            if progress:
                progress(f"unpacking layer {diff_id[:19]}")
            got = unpack(blob, dest, diff_id=diff_id, media_type=media_type)
            self._finish(diff_id, got.size)
            return True

    def adopt(self, tree, layer_id, size):
        """Move the finished tree `tree` into place as the layer `layer_id` (a
        recipe's build); a layer already there wins and `tree` is left alone."""
        self.ensure()
        dest = self.path(layer_id)
        os.makedirs(os.path.dirname(dest), 0o711, exist_ok=True)
        with self.lock(layer_id):
            if os.path.isdir(dest):
                return False
            os.rename(tree, dest)
            self._finish(layer_id, size)
            return True

    def _finish(self, layer_id, size):
        from ctr.store import atomic_write_json

        atomic_write_json(self.path(layer_id) + ".json", {"id": layer_id, "size": size})
        link = self.short(layer_id)
        target = os.path.relpath(self.path(layer_id), os.path.dirname(link))
        with contextlib.suppress(FileExistsError):
            os.symlink(target, link)

    def _sweep_one(self, dest):
        """What a killed unpack of this layer left; the caller holds its lock."""
        parent, base = os.path.split(dest)
        for entry in os.listdir(parent):
            if entry.startswith(base + TMP):
                import shutil

                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)

    def ids(self):
        out = []
        for algo in ("sha256", "sha384", "sha512"):
            try:
                entries = os.listdir(os.path.join(self.dir, algo))
            except FileNotFoundError:
                continue
            out += [f"{algo}:{e}" for e in entries if "." not in e]
        return out

    def collect(self, used):
        """Remove the layers not in `used` and every leftover of a killed unpack
        whose layer nobody is unpacking now. The caller holds the store lock
        exclusively. Returns (the removed layers' ids, the bytes freed)."""
        removed, freed = [], 0
        for layer_id in self.ids():
            if layer_id in used:
                continue
            with self.lock(layer_id, blocking=False) as got:
                if got:
                    freed += self._remove(layer_id)
                    removed.append(layer_id)
        for algo in ("sha256", "sha384", "sha512"):
            parent = os.path.join(self.dir, algo)
            for entry in os.listdir(parent) if os.path.isdir(parent) else []:
                # a layer, its .json, or what a killed unpack or write left
                base = entry.split(".", 1)[0]
                if entry == base or (entry == base + ".json" and
                                     os.path.isdir(os.path.join(parent, base))):
                    continue
                with self.lock(f"{algo}:{base}", blocking=False) as got:
                    if got:
                        freed += _rm(os.path.join(parent, entry))
        links = os.path.join(self.dir, "l")
        for entry in os.listdir(links) if os.path.isdir(links) else []:
            path = os.path.join(links, entry)
            if not os.path.exists(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return removed, freed

    def shifted_copies(self):
        """[(layer id, entry, path)] of every folder in the shifted tree: the
        copies (the entry is their block's key) and what killed copies or
        prunes left (TMP in the entry); the layer id is None, and the entry
        its folder's name, for a folder named after no layer."""
        top, out = os.path.join(self.dir, "shifted"), []
        for algo in _listdir(top):
            for hexdigest in _listdir(os.path.join(top, algo)):
                layer_id = f"{algo}:{hexdigest}"
                try:
                    folder = self.shifted_dir(layer_id)
                except CtrError:
                    out.append((None, hexdigest, os.path.join(top, algo, hexdigest)))
                    continue
                out += [(layer_id, e, os.path.join(folder, e)) for e in _listdir(folder)]
        return out

    def collect_shifted(self, used, held):
        """Remove the shifted copies that are not `kept(used, held)`: those of
        the layers not in `used`, those whose block's key is not in `held`, and
        what killed copies left, each under its layer's lock (skipped while
        someone holds it: a copy being made). The caller holds ctr.userns.lock,
        so no instance takes a block meanwhile. Returns ([(layer id, block's
        key, bytes)] of the removed copies, the bytes freed, leftovers included)."""
        top = os.path.join(self.dir, "shifted")
        removed, freed = [], 0
        for algo in os.listdir(top) if os.path.isdir(top) else []:
            for hexdigest in os.listdir(os.path.join(top, algo)):
                layer_id = f"{algo}:{hexdigest}"
                try:
                    folder = self.shifted_dir(layer_id)
                except CtrError:
                    freed += _rm(os.path.join(top, algo, hexdigest))  # no layer has that name
                    continue
                with self.lock(layer_id, blocking=False) as got:
                    if not got:
                        continue
                    for entry in os.listdir(folder):
                        if kept(layer_id, entry, used, held):
                            continue
                        path = os.path.join(folder, entry)
                        if TMP in entry:
                            freed += _rm(path)
                            continue
                        doomed = f"{path}{TMP}rm"  # renamed first: a half-removed
                        freed += _rm(doomed)  # copy never looks whole; a killed prune's
                        try:
                            os.rename(path, doomed)
                        except FileNotFoundError:
                            continue
                        size = _rm(doomed)
                        freed += size
                        removed.append((layer_id, entry, size))
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(top, algo))
        with contextlib.suppress(OSError):
            os.rmdir(top)
        return removed, freed

    def _remove(self, layer_id):
        """Remove the layer; returns the bytes freed."""
        dest = self.path(layer_id)
        # Renamed first, so a half-removed layer never looks whole.
        doomed = f"{dest}{TMP}rm"
        with contextlib.suppress(FileNotFoundError):
            os.rename(dest, doomed)
        freed = _rm(doomed) + _rm(dest + ".json")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.short(layer_id))
        # The lock file stays: unlinking it could let a waiter and a newcomer
        # hold "the" lock at once.
        return freed


def kept(layer_id, entry, used, held):
    """Whether a collection keeps the shifted copy `entry` of the layer
    `layer_id`: an image has the layer (it is in `used`) and an instance holds
    the copy's block (its key is in `held`). A leftover's entry is never a key."""
    return layer_id in used and entry in held


def _listdir(path):
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _tree_size(root):
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(root)
               for f in files)


def _rm(path):
    """Remove a file or a tree; returns the bytes it held (ctr.store.du's count)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    import stat

    if stat.S_ISDIR(st.st_mode):
        import shutil

        from ctr.store import du

        freed = du(path)
        shutil.rmtree(path, ignore_errors=True)
        return freed
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return st.st_blocks * 512


def name_key(name):
    """A file name for an image name of any length and characters."""
    import hashlib  # not on the start path of an image that is already here

    return hashlib.sha256(name.encode()).hexdigest()[:32]
