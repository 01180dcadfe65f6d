"""Pull: skopeo fetches an image into an OCI layout, we verify and unpack it.

    skopeo copy docker://REF oci:STAGING:image --dest-shared-blob-dir STATE_ROOT/blobs

skopeo speaks the registry protocol, auth files, registries.conf mirrors and the
signature policy, picks the platform's manifest from an index (--override-*), and
verifies every blob it fetches against its digest. The blobs are kept in
STATE_ROOT/blobs (as containerd keeps its content store): a blob already there
is not fetched again, so a second image on a base pulls only its own layers.
Then each layer is unpacked into the layer store (ctr.images.layerstore), its
diff ID checked against the config's rootfs.diff_ids by ctr.images.layers.
"""

import hashlib
import json
import os
import subprocess

from ctr.errors import CtrError

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


def _blob_path(blobs, digest):
    algo, _, hexdigest = (digest or "").partition(":")
    if algo not in ("sha256", "sha512") or not hexdigest or \
            any(c not in "0123456789abcdef" for c in hexdigest):
        raise CtrError(f"refused: invalid digest {digest!r}")
    return os.path.join(blobs, algo, hexdigest)


def _read_blob(blobs, digest, what, limit=4 << 20):
    """A small blob (manifest, config), checked against its digest, as JSON."""
    path = _blob_path(blobs, digest)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise CtrError(f"the image's {what} {digest} is missing: {err.strerror}") from None
    if len(data) > limit:
        raise CtrError(f"refused: the image's {what} is larger than {limit} bytes")
    algo, _, hexdigest = digest.partition(":")
    if hashlib.new(algo, data).hexdigest() != hexdigest:
        raise CtrError(f"refused: the image's {what} does not match its digest {digest}")
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise CtrError(f"refused: the image's {what} is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise CtrError(f"refused: the image's {what} is not a JSON object")
    return doc, len(data)


def skopeo_copy(ref, layout, blobs, *, platform=None, tls_verify=True, terminal=False):
    """Copy docker://ref into the OCI layout directory `layout` (blobs in `blobs`)."""
    import shutil

    exe = shutil.which("skopeo")
    if exe is None:
        raise CtrError("pulling needs skopeo (apt-get install skopeo)")
    argv = [exe]
    if platform:
        os_, arch, variant = platform
        argv += ["--override-os", os_, "--override-arch", arch]
        if variant:
            argv += ["--override-variant", variant]
    argv += ["copy", "--dest-shared-blob-dir", blobs]
    if not tls_verify:
        argv.append("--src-tls-verify=false")
    if not terminal:
        argv.append("--quiet")
    argv += [f"docker://{ref}", f"oci:{layout}:image"]
    # On a terminal skopeo draws its own per-layer progress (bytes, rate) on our stderr.
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                          stdout=2 if terminal else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, errors="replace")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"skopeo exited with status {proc.returncode}"
        raise CtrError(f"pulling {ref} failed: {_short(why)}")


def _short(message):
    """skopeo's last line, without its log prefix."""
    if message.startswith("time=") and 'msg="' in message:
        message = message.split('msg="', 1)[1].rstrip('"')
    message = message.removeprefix("Error: ").removeprefix("FATA[0000] ")
    return message if len(message) < 400 else message[:400] + "..."


def read_layout(layout, blobs):
    """(manifest digest, manifest, config, [(layer descriptor, diff id)], blob digests)
    of the one image skopeo wrote into `layout`, each document checked."""
    try:
        with open(os.path.join(layout, "index.json"), "rb") as f:
            index = json.load(f)
        desc = index["manifests"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise CtrError(f"skopeo wrote no usable OCI layout: {err}") from None
    digest = desc.get("digest")
    if desc.get("mediaType") in INDEX_TYPES:
        raise CtrError("refused: an index where an image manifest was expected")
    manifest, _ = _read_blob(blobs, digest, "manifest")
    config_desc = manifest.get("config") or {}
    config, _ = _read_blob(blobs, config_desc.get("digest"), "config")
    layers = manifest.get("layers")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(layers, list) or not isinstance(diff_ids, list) or \
            len(layers) != len(diff_ids):
        raise CtrError("refused: the manifest's layers and the config's diff_ids differ "
                       "in number")
    if not layers:
        raise CtrError("refused: an image without layers")
    pairs = []
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        if not isinstance(layer, dict) or not isinstance(diff_id, str):
            raise CtrError("refused: a malformed layer descriptor")
        _blob_path(blobs, layer.get("digest"))
        pairs.append((layer, diff_id))
    used = [digest, config_desc["digest"], *(layer["digest"] for layer, _ in pairs)]
    return digest, manifest, config, pairs, used


def fetch(ref, staging, blobs, layers, *, platform=None, tls_verify=True, terminal=False,
          progress=None):
    """Pull `ref` and unpack its layers. Returns the record's fields; the caller
    writes the record. Layers unpacked here are listed in "new_layers"."""
    layout = os.path.join(staging, "layout")
    os.makedirs(blobs, 0o700, exist_ok=True)
    if progress:
        progress(f"pulling {ref}")
    skopeo_copy(ref, layout, blobs, platform=platform, tls_verify=tls_verify,
                terminal=terminal)
    digest, manifest, config, pairs, used = read_layout(layout, blobs)
    new, size = [], 0
    for i, (layer, diff_id) in enumerate(pairs, 1):
        blob = _blob_path(blobs, layer["digest"])
        if progress:
            progress(f"layer {i}/{len(pairs)} {diff_id[:19]}")
        if layers.add(blob, diff_id, layer.get("mediaType")):
            new.append(diff_id)
        size += layers.size(diff_id)
    return {
        "id": manifest["config"]["digest"],
        "digest": digest,
        "layers": [diff_id for _, diff_id in pairs],
        "blobs": used,
        "config": config.get("config") or {},
        "os": config.get("os"),
        "architecture": config.get("architecture"),
        "variant": config.get("variant"),
        "image_created": config.get("created"),
        "size": size,
        "new_layers": new,
    }
