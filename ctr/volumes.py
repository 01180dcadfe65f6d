"""Volumes: folders under the state root that outlive instances (docker's local
driver).

    volumes/NAME/volume.json   a named volume: its name, creation time, labels
    volumes/NAME/_data/        its content, what instances bind
    volumes/<64 hex>/_data/    an anonymous volume (an image's Volumes, -v /PATH,
                               --mount without a source): no volume.json, one
                               instance's own (ctr.rootfs.volumes)

A named volume is made by `ctr volume create` or on first use (-v NAME:/PATH,
--mount source=NAME); `ctr rm -v` never removes it. Which instances use a
volume is read from their specs (created, running or stopped alike: docker
refuses to remove a volume any container names). volumes/.lock serialises
making records that name volumes against removing volumes, so a volume is never
removed between the check and a new instance's record.
"""

import contextlib
import os
import shutil

from ctr import events
from ctr.errors import Conflict, NotFound
from ctr.rootfs.volumes import DATA, VOLUME_ID_RE, owned, volumes_dir
from ctr.store import atomic_write_json, du, flocked, now, read_json

META = "volume.json"


@contextlib.contextmanager
def lock(store):
    top = volumes_dir(store)
    os.makedirs(top, 0o711, exist_ok=True)
    with flocked(os.path.join(top, ".lock")):
        yield


def _folder(store, name):
    from ctr.spec import check_volume_name

    return os.path.join(volumes_dir(store), check_volume_name(name))


def data_path(store, name):
    return os.path.join(_folder(store, name), DATA)


def info(store, name):
    """docker's fields of one volume (inspect); NotFound if there is none."""
    folder = _folder(store, name)
    meta_path = os.path.join(folder, META)
    try:
        meta = read_json(meta_path, f"the volume {name}")
        anonymous = False
    except FileNotFoundError:
        if not (VOLUME_ID_RE.fullmatch(name) and os.path.isdir(folder)):
            raise NotFound(f"no such volume: {name}") from None
        anonymous = True
        meta = {"created": _mtime(folder), "labels": {}}
    return {"Name": name, "Driver": "local", "Mountpoint": os.path.join(folder, DATA),
            "CreatedAt": meta.get("created"), "Labels": meta.get("labels") or {},
            "Scope": "local", "Options": {}, "Anonymous": anonymous}


def _mtime(path):
    import datetime

    t = os.stat(path).st_mtime
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def names(store):
    """The names of every volume, named and anonymous, sorted."""
    top = volumes_dir(store)
    try:
        entries = os.listdir(top)
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if not e.startswith(".")
                  and (VOLUME_ID_RE.fullmatch(e) or os.path.exists(os.path.join(top, e, META))))


FILTER_KEYS = ("dangling", "name", "label")


def parse_filters(items):
    """docker's `volume ls --filter KEY=VALUE`s into {key: [values]}."""
    from ctr.errors import InvalidSpec

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS or not value:
            raise InvalidSpec(f"invalid --filter {item!r}: expected dangling=true|false, "
                              "name=PART or label=KEY[=VALUE]")
        if key == "dangling" and value not in ("true", "false", "1", "0"):
            raise InvalidSpec(f"invalid --filter {item!r}: dangling is true or false")
        out.setdefault(key, []).append(value)
    return out


def _matches(vol, filters, used):
    for key, values in filters.items():
        if key == "dangling":
            ok = any((v in ("true", "1")) == (vol["Name"] not in used) for v in values)
        elif key == "name":
            ok = any(v in vol["Name"] for v in values)
        else:
            ok = any(_label_matches(vol["Labels"], v) for v in values)
        if not ok:
            return False
    return True


def _label_matches(labels, want):
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def listing(store, filters=None):
    """docker's fields of each volume (info), those `filters` (parse_filters') keep."""
    out = []
    for name in names(store):
        try:
            out.append(info(store, name))
        except NotFound:
            continue  # removed while we listed
    if filters:
        used = users(store) if "dangling" in filters else {}
        out = [v for v in out if _matches(v, filters, used)]
    return out


def _make(store, name, labels):
    """Make a named volume; False if it was there already."""
    folder = _folder(store, name)
    os.makedirs(volumes_dir(store), 0o711, exist_ok=True)
    try:
        os.mkdir(folder, 0o711)
    except FileExistsError:
        if not os.path.exists(os.path.join(folder, META)):
            raise Conflict(f"the volume name {name!r} is taken by an anonymous volume") \
                from None
        return False
    try:
        os.mkdir(os.path.join(folder, DATA), 0o755)
        atomic_write_json(os.path.join(folder, META),
                          {"name": name, "created": now(), "labels": dict(labels or {})})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    events.volume(store.root, "create", name)
    return True


def create(store, name=None, labels=None):
    """`ctr volume create [NAME]`: a named volume (a random name if none is
    given). As docker's, creating one that exists is not an error."""
    name = name or os.urandom(32).hex()
    with lock(store):
        _make(store, name, labels)
    return name


def attach(revert, store, spec):
    """(`spec` with the source of each named volume filled in, the data folders
    of those made here): those missing are made (undone by `revert`). The
    caller holds lock(store) until the record exists."""
    import dataclasses

    out, made = [], []
    for vol in spec.volumes:
        if vol.get("name"):
            source = data_path(store, vol["name"])
            if _make(store, vol["name"], {}):
                revert.add(shutil.rmtree, _folder(store, vol["name"]), ignore_errors=True)
                made.append(source)
            vol = {**vol, "source": source}
        out.append(vol)
    return dataclasses.replace(spec, volumes=tuple(out)), made


def users(store):
    """{volume name: [instance names]}: who names which volume in its spec."""
    out = {}
    for rec, spec, _state in store.listing():
        for vol in spec.volumes if spec else ():
            name = vol.get("name")
            if not name:
                folder = owned(store, vol)
                name = os.path.basename(folder) if folder else None
            if name:
                out.setdefault(name, []).append(rec.name)
    return out


def _remove_folder(store, name):
    folder = _folder(store, name)
    shutil.rmtree(folder)
    events.volume(store.root, "destroy", name)


def remove(store, name, force=False):
    """`ctr volume rm`: refused while an instance names it (docker's wording);
    with `force` a missing volume is not an error."""
    with lock(store):
        try:
            info(store, name)
        except NotFound:
            if force:
                return
            raise
        using = users(store).get(name)
        if using:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(using)}]")
        _remove_folder(store, name)


def prune(store, all_volumes=False):
    """`ctr volume prune`: the volumes no instance names; as docker's (23 and
    later), only anonymous ones unless `all_volumes`. Returns [(name, bytes)]."""
    removed = []
    with lock(store):
        used = users(store)
        for vol in listing(store):
            if vol["Name"] in used or not (all_volumes or vol["Anonymous"]):
                continue
            size = du(os.path.dirname(vol["Mountpoint"]))
            _remove_folder(store, vol["Name"])
            removed.append((vol["Name"], size))
    return removed
