"""Images in and out of archives: `ctr image import|load` and `ctr image save`.

What `import PATH` reads, told apart by what it holds:
- an OCI layout directory (index.json, blobs/ALGO/HEX), as `skopeo copy ... oci:DIR` writes;
- an OCI archive (the same as one tar), as `podman save --format oci-archive` writes;
- a docker archive (manifest.json, the config and one tar per layer, maybe a
  `repositories` file and legacy folders), as `docker save` / `podman save` write;
  the whole archive may be gzip- or xz-compressed;
- anything else that is a tar: a root filesystem (ctr.images.local, as before).

The archive is read in place (tarfile's index of its members; nothing is
extracted): each layer is streamed into the layer store by the one unpack path
pulls use (ctr.images.layerstore → ctr.images.layers: hostile members refused,
whiteouts as overlayfs's, the diff ID checked against the config's). Manifests
and configs are checked against their digests where the archive names one. A
name in a manifest that is absolute or has a '..' component refuses the archive.
A refused import leaves nothing: layers it unpacked are collected again, and a
kill -9 leaves only layers no image has, which `image prune` removes.

The config is kept as a blob (STATE_ROOT/blobs), so `save` writes it back as it
was: the image keeps its ID. So are an OCI image's compressed layers (checked against
their digests, as a pull keeps them), so a save writes the same layers (and
config) again; a docker archive's layers are uncompressed tars, not kept twice.

`save` writes what podman writes: a docker archive with uncompressed layers
(`HEX.tar`, `HEX.json`, manifest.json with RepoTags), or an OCI archive with
gzip layers and index.json naming each image (org.opencontainers.image.ref.name).
A layer whose blob is here (a pulled image's) is written from it; any other is
written again from its folder by ctr.images.treetar (its bytes, and so its diff
ID, are the same when ctr wrote the layer; when they differ, the saved config has
the new diff IDs).
"""

import contextlib
import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile

from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound
from ctr.images.reference import host_platform, is_local_name, normalize
from ctr.store import now

MAX_DOC = 4 << 20  # the largest manifest, index or config read
OCI_LAYOUT = "oci-layout"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
FORMATS = ("docker-archive", "oci-archive")
LEVEL = 3  # gzip's, for an oci-archive's layers (see _gzip)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _clean(name, where):
    """A member name an archive's own document gives: relative, no '..'."""
    if not isinstance(name, str) or not name or "\0" in name or name.startswith("/"):
        raise CtrError(f"refused: {where} names {name!r}, not a relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise CtrError(f"refused: {where} names {name!r}, which leaves the archive")
    return "/".join(parts)


def _blob_name(digest, where):
    algo, _, hexdigest = digest.partition(":") if isinstance(digest, str) else ("", "", "")
    if algo not in ("sha256", "sha512") or not re.fullmatch(r"[0-9a-f]+", hexdigest or "-"):
        raise CtrError(f"refused: {where} has an invalid digest {digest!r}")
    return f"blobs/{algo}/{hexdigest}"


def _normal(name):
    return "/".join(p for p in name.split("/") if p not in ("", "."))


class _Folder:
    """An OCI layout directory. Its files are opened component by component with
    O_NOFOLLOW: a symlink in the layout (to a host file, out of the layout) is
    refused, never followed."""

    _DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, root):
        self.root = root

    def has(self, name):
        try:
            self.open(name).close()
        except CtrError:
            return False
        return True

    def open(self, name):
        parts = _clean(name, "the layout").split("/")
        fds = []
        try:
            fds.append(os.open(self.root, self._DIR))
            for part in parts[:-1]:
                fds.append(os.open(part, self._DIR, dir_fd=fds[-1]))
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=fds[-1])
        except OSError as err:
            why = "a symlink, refused" if err.errno == errno.ELOOP else err.strerror
            raise CtrError(f"{self.root}: {name}: {why}") from None
        finally:
            for d in fds:
                os.close(d)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CtrError(f"{self.root}: {name} is not a regular file")
        return open(fd, "rb")

    def close(self):
        pass


class _Archive:
    """A tar archive, read in place through its members' index."""

    def __init__(self, path, tar):
        self.path = path
        self.tar = tar
        self.members = {}
        for member in tar.getmembers():
            self.members[_normal(member.name)] = member

    def has(self, name):
        return name in self.members

    def open(self, name):
        member = self.members.get(_clean(name, "the archive"))
        if member is None:
            raise CtrError(f"{self.path}: {name} is not in the archive")
        try:
            f = self.tar.extractfile(member)
        except KeyError:
            f = None
        if f is None:
            raise CtrError(f"{self.path}: {name} is not a file in the archive")
        return f

    def close(self):
        self.tar.close()


def detect(path):
    """(kind, source): "oci-layout" | "oci-archive" | "docker-archive" with a
    source to read it from, or ("rootfs", None)."""
    if os.path.isdir(path):
        folder = _Folder(path)
        if not folder.has("index.json"):
            raise InvalidSpec(f"cannot import {path}: a directory without index.json is "
                              "not an OCI layout")
        return "oci-layout", folder
    try:
        tar = tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise InvalidSpec(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InvalidSpec(f"cannot import {path}: not a file") from None
    except PermissionError as err:
        raise InvalidSpec(f"cannot import {path}: {err.strerror}") from None
    except (tarfile.TarError, OSError, EOFError):
        raise InvalidSpec(f"cannot import {path}: not a tar archive (nor a gzip, bzip2 or "
                          "xz compressed one)") from None
    try:
        # One pass over the headers; members are forgotten as we go (a root
        # filesystem may have very many).
        top = set()
        while (member := tar.next()) is not None:
            tar.members.clear()
            name = _normal(member.name)
            if "/" not in name:
                top.add(name)
            elif name.count("/") == 1 and name.endswith("/VERSION"):
                top.add("VERSION")  # a legacy layer folder
    except (tarfile.TarError, OSError, EOFError) as err:
        tar.close()
        raise InvalidSpec(f"cannot import {path}: not a valid tar archive ({err})") from None
    tar.close()
    if "manifest.json" in top:
        kind = "docker-archive"
    elif "index.json" in top and OCI_LAYOUT in top:
        kind = "oci-archive"
    elif "repositories" in top and "VERSION" in top:
        raise InvalidSpec(f"cannot import {path}: a docker archive of the format before "
                          "docker 1.10 (no manifest.json)")
    else:
        return "rootfs", None
    try:
        return kind, _Archive(path, tarfile.open(path, "r:*"))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InvalidSpec(f"cannot import {path}: {err}") from None


def _read(source, name, what, digest=None):
    """A small document of the archive, checked against `digest` when given:
    (bytes, parsed JSON)."""
    with source.open(name) as f:
        data = f.read(MAX_DOC + 1)
    if len(data) > MAX_DOC:
        raise CtrError(f"refused: the archive's {what} is larger than {MAX_DOC} bytes")
    if digest is not None:
        algo, _, hexdigest = digest.partition(":")
        if hashlib.new(algo, data).hexdigest() != hexdigest:
            raise CtrError(f"refused: the archive's {what} does not match its digest {digest}")
    try:
        return data, json.loads(data)
    except ValueError as err:
        raise CtrError(f"refused: the archive's {what} is not JSON: {err}") from None


class _Image:
    """One image found in an archive."""

    def __init__(self, names, config_bytes, config, layers, digest=None):
        self.names = names  # what the archive calls it
        self.config_bytes = config_bytes
        self.config = config
        self.layers = layers  # [(member name, diff id, media type)]
        self.digest = digest  # the manifest's, for an OCI image
        self.id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()


def _check_config(config, count, where):
    if not isinstance(config, dict):
        raise CtrError(f"refused: {where}'s config is not a JSON object")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") \
        if isinstance(config.get("rootfs"), dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != count or \
            not all(isinstance(d, str) for d in diff_ids):
        raise CtrError(f"refused: {where}: the layers and the config's diff_ids differ")
    if not diff_ids:
        raise CtrError(f"refused: {where} is an image without layers")
    return diff_ids


def _docker_images(source):
    _, manifest = _read(source, "manifest.json", "manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise CtrError("refused: the archive's manifest.json lists no image")
    out = []
    for entry in manifest:
        if not isinstance(entry, dict):
            raise CtrError("refused: the archive's manifest.json has a malformed entry")
        config_name = _clean(entry.get("Config"), "manifest.json")
        layers = entry.get("Layers")
        if not isinstance(layers, list):
            raise CtrError("refused: the archive's manifest.json has no Layers list")
        layers = [_clean(name, "manifest.json") for name in layers]
        named = _HEX64.search(os.path.basename(config_name))
        data, config = _read(source, config_name, f"config {config_name}",
                             f"sha256:{named.group()}" if named else None)
        diff_ids = _check_config(config, len(layers), config_name)
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise CtrError("refused: the archive's manifest.json has malformed RepoTags")
        out.append(_Image(tags, data, config, [(name, diff, None) for name, diff
                                               in zip(layers, diff_ids, strict=True)]))
    return out


def _fits(p, want):
    return (p.get("os"), p.get("architecture")) == tuple(want[:2]) and \
        (not want[2] or p.get("variant") == want[2])


def _pick(index, platform, where):
    """The manifest descriptor of `platform` in an index (the host's by default)."""
    want = platform or host_platform()
    for desc in index.get("manifests") or []:
        p = desc.get("platform") or {} if isinstance(desc, dict) else {}
        if isinstance(p, dict) and _fits(p, want):
            return desc
    raise CtrError(f"{where} has no image for {'/'.join(x for x in want if x)}")


def _oci_images(source, platform=None):
    _, index = _read(source, "index.json", "index.json")
    descs = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descs, list) or not descs:
        raise CtrError("refused: the archive's index.json lists no image")
    if not all(isinstance(d, dict) for d in descs):
        raise CtrError("refused: the archive's index.json has a malformed entry")
    if any(isinstance(d.get("platform"), dict) for d in descs):
        # the images of several platforms listed side by side: the one wanted
        want = platform or host_platform()
        descs = [d for d in descs if not isinstance(d.get("platform"), dict) or
                 _fits(d["platform"], want)]
        if not descs:
            raise CtrError(f"the archive has no image for {'/'.join(x for x in want if x)}")
    out = []
    for desc in descs:
        notes = desc.get("annotations") or {}
        ref = notes.get(CONTAINERD_NAME) or notes.get(REF_NAME) or ""
        # a bare tag (skopeo's oci:DIR:latest) is not a name
        names = [ref] if isinstance(ref, str) and any(c in ref for c in "/:") else []
        depth = 0
        while desc.get("mediaType") in INDEX_TYPES:
            depth += 1
            if depth > 4:
                raise CtrError("refused: indexes nested too deep")
            digest = desc.get("digest")
            _, inner = _read(source, _blob_name(digest, "index.json"), "index", digest)
            desc = _pick(inner if isinstance(inner, dict) else {}, platform, "the archive")
        digest = desc.get("digest")
        _, manifest = _read(source, _blob_name(digest, "index.json"), "manifest", digest)
        if not isinstance(manifest, dict):
            raise CtrError("refused: the archive's manifest is not a JSON object")
        cdesc = manifest.get("config") or {}
        cdigest = cdesc.get("digest") if isinstance(cdesc, dict) else None
        data, config = _read(source, _blob_name(cdigest, "the manifest"), "config", cdigest)
        layers = manifest.get("layers")
        if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise CtrError("refused: the archive's manifest has no layers list")
        diff_ids = _check_config(config, len(layers), "the manifest")
        out.append(_Image(names, data, config,
                          [(_blob_name(x.get("digest"), "the manifest"), diff,
                            x.get("mediaType")) for x, diff in zip(layers, diff_ids,
                                                                   strict=True)],
                          digest=digest))
    return out


def _record_name(text):
    name = text if is_local_name(text) else normalize(text)
    if is_local_name(name):
        from ctr.spec import check_name

        check_name(name, "image name")
    return name


def _put_blob(blobs, data):
    """Keep `data` in the blob store; returns its digest."""
    import tempfile

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(blobs, "sha256", digest[7:])
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
        try:
            with open(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    return digest


def record_fields(config, config_id, layers, size, source):
    """An image record's fields from its (OCI) config document."""
    run = config.get("config") or {}
    if not isinstance(run, dict):
        raise CtrError("refused: the image's config.config is not a JSON object")
    cmd = list(run.get("Entrypoint") or []) + list(run.get("Cmd") or [])
    return {"id": config_id, "layers": layers, "config": run, "os": config.get("os"),
            "architecture": config.get("architecture"), "variant": config.get("variant"),
            "created": config.get("created") or now(), "size": size, "source": source,
            "cmd": cmd or None, "env": list(run.get("Env") or []),
            "workdir": run.get("WorkingDir") or None}


def import_path(images, path, name=None, platform=None, progress=None):
    """Import PATH (see the module's doc). Returns the records written: one per
    name (NAME, else the names the archive records)."""
    kind, source = detect(path)
    if kind == "rootfs":
        if not name:
            raise InvalidSpec(f"{path} is a root filesystem tarball: give the image a NAME")
        return [images.import_tar(path, name, progress=progress)]
    try:
        found = _docker_images(source) if kind == "docker-archive" else \
            _oci_images(source, platform)
        if name:
            if len(found) != 1:
                raise InvalidSpec(f"{path} holds {len(found)} images: import it without a "
                                  "NAME (each gets the names it has)")
            found[0].names = [name]
        for img in found:
            if not img.names:
                raise InvalidSpec(f"an image of {path} has no name: give it one "
                                  f"(ctr image import {path} NAME)")
            img.names = list(dict.fromkeys(_record_name(n) for n in img.names))
        names = sorted({n for img in found for n in img.names})
        ok = False
        out = []
        try:
            with contextlib.ExitStack() as locks:
                for n in names:
                    locks.enter_context(images._name_lock(n))
                for n in names:
                    if images.exists(n) and "rootfs" in images._read(n):
                        raise Conflict(f"image {n} already exists (remove it first)")
                locks.enter_context(images.layers.store_lock(shared=True))
                for img in found:
                    out += _add(images, img, kind, path, source, progress)
                ok = True
        finally:
            if not ok:
                images.collect(blocking=False)
        return out
    finally:
        source.close()


def _keep_blob(images, source, member, digest):
    """Copy the compressed layer `member` into the blob store, checked against its
    digest (as a pull keeps its blobs: `save` writes them back as they were)."""
    import tempfile

    dest = os.path.join(images.blobs, "sha256", digest[7:])
    if os.path.isfile(dest):
        return
    os.makedirs(os.path.dirname(dest), 0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(dest))
    try:
        h = hashlib.sha256()
        with open(fd, "wb") as out, source.open(member) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if "sha256:" + h.hexdigest() != digest:
            raise CtrError(f"refused: the archive's layer {member} does not match its "
                           f"digest {digest}")
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _add(images, img, kind, path, source, progress):
    size = 0
    kept = {}
    for i, (member, diff_id, media_type) in enumerate(img.layers, 1):
        if progress:
            progress(f"layer {i}/{len(img.layers)} {diff_id[:19]}")
        with source.open(member) as f:  # read only when the layer is not here yet
            images.layers.add(f, diff_id, media_type)
        size += images.layers.size(diff_id)
        if kind != "docker-archive" and member.startswith("blobs/sha256/") and \
                str(media_type).endswith(("gzip", "zstd")):
            digest = "sha256:" + member[len("blobs/sha256/"):]
            _keep_blob(images, source, member, digest)
            kept[diff_id] = {"digest": digest, "mediaType": media_type}
    config_id = _put_blob(images.blobs, img.config_bytes)
    fields = record_fields(img.config, config_id, [d for _, d, _ in img.layers], size,
                           f"import {kind}:{os.path.abspath(path)}")
    fields.update(digest=img.digest, imported=now(), layer_blobs=kept,
                  blobs=sorted({config_id, *(b["digest"] for b in kept.values())}))
    from ctr import events

    out = []
    for n in img.names:
        images._write(n, fields)
        events.image(images.store.root, "load", n, config_id)
        out.append(images.get(n))
    return out


# -- save -----------------------------------------------------------------------

def _layer_blobs(images, img):
    """{diff id: (blob path, media type)} of the layers whose blobs are here: a
    pulled image's (from its manifest), or those a record lists itself."""
    from ctr.images.pull import _blob_path

    out = {}
    for diff_id, desc in (img.get("layer_blobs") or {}).items():
        out[diff_id] = (_blob_path(images.blobs, desc["digest"]), desc.get("mediaType"))
    digest = img.get("digest")
    if not digest or "config" not in img:
        return out
    try:
        with open(_blob_path(images.blobs, digest), "rb") as f:
            manifest = json.loads(f.read(MAX_DOC))
        layers = manifest["layers"]
    except (OSError, ValueError, KeyError, TypeError, CtrError):
        return out
    if isinstance(layers, list) and len(layers) == len(img["layers"]):
        for desc, diff_id in zip(layers, img["layers"], strict=True):
            try:
                out.setdefault(diff_id, (_blob_path(images.blobs, desc["digest"]),
                                         desc.get("mediaType")))
            except (CtrError, KeyError, TypeError):
                continue
    return {k: v for k, v in out.items() if os.path.isfile(v[0])}


def base_config(images, img):
    """The image's whole OCI config document: its blob when kept, else made from
    its record (a recipe's build, a rootfs import), one history entry per layer."""
    from ctr.images.pull import _blob_path

    try:
        with open(_blob_path(images.blobs, img["id"]), "rb") as f:
            data = f.read(MAX_DOC + 1)
        if hashlib.sha256(data).hexdigest() == img["id"].partition(":")[2]:
            return json.loads(data)
    except (OSError, ValueError, CtrError):
        pass
    run = img.get("config")
    if not isinstance(run, dict):
        run = {k: v for k, v in (("Cmd", img.get("cmd")), ("Env", img.get("env")),
                                 ("WorkingDir", img.get("workdir"))) if v}
    created = img.get("created") or now()
    return {"created": created, "architecture": img.get("architecture") or host_platform()[1],
            "os": img.get("os") or "linux", "config": run,
            "rootfs": {"type": "layers", "diff_ids": list(img["layers"])},
            "history": [{"created": created, "created_by": img.get("source") or "ctr"}
                        for _ in img["layers"]]}


class _Layers:
    """Each layer of the images being saved, once, as the archive wants it."""

    def __init__(self, images, staging, fmt, progress):
        self.images = images
        self.staging = staging
        self.fmt = fmt
        self.progress = progress
        self.done = {}  # diff id -> (path, digest, size, media type, new diff id)

    def get(self, img, diff_id, blobs):
        if diff_id in self.done:
            return self.done[diff_id]
        from ctr.images.treetar import HashingWriter, open_tar, write_layer

        if self.progress:
            self.progress(f"layer {diff_id[:19]}")
        tar_path = os.path.join(self.staging, f"{len(self.done)}.tar")
        blob = blobs.get(diff_id)
        if blob and self.fmt == "oci-archive" and blob[1] in (
                OCI_LAYER_GZIP, "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.oci.image.layer.v1.tar+zstd"):
            path, media = blob
            digest = "sha256:" + os.path.basename(path) if "/sha256/" in path else None
            if digest is None:
                blob = None  # a sha512 blob: written again below
            else:
                media = OCI_LAYER_GZIP if media.endswith("gzip") else media
                got = (path, digest, os.path.getsize(path), media, diff_id)
                self.done[diff_id] = got
                return got
        with open(tar_path, "wb") as f:
            out = HashingWriter(f)
            if blob:  # a pulled layer's blob, uncompressed
                from ctr.images.layers import _decompressed  # the sniffing reader

                with open(blob[0], "rb") as raw, contextlib.ExitStack() as stack:
                    stream = _decompressed(raw, stack)
                    while chunk := stream.read(1 << 20):
                        out.write(chunk)
            else:
                with open_tar(out) as tar:
                    write_layer(tar, self._folder(img, diff_id))
        new_diff = out.digest()
        got = (tar_path, new_diff, out.size, "application/vnd.oci.image.layer.v1.tar",
               new_diff)
        if self.fmt == "oci-archive":
            gz = tar_path + ".gz"
            with open(gz, "wb") as dst:
                hashed = HashingWriter(dst)
                _gzip(tar_path, hashed)
            os.unlink(tar_path)
            got = (gz, hashed.digest(), hashed.size, OCI_LAYER_GZIP, new_diff)
        self.done[diff_id] = got
        return got

    def _folder(self, img, diff_id):
        i = img["layers"].index(diff_id)
        folder = img["lowerdirs"][len(img["layers"]) - 1 - i]
        if not os.path.isdir(folder):
            raise NotFound(f"the image {img['name']} is incomplete: its layer {folder} is "
                           "gone")
        return folder


def _gzip(path, out, chunk=4 << 20):
    """The file `path` gzip-compressed onto `out`, on every CPU: level 3, which
    gives what podman's compressor gives for the same CPU time (measured on the debian
    image's 147 MB: 62 MB, 2.5 s; zlib's level 6 saves 5% for twice that). One gzip
    member per chunk (RFC 1952 allows several; Go's and Python's
    readers, so podman, docker and skopeo, read them as one stream). zlib lets go of
    the GIL while it compresses."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    workers = os.cpu_count() or 1
    with open(path, "rb") as f, ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        while data := f.read(chunk):
            pending.append(pool.submit(gzip.compress, data, LEVEL, mtime=0))
            if len(pending) > 2 * workers:  # memory stays bounded
                out.write(pending.popleft().result())
        if not pending and not out.size:
            pending.append(pool.submit(gzip.compress, b"", LEVEL, mtime=0))  # an empty file
        while pending:
            out.write(pending.popleft().result())


def _repo_tag(name):
    """The name an archive records: a plain name gets docker's :latest."""
    if "@" in name:
        return None
    return f"{name}:latest" if is_local_name(name) else name


def _add_bytes(tar, name, data):
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar, name, path, size):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o444, 0
    with open(path, "rb") as f:
        tar.addfile(info, f)


def save(images, names, out, fmt="docker-archive", progress=None):
    """Write the images `names` into an archive on the binary file `out`."""
    if fmt not in FORMATS:
        raise InvalidSpec(f"invalid --format {fmt!r}: use docker-archive or oci-archive")
    picked = {}  # image id -> (record, [names])
    for text in names:
        img = images.get(text)
        picked.setdefault(img["id"], (img, []))[1].append(img["name"])
    staging = images._staging(".save-")
    try:
        layers = _Layers(images, staging, fmt, progress)
        tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        manifest, index, written = [], [], set()
        for img, img_names in picked.values():
            config = base_config(images, img)
            blobs = _layer_blobs(images, img)
            got = [layers.get(img, d, blobs) for d in img["layers"]]
            new_diffs = [g[4] for g in got]
            config_bytes = None
            if new_diffs == list(config["rootfs"]["diff_ids"]):
                from ctr.images.pull import _blob_path

                try:
                    with open(_blob_path(images.blobs, img["id"]), "rb") as f:
                        config_bytes = f.read()
                except (OSError, CtrError):
                    pass
            if config_bytes is None or hashlib.sha256(config_bytes).hexdigest() != \
                    img["id"].partition(":")[2]:
                config = {**config, "rootfs": {"type": "layers", "diff_ids": new_diffs}}
                config_bytes = json.dumps(config, separators=(",", ":")).encode()
            config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
            tags = [t for t in map(_repo_tag, img_names) if t]
            if fmt == "docker-archive":
                cname = f"{config_digest[7:]}.json"
                if cname not in written:
                    _add_bytes(tar, cname, config_bytes)
                    written.add(cname)
                for path, digest, size, _, _ in got:
                    if f"{digest[7:]}.tar" not in written:
                        _add_file(tar, f"{digest[7:]}.tar", path, size)
                        written.add(f"{digest[7:]}.tar")
                manifest.append({"Config": cname, "RepoTags": tags,
                                 "Layers": [f"{g[1][7:]}.tar" for g in got]})
                continue
            cname = f"blobs/sha256/{config_digest[7:]}"
            if cname not in written:
                _add_bytes(tar, cname, config_bytes)
                written.add(cname)
            for path, digest, size, _, _ in got:
                bname = f"blobs/sha256/{digest[7:]}"
                if bname not in written:
                    _add_file(tar, bname, path, size)
                    written.add(bname)
            doc = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                           "size": len(config_bytes)},
                "layers": [{"mediaType": media, "digest": digest, "size": size}
                           for _, digest, size, media, _ in got]},
                separators=(",", ":")).encode()
            mdigest = "sha256:" + hashlib.sha256(doc).hexdigest()
            if f"blobs/sha256/{mdigest[7:]}" not in written:
                _add_bytes(tar, f"blobs/sha256/{mdigest[7:]}", doc)
                written.add(f"blobs/sha256/{mdigest[7:]}")
            desc = {"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(doc)}
            index += [dict(desc, annotations={REF_NAME: t}) for t in tags] or [desc]
        if fmt == "docker-archive":
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        else:
            _add_bytes(tar, OCI_LAYOUT, b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2,
                                                      "manifests": index}).encode())
        tar.close()
        return [n for _, ns in picked.values() for n in ns]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def output(path):
    """A binary file to write an archive to: `path` appears only when complete
    (written beside it, renamed into place); None or "-" is stdout."""
    import sys
    import tempfile

    if path in (None, "-"):
        if sys.stdout.isatty():
            raise InvalidSpec("refusing to write an archive to a terminal: use -o FILE or "
                              "a pipe")
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise InvalidSpec(f"{path} is a directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.ctr-",
                               dir=os.path.dirname(path))
    try:
        with open(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def spooled(images, path):
    """A path to the archive `path`, or to a copy of stdin (None or "-") kept in a
    staging folder of the image store until the import ends."""
    import sys

    if path not in (None, "-"):
        yield path
        return
    if sys.stdin.isatty():
        raise InvalidSpec("no archive on stdin: use -i FILE or a pipe")
    staging = images._staging(".save-")
    try:
        spool = os.path.join(staging, "stdin.tar")
        with open(spool, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        yield spool
    finally:
        shutil.rmtree(staging, ignore_errors=True)
