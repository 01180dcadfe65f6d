"""-v and --mount (docker's two spellings of a mount) into typed values.

    -v /host/path:/dst[:OPTS]   a bind (the host path must exist)
    -v NAME:/dst[:OPTS]         a named volume (a name, not a path): made on
                                first use, seeded from the image's content
                                at /dst while it is empty (unless nocopy)
    -v /dst                     an anonymous volume, the instance's own
    OPTS: ro, rw, nocopy (volumes), private, rprivate (binds), comma-separated

    --mount type=bind|volume|tmpfs,source=|src=,target=|dst=|destination=,
            readonly|ro[=true|false],bind-propagation=,volume-nocopy[=BOOL],
            tmpfs-size=,tmpfs-mode=
            (type=volume by default; a volume without a source is anonymous)

Each bad value is one InvalidSpec naming the option as the user typed it.
"""

import os
import re

from ctr import lazyre
from ctr.errors import InvalidSpec
from ctr.spec.model import Tmpfs, Volume

# docker's local volume names: at least two characters.
VOLUME_NAME_RE = lazyre.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_NAME_RULE = '"[a-zA-Z0-9][a-zA-Z0-9_.-]"'
# Mount propagation: the container's mounts are private (runc's rprivate default);
# shared or slave ones would need the host's side kept in a peer group.
PROPAGATION = ("private", "rprivate")
_BOOLS = {"": True, "1": True, "true": True, "0": False, "false": False}


def check_volume_name(name, what=None):
    if not isinstance(name, str) or not VOLUME_NAME_RE.fullmatch(name):
        where = f"{what}: " if what else ""
        raise InvalidSpec(f"{where}{name!r} includes invalid characters for a local volume "
                          f"name, only {_NAME_RULE} are allowed (at least two); to bind a "
                          "host directory, give its absolute path")
    return name


def _target(dst, what):
    if not dst.startswith("/") or "\0" in dst:
        raise InvalidSpec(f"{what}: the target {dst!r} must be an absolute path")
    if os.path.normpath(dst) == "/":
        raise InvalidSpec(f"{what}: cannot mount over the root")
    return os.path.normpath(dst)


def _bind_source(src, what):
    if "\0" in src:
        raise InvalidSpec(f"{what}: a path contains a NUL byte")
    if not os.path.exists(src):
        raise InvalidSpec(f"{what}: {src} does not exist on the host")
    return os.path.realpath(src)


def _volume_options(opts, value, is_bind):
    readonly, nocopy = False, None
    for opt in filter(None, opts.split(",")):
        if opt in ("ro", "rw"):
            readonly = opt == "ro"
        elif opt == "nocopy" and not is_bind:
            nocopy = True
        elif opt in PROPAGATION and is_bind:
            pass
        elif opt in ("z", "Z"):
            pass  # SELinux relabelling: nothing to do on a host without it
        else:
            raise InvalidSpec(f"invalid -v {value!r}: unknown option {opt!r} (ro, rw, "
                              + ("private, rprivate" if is_bind else "nocopy") + ")")
    return readonly, nocopy


def check_volumes(values):
    """-v values into Volume entries (see the module's doc)."""
    out = []
    for value in values:
        value = str(value)
        what = f"invalid -v {value!r}"
        parts = value.split(":")
        if len(parts) == 1:
            out.append(Volume(target=_target(parts[0], what), anonymous=True))
            continue
        if len(parts) > 3 or not parts[0] or not parts[1]:
            raise InvalidSpec(f"{what}: expected SRC:DST[:OPTIONS]")
        src, dst = parts[0], parts[1]
        is_bind = src.startswith("/")
        readonly, nocopy = _volume_options(parts[2] if len(parts) == 3 else "", value, is_bind)
        target = _target(dst, what)
        if is_bind:
            out.append(Volume(source=_bind_source(src, f"-v {value}"), target=target,
                              readonly=readonly))
        else:
            out.append(Volume(name=check_volume_name(src, what), target=target,
                              readonly=readonly, nocopy=nocopy))
    return tuple(out)


MOUNT_KEYS = {"type": "type", "source": "source", "src": "source", "target": "target",
              "dst": "target", "destination": "target", "readonly": "readonly",
              "ro": "readonly", "bind-propagation": "bind-propagation",
              "volume-nocopy": "volume-nocopy", "tmpfs-size": "tmpfs-size",
              "tmpfs-mode": "tmpfs-mode"}
_ONLY_FOR = {"bind-propagation": "bind", "volume-nocopy": "volume", "tmpfs-size": "tmpfs",
             "tmpfs-mode": "tmpfs"}


def _fields(value, what):
    fields = {}
    for field in value.split(","):
        key, sep, arg = field.partition("=")
        key = key.strip().lower()
        if key not in MOUNT_KEYS:
            raise InvalidSpec(f"{what}: unknown key {key!r} (type, source, target, "
                              "readonly, bind-propagation, volume-nocopy, tmpfs-size, "
                              "tmpfs-mode)")
        key = MOUNT_KEYS[key]
        if key in ("readonly", "volume-nocopy"):
            if arg.lower() not in _BOOLS:
                raise InvalidSpec(f"{what}: invalid value {arg!r} for {key}: expected "
                                  "true or false")
            arg = _BOOLS[arg.lower()]
        elif not sep or not arg:
            raise InvalidSpec(f"{what}: {key} needs a value ({key}=...)")
        if key in fields:
            raise InvalidSpec(f"{what}: {key} is given twice")
        fields[key] = arg
    return fields


def _tmpfs_mount(fields, target, what):
    from ctr.spec.parse import parse_size

    data = []
    if "tmpfs-size" in fields:
        data.append(f"size={parse_size(fields['tmpfs-size'], what + ': tmpfs-size')}")
    if "tmpfs-mode" in fields:
        mode = fields["tmpfs-mode"]
        if not re.fullmatch(r"0?[0-7]{3,4}", mode):
            raise InvalidSpec(f"{what}: invalid tmpfs-mode {mode!r}: expected octal, "
                              "like 1777")
        data.append(f"mode={int(mode, 8):o}")
    flags = ("ro",) if fields.get("readonly") else ()
    return Tmpfs(path=target, flags=flags, data=",".join(data))


def check_mounts(values):
    """--mount values into (volumes, tmpfs): Volume and Tmpfs entries."""
    volumes, tmpfs = [], []
    for value in values:
        value = str(value)
        what = f"invalid --mount {value!r}"
        fields = _fields(value, what)
        kind = fields.get("type", "volume")
        if kind not in ("bind", "volume", "tmpfs"):
            raise InvalidSpec(f"{what}: unknown type {kind!r} (bind, volume or tmpfs)")
        for key, only in _ONLY_FOR.items():
            if key in fields and kind != only:
                raise InvalidSpec(f"{what}: {key} is for type={only} only")
        if "target" not in fields:
            raise InvalidSpec(f"{what}: target is required (target=/PATH)")
        target = _target(fields["target"], what)
        source = fields.get("source")
        readonly = bool(fields.get("readonly"))
        if kind == "tmpfs":
            if source:
                raise InvalidSpec(f"{what}: a tmpfs has no source")
            tmpfs.append(_tmpfs_mount(fields, target, what))
        elif kind == "bind":
            if not source:
                raise InvalidSpec(f"{what}: a bind needs a source (source=/HOST/PATH)")
            if not source.startswith("/"):
                raise InvalidSpec(f"{what}: the source of a bind is an absolute host path")
            prop = fields.get("bind-propagation", "rprivate")
            if prop not in PROPAGATION:
                raise InvalidSpec(f"{what}: bind-propagation={prop} is not supported: the "
                                  "container's mounts are private (private, rprivate)")
            volumes.append(Volume(source=_bind_source(source, f"--mount {value}"),
                                  target=target, readonly=readonly))
        elif source:
            volumes.append(Volume(name=check_volume_name(source, what), target=target,
                                  readonly=readonly,
                                  nocopy=True if fields.get("volume-nocopy") else None))
        else:
            volumes.append(Volume(target=target, anonymous=True, readonly=readonly))
    return tuple(volumes), tuple(tmpfs)


def check_targets(volumes, tmpfs):
    """No two mounts at one place (docker: "Duplicate mount point")."""
    seen = set()
    for path in [v["target"] for v in volumes] + [t["path"] for t in tmpfs]:
        if path in seen:
            raise InvalidSpec(f"duplicate mount point: {path}")
        seen.add(path)
