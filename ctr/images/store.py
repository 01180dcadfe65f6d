"""The image store: image records under STATE_ROOT/images, their layers in the
layer store (ctr.images.layerstore).

Two forms of record, both read:
- a local image (a recipe's build, a rootfs import, and every image of a state
  root made before layers): `images/NAME/image.json` and `images/NAME/rootfs/`,
  a one-layer image whose one layer is its own folder;
- a layered image (pulled, or tagged): `images/r-<hash of NAME>/image.json`, whose
  "layers" lists its layers' ids bottom to top, kept in STATE_ROOT/layers and
  shared. "config" is the image's OCI config (Entrypoint, Cmd, Env, ...) as the
  image has it; "id" is the config's digest, "digest" the manifest's.
NAME is a plain name (busybox) or a normalized reference
(docker.io/library/alpine:latest). Tagging a local image moves its rootfs into the
layer store (its tree digest is the layer's id), so both names share it.
Builds, imports and pulls are assembled in a temporary folder and renamed into
place, under a lock per name: a failed one leaves nothing, and concurrent first
uses of one image make it once and all use it.

Reading an image is on the start path of `ctr run`; building, importing and
removing are not: their modules (hashlib, subprocess, tempfile, shutil, tarfile)
are imported where they are used.
"""

import os

from ctr import events
from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound
from ctr.images.recipe import recipe_path
from ctr.images.reference import is_local_name, normalize
from ctr.spec import check_name
from ctr.spec.parse import NAME_RE
from ctr.store import atomic_write_json, du, now, read_json

PULL_POLICIES = ("missing", "always", "never")
PAGE = 4096  # a mount's options must fit in one page
MAX_LAYERS = 500  # overlayfs's most lower layers
_STAGING = (".build-", ".pull-", ".save-", ".commit-")


def _plain(text):
    """The local name `text` may mean: busybox for busybox and busybox:latest."""
    if is_local_name(text):
        return text
    if text.endswith(":latest") and is_local_name(text[:-len(":latest")]):
        return text[:-len(":latest")]
    return None


class ImageStore:
    def __init__(self, store):
        from ctr.images.layerstore import LayerStore

        self.store = store
        self.dir = store.images_dir
        self.layers = LayerStore(store.root)
        self.blobs = os.path.join(store.root, "blobs")

    # -- names and records ------------------------------------------------------

    def _path(self, name):
        if is_local_name(name):
            return os.path.join(self.dir, name)
        from ctr.images.layerstore import name_key

        return os.path.join(self.dir, "r-" + name_key(name))

    def _meta_path(self, name):
        return os.path.join(self._path(name), "image.json")

    def exists(self, name):
        return os.path.isfile(self._meta_path(name))

    def find(self, text):
        """The record name `text` means (itself, busybox for busybox:latest, or its
        normalized reference), or None when there is no such image here."""
        plain = _plain(text) if isinstance(text, str) else None
        if plain is not None and NAME_RE.fullmatch(plain) and self.exists(plain):
            return plain
        try:
            ref = normalize(text)
        except InvalidSpec:
            if plain is not None and NAME_RE.fullmatch(plain):
                return None
            raise
        return ref if self.exists(ref) else None

    def get(self, text):
        name = self.find(text)
        if name is None:
            raise NotFound(f"no such image: {text}")
        return self._read(name)

    def _read(self, name):
        try:
            meta = read_json(self._meta_path(name), f"image {name}")
        except FileNotFoundError:
            raise NotFound(f"no such image: {name}") from None
        meta["name"] = name
        rootfs = os.path.join(self._path(name), "rootfs")
        if "layers" in meta and not os.path.isdir(rootfs):
            meta["lowerdirs"] = [self.layers.path(lid) for lid in reversed(meta["layers"])]
        else:  # a local image: its one layer is its own folder
            meta["rootfs"] = rootfs
            meta["layers"] = [meta["id"]]
            meta["lowerdirs"] = [rootfs]
        return meta

    def rootfs(self, name):
        """The top layer of NAME (the whole root of a one-layer image)."""
        try:
            return self.get(name)["lowerdirs"][0]
        except CtrError:
            return os.path.join(self._path(name), "rootfs")

    def layer_dirs(self, name, img=None):
        """The folders of image NAME's layers, top first, each checked to be
        there (what --userns=auto's idmapped mounts are made of)."""
        img = img or self.get(name)
        dirs = img["lowerdirs"]
        for d in dirs:
            if not os.path.isdir(d):
                raise NotFound(f"the image {name} is incomplete: its layer {d} is gone "
                               "(pull it again)")
        if len(dirs) > MAX_LAYERS:
            raise CtrError(f"the image {name} has {len(dirs)} layers: overlayfs stacks "
                           f"at most {MAX_LAYERS}")
        return dirs

    def lowerdir(self, name, reserve=0):
        """The overlay's lowerdir option of image NAME: its layers, top first,
        colon-joined. `reserve`: the bytes the rest of the mount's options take.
        When the full paths do not fit in one page: (the layer store's folder,
        short names relative to it), which ctr.rootfs.mount_overlay mounts from
        that folder."""
        img = self.get(name)
        dirs = self.layer_dirs(name, img)
        joined = ":".join(dirs)
        if len(joined) + reserve < PAGE or "rootfs" in img:
            return joined
        # podman's way: short names (layers/l/...), relative to the layer store
        shorts = [self.layers.short(lid) for lid in reversed(img["layers"])]
        for short, d in zip(shorts, dirs, strict=True):
            if os.path.realpath(short) != os.path.realpath(d):
                raise CtrError(f"the image {name}: the short name {short} is not its "
                               f"layer {d} (a prefix shared by two layers)")
        rel = ":".join(os.path.relpath(short, self.layers.dir) for short in shorts)
        if len(rel) + reserve >= PAGE:
            raise CtrError(f"the image {name} has {len(dirs)} layers: even their short "
                           f"names do not fit in one mount's options ({PAGE} bytes)")
        return self.layers.dir, rel

    def list(self):
        try:
            entries = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            if entry.startswith(".") or not os.path.isdir(os.path.join(self.dir, entry)):
                continue
            try:
                meta = read_json(os.path.join(self.dir, entry, "image.json"), f"image {entry}")
            except FileNotFoundError:
                continue
            out.append(self._read(meta.get("name", entry)))
        return sorted(out, key=lambda m: m["name"])

    def _name_lock(self, name):
        from ctr.images.layerstore import flock, name_key

        self.store.ensure()
        self.layers.ensure()
        return flock(os.path.join(self.layers.locks, "image-" + name_key(name)))

    def _write(self, name, meta):
        path = self._path(name)
        os.makedirs(path, 0o755, exist_ok=True)
        keep = {k: v for k, v in meta.items() if k not in ("lowerdirs", "rootfs")}
        atomic_write_json(os.path.join(path, "image.json"), {**keep, "name": name})

    # -- first use: local, built, or pulled ---------------------------------------

    def ensure(self, text, pull="missing", platform=None, tls_verify=True, progress=None,
               terminal=False):
        """The image `text` as `ctr run` finds it: a local image; else one its recipe
        builds (busybox, debian: no network); else pulled (unless pull is never).
        `pull` always pulls again what came from a registry."""
        if pull not in PULL_POLICIES:
            raise InvalidSpec(f"invalid --pull {pull!r}: use missing, always or never")
        name = self.find(text)
        if name is not None:
            img = self._read(name)
            if pull != "always" or not str(img.get("source", "")).startswith("pull "):
                return img
        plain = _plain(text)
        if name is None and plain and recipe_path(plain) is not None:
            with self._name_lock(plain):
                if not self.exists(plain):
                    self._build(plain, progress)
            return self.get(plain)
        if pull == "never":
            raise NotFound(f"no such image: {text} (--pull never)")
        ref = normalize(text)
        try:
            return self.pull(ref, platform=platform, tls_verify=tls_verify,
                             progress=progress, terminal=terminal,
                             missing_only=pull == "missing")
        except NotFound:
            raise
        except CtrError as err:
            raise NotFound(f"no such image: {text} ({err})") from None

    def pull(self, text, platform=None, tls_verify=True, progress=None, terminal=False,
             missing_only=False):
        """Pull `text` from its registry (again, when it is here already, unless
        `missing_only`: then the first of concurrent pulls fetches it, and the
        others wait for it and use it)."""
        import shutil

        from ctr.images.pull import fetch

        ref = normalize(text)
        with self._name_lock(ref):
            if missing_only and self.exists(ref):
                return self.get(ref)
            ok = False
            try:
                with self.layers.store_lock(shared=True):
                    staging = self._staging(".pull-")
                    try:
                        fields = fetch(ref, staging, self.blobs, self.layers,
                                       platform=platform, tls_verify=tls_verify,
                                       terminal=terminal, progress=progress)
                    finally:
                        shutil.rmtree(staging, ignore_errors=True)
                    fields.pop("new_layers")
                    config = fields["config"]
                    cmd = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
                    meta = {**fields, "created": fields.get("image_created") or now(),
                            "pulled": now(), "source": f"pull docker://{ref}",
                            "cmd": cmd or None, "env": list(config.get("Env") or []),
                            "workdir": config.get("WorkingDir") or None}
                    self._write(ref, meta)
                    ok = True
            finally:
                if not ok:
                    self.collect(blocking=False)  # what this pull left, unless others pull
        events.image(self.store.root, "pull", ref, meta.get("id", ""))
        return self.get(ref)

    def _staging(self, prefix=".build-"):
        """A folder to assemble an image in, named after this process. What a
        build or pull killed outright (kill -9) left is removed here, once its
        process is gone."""
        import tempfile

        self.store.ensure()
        self._sweep()
        return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=self.dir)

    def _sweep(self):
        import shutil

        for entry in os.listdir(self.dir):
            owner = entry.split("-")[1] if entry.startswith(_STAGING) else ""
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                shutil.rmtree(os.path.join(self.dir, entry), ignore_errors=True)

    def build(self, name, progress=None):
        check_name(name, "image name")
        with self._name_lock(name):
            return self._build(name, progress)

    def _build(self, name, progress=None):
        from ctr.images.local import build

        return build(self, name, progress)

    def import_tar(self, path, name, progress=None):
        from ctr.images.local import import_tar

        check_name(name, "image name")
        with self._name_lock(name):
            return import_tar(self, path, name, progress)

    def import_path(self, path, name=None, platform=None, progress=None):
        """Import an OCI layout, an OCI or docker archive, or a rootfs tarball
        (ctr.images.archive). Returns the records written."""
        from ctr.images.archive import import_path

        return import_path(self, path, name, platform=platform, progress=progress)

    # -- tag, remove, prune -------------------------------------------------------

    def tag(self, src, new):
        """NEW names the image SRC too (a plain name, or a reference normalized)."""
        name = self.find(src)
        if name is None:
            raise NotFound(f"no such image: {src}")
        new_name = new if is_local_name(new) else normalize(new)
        if is_local_name(new_name):
            check_name(new_name, "image name")
        if new_name == name:
            return self.get(name)
        with self._name_lock(name):
            meta = self._read(name)
            if "rootfs" in meta:
                meta = self._migrate(name, meta)
        with self._name_lock(new_name):
            if self.exists(new_name) and "rootfs" in self._read(new_name):
                raise Conflict(f"image {new_name} already exists (remove it first)")
            self._write(new_name, {**meta, "tagged": now()})
        events.image(self.store.root, "tag", new_name, meta.get("id", ""))
        return self.get(new_name)

    def _migrate(self, name, meta):
        """A local image's rootfs becomes a layer of the layer store (keyed by its
        tree digest), so other names can share it."""
        import shutil

        with self.layers.store_lock(shared=True):
            rootfs = meta["rootfs"]
            self._write(name, {**meta, "layers": [meta["id"]]})
            if not self.layers.adopt(rootfs, meta["id"], meta.get("size", 0)):
                shutil.rmtree(rootfs)
        return self._read(name)

    def record_size(self, name):
        """Bytes on disk of the image `name`'s own folder: its record, and the
        rootfs of a recipe build or rootfs import (not the layer store's)."""
        return du(self._path(name))

    def remove(self, text, users_of=None, force=False, collect=True):
        """Remove the name `text`; its layers go when no other image has them
        (now, unless not `collect`: the caller collects, and counts, later).
        users_of(name) -> (all users, running users)."""
        import shutil
        import tempfile

        name = self.find(text)
        if name is None:
            raise NotFound(f"no such image: {text}")
        used, running = users_of(name) if users_of else ((), ())
        if running:
            raise Conflict(f"image {name} is used by running instance(s): "
                           f"{', '.join(running)} (stop them first)")
        if used and not force:
            raise Conflict(f"image {name} is used by instance(s): {', '.join(used)} "
                           "(remove them first, or image rm -f)")
        with self._name_lock(name):
            image_id = self._read(name).get("id", "")
            # Rename first, so a half-removed image never looks usable.
            doomed = tempfile.mkdtemp(prefix=".rm-", dir=self.dir)
            os.rename(self._path(name), os.path.join(doomed, "image"))
            shutil.rmtree(doomed)
        events.image(self.store.root, "untag", name, image_id)
        events.image(self.store.root, "delete", name, image_id)
        if collect:
            self.collect(blocking=False)
        return name

    def collect(self, blocking=True):
        """Remove the layers and blobs no image has, the shifted copies of a
        block no instance holds (ctr.userns), and what killed builds, pulls,
        unpacks and copies left. Returns {"layers": removed layer ids, "blobs":
        how many blobs, "shifted": [{"layer", "block", "size"}] the removed
        copies, "reclaimed": the bytes freed in all}, or None when a pull holds
        the store (not `blocking`)."""
        from ctr.images.layerstore import flock

        self.store.ensure()
        self.layers.ensure()
        with flock(os.path.join(self.layers.locks, "store"), blocking=blocking) as got:
            if not got:
                return None
            self._sweep()
            images = self.list()
            used_layers = {lid for img in images for lid in img["layers"]}
            used_blobs = {b for img in images for b in img.get("blobs", ())}
            removed, freed = self.layers.collect(used_layers)
            shifted = []
            if os.path.isdir(os.path.join(self.layers.dir, "shifted")):
                from ctr import userns

                with userns.lock(self.store):
                    copies, more = self.layers.collect_shifted(used_layers,
                                                               userns.held_keys(self.store))
                shifted = [{"layer": lid, "block": key, "size": size}
                           for lid, key, size in copies]
                freed += more
            blobs, more = self._collect_blobs(used_blobs)
            return {"layers": removed, "blobs": blobs, "shifted": shifted,
                    "reclaimed": freed + more}

    def _collect_blobs(self, used):
        """Remove the blobs not in `used`: (how many, the bytes freed)."""
        count = freed = 0
        for algo in ("sha256", "sha512"):
            parent = os.path.join(self.blobs, algo)
            for entry in os.listdir(parent) if os.path.isdir(parent) else []:
                if f"{algo}:{entry}" not in used:
                    path = os.path.join(parent, entry)
                    try:
                        blocks = os.lstat(path).st_blocks
                        os.unlink(path)
                        count += 1
                        freed += blocks * 512
                    except IsADirectoryError:
                        import shutil

                        freed += du(path)
                        shutil.rmtree(path, ignore_errors=True)
                    except FileNotFoundError:
                        pass
        return count, freed
