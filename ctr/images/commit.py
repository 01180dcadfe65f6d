"""An instance's changes as a new image (`ctr commit`), its whole root as one tar
(`ctr export`).

commit: the instance's upper directory is written as an OCI layer by
ctr.images.treetar (overlayfs whiteouts back to `.wh.NAME`, opaque directories to
`.wh..wh..opq`), then unpacked into the layer store by the same path a pulled layer
takes (its diff ID checked), on top of the image's own layers. The new config is
the image's whole config with docker's `--change` instructions applied, one more
rootfs diff ID and one more history entry. /etc/hostname, /etc/hosts and
/etc/resolv.conf (what ctr binds there at each start) are left out, as docker does.
A running instance is frozen while its upper directory is read (docker's --pause
default), and thawed before the layer is unpacked. The layer is written in a staging
folder of the image store; a failed or killed commit leaves only what the next build
or `image prune` removes.

export: the union of the upper directory and the image's layers, computed without a
mount (so a running instance can be exported as docker does, without a pause).
"""

import json
import os
import shlex
import shutil

from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound
from ctr.store import now

# What ctr binds over an instance's root at each start: placeholders in its upper
# directory, never part of a commit (as docker leaves them out).
INSTANCE_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")
CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
           "WORKDIR")


def _argv(rest, instr):
    """A Dockerfile argument list: a JSON array, or the shell form."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidSpec(f"invalid --change {instr} {rest}: not a JSON array of strings")
        return value
    return ["/bin/sh", "-c", rest]


def _pairs(rest, instr):
    try:
        words = shlex.split(rest)
    except ValueError as err:
        raise InvalidSpec(f"invalid --change {instr} {rest}: {err}") from None
    if words and "=" not in words[0]:  # ENV KEY VALUE, the old form
        key, _, value = rest.partition(" ")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidSpec(f"invalid --change {instr} {rest}: {word!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def apply_changes(run, changes):
    """The run config `run` (an OCI config's "config") with docker's --change
    instructions applied: a new dict."""
    run = json.loads(json.dumps(run or {}))
    for text in changes:
        instr, _, rest = text.strip().partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr not in CHANGES:
            raise InvalidSpec(f"invalid --change {text!r}: use one of {', '.join(CHANGES)}")
        if not rest:
            raise InvalidSpec(f"invalid --change {text!r}: {instr} needs a value")
        if instr in ("CMD", "ENTRYPOINT"):
            run["Cmd" if instr == "CMD" else "Entrypoint"] = _argv(rest, instr)
        elif instr == "ENV":
            env = list(run.get("Env") or [])
            for key, value in _pairs(rest, instr):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            run["Env"] = env
        elif instr == "LABEL":
            run["Labels"] = {**(run.get("Labels") or {}), **dict(_pairs(rest, instr))}
        elif instr == "EXPOSE":
            ports = dict(run.get("ExposedPorts") or {})
            for port in rest.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            run["ExposedPorts"] = ports
        elif instr == "VOLUME":
            paths = _argv(rest, instr) if rest.startswith("[") else rest.split()
            run["Volumes"] = {**(run.get("Volumes") or {}), **{p: {} for p in paths}}
        else:
            run[{"USER": "User", "WORKDIR": "WorkingDir",
                 "STOPSIGNAL": "StopSignal"}[instr]] = rest
    return run


def _idmap(spec):
    u = spec.userns
    return (u["uid"], u["gid"], u["size"]) if u else None


def commit(images, instances, name, new, message=None, changes=(), author=None, pause=True,
           progress=None):
    """Instance NAME's changes as image NEW; returns its record."""
    from ctr import store as st
    from ctr.images.archive import (
        _layer_blobs,
        _put_blob,
        _record_name,
        base_config,
        record_fields,
    )
    from ctr.images.config import image_config
    from ctr.images.treetar import HashingWriter, open_tar, write_layer

    rec = instances.get(name)
    spec = rec.spec
    new_name = _record_name(new)
    try:
        base = images.get(spec.image)
    except NotFound:
        raise NotFound(f"the image {spec.image} of {name} is gone") from None
    config = base_config(images, base)
    run = apply_changes(config.get("config"), changes)
    image_config({"name": new_name, "config": run})  # refuses what could not run
    staging = images._staging(".commit-")
    ok = False
    try:
        layer = os.path.join(staging, "layer.tar")
        status = rec.read_state()["status"]
        paused = pause and status == st.RUNNING
        if paused:
            instances.pause(name)
        try:
            if progress:
                progress(f"writing the changes of {name}")
            with open(layer, "wb") as f:
                out = HashingWriter(f)
                with open_tar(out) as tar:
                    write_layer(tar, rec.upper, _idmap(spec), skip=INSTANCE_FILES)
        finally:
            if paused:
                instances.unpause(name)
        diff_id = out.digest()
        with images._name_lock(base["name"]):
            base = images._read(base["name"])
            if "rootfs" in base:  # a recipe's or rootfs import's: into the layer store
                base = images._migrate(base["name"], base)
        with images._name_lock(new_name), images.layers.store_lock(shared=True):
            if images.exists(new_name) and "rootfs" in images._read(new_name):
                raise Conflict(f"image {new_name} already exists (remove it first)")
            if progress:
                progress(f"layer {diff_id[:19]}")
            images.layers.add(layer, diff_id)
            created = now()
            entry = {"created": created, "created_by": f"ctr commit {name}"}
            if message:
                entry["comment"] = message
            if author:
                entry["author"] = author
            history = [h for h in config.get("history") or [] if isinstance(h, dict)]
            # one history entry per layer, as docker and podman count them
            missing = len(base["layers"]) - sum(1 for h in history if not h.get("empty_layer"))
            history += [{"created": config.get("created") or created}] * max(missing, 0)
            config = {**config, "created": created, "config": run,
                      "rootfs": {"type": "layers",
                                 "diff_ids": [*config["rootfs"]["diff_ids"], diff_id]},
                      "history": [*history, entry]}
            if author:
                config["author"] = author
            data = json.dumps(config, separators=(",", ":")).encode()
            config_id = _put_blob(images.blobs, data)
            layers = [*base["layers"], diff_id]
            size = sum(images.layers.size(lid) for lid in layers)
            fields = record_fields(config, config_id, layers, size, f"commit {name}")
            parent_blobs = {d: {"digest": "sha256:" + os.path.basename(p), "mediaType": m}
                            for d, (p, m) in _layer_blobs(images, base).items()
                            if "/sha256/" in p}
            fields.update(blobs=sorted({config_id, *base.get("blobs", ()),
                                        *(b["digest"] for b in parent_blobs.values())}),
                          layer_blobs=parent_blobs, committed=created,
                          parent=base["id"])
            images._write(new_name, fields)
            ok = True
        from ctr import events

        events.image(images.store.root, "commit", new_name, config_id)
        return images.get(new_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            images.collect(blocking=False)


def export(images, instances, name, out):
    """Instance NAME's whole root (its upper directory over its image's layers) as
    one tar on the binary file `out`."""
    from ctr.images.treetar import open_tar, write_merged

    rec = instances.get(name)
    spec = rec.spec
    if spec.userns:
        from ctr.userns import lower_layers

        lowers = lower_layers(rec)
    else:
        try:
            lowers = images.get(spec.image)["lowerdirs"]
        except NotFound:
            lowers = None
    if lowers is None or not all(os.path.isdir(d) for d in lowers):
        raise NotFound(f"the image {spec.image} of {name} is gone")
    if not os.path.isdir(rec.upper):
        raise CtrError(f"instance {name} has no root directory ({rec.upper})")
    with open_tar(out) as tar:
        write_merged(tar, [rec.upper, *lowers], _idmap(spec))
