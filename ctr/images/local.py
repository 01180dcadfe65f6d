"""Local images: built by a recipe (ctr.images.recipe) or imported from a rootfs
tarball. Each is a one-layer image whose layer is its own folder,
images/NAME/rootfs, assembled in a staging folder and renamed into place, so a
failed build or import leaves nothing. Not on the start path: its modules
(hashlib, subprocess, tempfile, shutil, tarfile) are imported where used.
"""

import os

from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound
from ctr.images.recipe import recipe_path, recipes_dir, run_recipe
from ctr.store import atomic_write_json, now

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


def _commit(images, name, staging, source, cmd=None):
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
        os.rename(staging, images._path(name))
    except OSError as err:
        raise Conflict(f"image {name} already exists") from err
    return images.get(name)


def build(images, name, progress=None):
    """Build image NAME from its recipe; the caller holds its name's lock."""
    import shutil

    recipe = recipe_path(name)
    if recipe is None:
        raise NotFound(f"no recipe for image {name} in {recipes_dir()}")
    if images.exists(name):
        raise Conflict(f"image {name} already exists (remove it first)")
    staging = images._staging()
    try:
        if progress:
            progress(f"building image {name} from {recipe}")
        code, tail = run_recipe(recipe, os.path.join(staging, "rootfs"), progress)
        if code != 0:
            raise CtrError(f"building image {name} failed: {(tail or ['?'])[-1]}")
        return _commit(images, name, staging, f"recipe {recipe}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_tar(images, path, name, progress=None):
    """Import a rootfs tarball as image NAME; the caller holds its name's lock."""
    import shutil
    import tarfile

    if images.exists(name):
        raise Conflict(f"image {name} already exists (remove it first)")
    staging = images._staging()
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
        return _commit(images, name, staging, f"import {os.path.abspath(path)}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)

