"""The image store: read-only root filesystems plus metadata, under STATE_ROOT/images.

An image is `images/NAME/rootfs/` (the overlay's lower layer, never written to)
and `images/NAME/image.json` (name, id, size, created, default command and env).
Images come from a recipe (`build`, see ctr.images.recipe) or from a rootfs
tarball (`import`). Both are assembled in a temporary folder and renamed into
place, so a failed build leaves nothing.

Reading an image is on the start path of `ctr run`; building, importing and
removing are not: their modules (hashlib, subprocess, tempfile, shutil, tarfile)
are imported where they are used.
"""

import os

from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound
from ctr.images.recipe import recipe_path, recipes_dir, run_recipe
from ctr.spec import check_name
from ctr.store import atomic_write_json, now, read_json

DEFAULT_CMD = ["sh"]


def tree_digest(root):
    """A content digest of a tree: paths, modes, owners, link targets and file bytes."""
    import hashlib

    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            h.update(f"{rel}\0{st.st_mode:o}\0{st.st_uid}:{st.st_gid}\0".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(chunk)
            elif not os.path.isdir(path):
                h.update(str(st.st_rdev).encode())
            h.update(b"\n")
    return "sha256:" + h.hexdigest()


def tree_size(root):
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _rootfs_filter(member, dest):
    """Refuse members that would land outside the rootfs, keep everything else.

    tarfile's "tar" filter does the path checks but also strips setuid bits and
    group/other write, which a root filesystem needs: check with it, keep the
    original member.
    """
    import tarfile

    tarfile.tar_filter(member, dest)
    return member


class ImageStore:
    def __init__(self, store):
        self.store = store
        self.dir = store.images_dir

    def _path(self, name):
        return os.path.join(self.dir, name)

    def rootfs(self, name):
        return os.path.join(self._path(name), "rootfs")

    def get(self, name):
        check_name(name, "image name")
        try:
            meta = read_json(os.path.join(self._path(name), "image.json"), f"image {name}")
        except FileNotFoundError:
            raise NotFound(f"no such image: {name}") from None
        meta["rootfs"] = self.rootfs(name)
        return meta

    def exists(self, name):
        return os.path.isfile(os.path.join(self._path(name), "image.json"))

    def list(self):
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        return [self.get(n) for n in names if not n.startswith(".") and self.exists(n)]

    def ensure(self, name, progress=None):
        """The image NAME, built from its recipe on first use."""
        check_name(name, "image name")
        if not self.exists(name):
            if recipe_path(name) is None:
                raise NotFound(f"no such image: {name} (build or import it first)")
            self.build(name, progress=progress)
        return self.get(name)

    def _staging(self):
        """A folder to assemble an image in, named after this process. What a
        build killed outright (kill -9) left is removed here, once its process
        is gone."""
        import shutil
        import tempfile

        self.store.ensure()
        for entry in os.listdir(self.dir):
            owner = entry.split("-")[1] if entry.startswith(".build-") else ""
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                shutil.rmtree(os.path.join(self.dir, entry), ignore_errors=True)
        return tempfile.mkdtemp(prefix=f".build-{os.getpid()}-", dir=self.dir)

    def _commit(self, name, staging, source, cmd=None):
        rootfs = os.path.join(staging, "rootfs")
        meta = {
            "name": name,
            "id": tree_digest(rootfs),
            "size": tree_size(rootfs),
            "created": now(),
            "source": source,
            "cmd": cmd or DEFAULT_CMD,
            "env": [],
        }
        atomic_write_json(os.path.join(staging, "image.json"), meta)
        os.chmod(staging, 0o755)
        try:
            os.rename(staging, self._path(name))
        except OSError as err:
            raise Conflict(f"image {name} already exists") from err
        return self.get(name)

    def build(self, name, progress=None):
        import shutil

        check_name(name, "image name")
        recipe = recipe_path(name)
        if recipe is None:
            raise NotFound(f"no recipe for image {name} in {recipes_dir()}")
        if self.exists(name):
            raise Conflict(f"image {name} already exists (remove it first)")
        staging = self._staging()
        try:
            if progress:
                progress(f"building image {name} from {recipe}")
            code, tail = run_recipe(recipe, os.path.join(staging, "rootfs"), progress)
            if code != 0:
                raise CtrError(f"building image {name} failed: {(tail or ['?'])[-1]}")
            return self._commit(name, staging, f"recipe {recipe}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def import_tar(self, path, name, progress=None):
        import shutil
        import tarfile

        check_name(name, "image name")
        if self.exists(name):
            raise Conflict(f"image {name} already exists (remove it first)")
        staging = self._staging()
        try:
            rootfs = os.path.join(staging, "rootfs")
            os.mkdir(rootfs, 0o755)
            if progress:
                progress(f"importing {path} as image {name}")
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(rootfs, filter=_rootfs_filter, numeric_owner=True)
            except FileNotFoundError:
                raise InvalidSpec(f"no such file: {path}") from None
            except (tarfile.TarError, OSError, EOFError) as err:
                raise InvalidSpec(f"cannot import {path}: {err}") from err
            return self._commit(name, staging, f"import {os.path.abspath(path)}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove(self, name, used_by=()):
        import shutil
        import tempfile

        check_name(name, "image name")
        if not self.exists(name):
            raise NotFound(f"no such image: {name}")
        if used_by:
            raise Conflict(f"image {name} is used by instance(s): {', '.join(used_by)}")
        # Rename first, so a half-removed image never looks usable.
        doomed = tempfile.mkdtemp(prefix=".rm-", dir=self.dir)
        os.rename(self._path(name), os.path.join(doomed, name))
        shutil.rmtree(doomed)
