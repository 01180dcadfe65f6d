"""An image's config as run defaults: what `ctr run IMAGE` does when the user
gives no command, -e, -w, -u, --stop-signal, -v or --label of their own.

An image record keeps its OCI config (image-spec's `config` object) under
`record["config"]`: {"Entrypoint": [...], "Cmd": [...], "Env": [...],
"WorkingDir": "...", "User": "...", "ExposedPorts": {"80/tcp": {}},
"StopSignal": "SIGQUIT", "Volumes": {"/data": {}}, "Labels": {...}}. Records
written before that (recipes, rootfs imports) carry flat keys "cmd", "env" and
"workdir": such an image is one whose config has only Cmd, Env and WorkingDir.

An image's config is someone else's data, so it is checked as hostile input:
a value that cannot mean anything safe (a relative WorkingDir or volume path,
a NUL byte anywhere, a port that is not a port, a signal that is not a signal,
the wrong JSON type, more than MAX_ITEMS entries or a string over MAX_STRING
bytes) refuses the whole image with one InvalidSpec naming the key. What
docker ignores is ignored: keys ctr does not use (OnBuild, Shell,
ArgsEscaped, a Healthcheck's StartInterval, ...), null or empty values, Env
entries without "=" (they set nothing), and exposed ports of a protocol ctr cannot publish (sctp).

`image_config(record)` returns an ImageConfig of typed values, which the CLI
hands to ctr.spec.new_spec: nothing here is a CLI string.
"""

import dataclasses
import os

from ctr import lazyre
from ctr.errors import InvalidSpec
from ctr.spec import Frozen, check_user, parse_signal, signal_name

MAX_ITEMS = 1024  # entries of any one list or object (Env, Cmd, ExposedPorts, Labels...)
MAX_STRING = 128 << 10  # bytes of one string: the kernel's MAX_ARG_STRLEN
PORT_KEY_RE = lazyre.compile(r"(\d{1,5})(?:-(\d{1,5}))?(?:/([a-zA-Z]+))?")
PROTOCOLS = ("tcp", "udp")
KERNEL_FILESYSTEMS = ("/proc", "/sys", "/dev")  # as ctr.rootfs's (not imported: it loads native)
IGNORED_PROTOCOLS = ("sctp",)  # docker's third protocol: ctr's nft rules publish tcp and udp


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """An image's run defaults, checked. Empty values mean "not set"."""

    entrypoint: tuple = ()  # argv prefix
    cmd: tuple = ()  # default arguments (the command without an Entrypoint)
    env: tuple = ()  # "KEY=VALUE"
    workdir: str | None = None  # absolute, normalized
    user: str | None = None  # NAME, UID, NAME:GROUP or UID:GID, resolved at start
    exposed_ports: tuple = ()  # of (port, "tcp"|"udp"), sorted
    stop_signal: str | None = None  # its name, as a spec keeps it (SIGQUIT)
    volumes: tuple = ()  # absolute, normalized paths, sorted
    labels: Frozen = Frozen()
    healthcheck: object = None  # ctr.spec.Healthcheck from HEALTHCHECK; None: none


def image_config(record):
    """The run defaults of an image record (either form, see the module's doc)."""
    name = record.get("name", "?")
    config = record.get("config")
    if config is None:
        config = {"Cmd": record.get("cmd"), "Env": record.get("env"),
                  "WorkingDir": record.get("workdir")}
    elif isinstance(config, dict) and isinstance(config.get("config"), dict) and (
            "rootfs" in config or "architecture" in config):
        config = config["config"]  # the whole config blob: its `config` is the one
    return parse_config(config, name)


def parse_config(config, image="?"):
    """An OCI image config's `config` object -> ImageConfig (InvalidSpec if hostile)."""
    def bad(key, why):
        return InvalidSpec(f"the config of image {image} is refused: {key} {why}")

    if not isinstance(config, dict):
        raise bad("config", "is not a JSON object")
    for key, value in config.items():
        if isinstance(value, (list, dict)) and len(value) > MAX_ITEMS:
            raise bad(key, f"has {len(value)} entries (at most {MAX_ITEMS})")
    entrypoint = _strings(config, "Entrypoint", bad)
    cmd = _strings(config, "Cmd", bad)
    env = tuple(e for e in _strings(config, "Env", bad) if "=" in e)
    for item in env:
        if item.startswith("="):
            raise bad("Env", f"has {item!r}: a variable needs a name")
    return ImageConfig(
        entrypoint=entrypoint, cmd=cmd, env=env,
        workdir=_workdir(_string(config, "WorkingDir", bad), bad),
        user=_user(_string(config, "User", bad), bad),
        exposed_ports=_ports(_keys(config, "ExposedPorts", bad), bad),
        stop_signal=_signal(_string(config, "StopSignal", bad), bad),
        volumes=_volumes(_keys(config, "Volumes", bad), bad),
        labels=_labels(config.get("Labels"), bad),
        healthcheck=_healthcheck(config.get("Healthcheck"), bad),
    )


def _check_string(value, key, bad):
    if not isinstance(value, str):
        raise bad(key, f"has {value!r} where a string belongs")
    if "\0" in value:
        raise bad(key, "contains a NUL byte")
    if len(value.encode(errors="surrogatepass")) > MAX_STRING:
        raise bad(key, f"has a string over {MAX_STRING >> 10} KiB")
    return value


def _string(config, key, bad):
    value = config.get(key)
    if value is None or value == "":
        return None
    return _check_string(value, key, bad)


def _strings(config, key, bad):
    value = config.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise bad(key, "is not a list of strings")
    return tuple(_check_string(v, key, bad) for v in value)


def _keys(config, key, bad):
    """The keys of an object whose values carry nothing (ExposedPorts, Volumes)."""
    value = config.get(key)
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise bad(key, "is not a JSON object")
    return tuple(_check_string(k, key, bad) for k in value)


def _workdir(path, bad):
    if path is None:
        return None
    if not path.startswith("/"):
        raise bad("WorkingDir", f"{path!r} is not an absolute path")
    return _normal(path)


def _normal(path):
    """An absolute path without ., .., // (normpath keeps a leading //)."""
    return os.path.normpath("/" + path.lstrip("/"))


def _user(user, bad):
    try:
        return check_user(user)
    except InvalidSpec:
        raise bad("User", f"{user!r} is not NAME, UID, NAME:GROUP or UID:GID") from None


def _signal(value, bad):
    if value is None:
        return None
    try:
        return signal_name(parse_signal(value))
    except InvalidSpec:
        raise bad("StopSignal", f"{value!r} is not a signal") from None


def _ports(keys, bad):
    """docker's keys: PORT[/PROTO] or FIRST-LAST[/PROTO] (tcp when no PROTO)."""
    out = set()
    for key in keys:
        m = PORT_KEY_RE.fullmatch(key.strip())
        proto = (m.group(3) or "tcp").lower() if m else None
        if not m or proto not in PROTOCOLS + IGNORED_PROTOCOLS:
            raise bad("ExposedPorts", f"has {key!r}: expected PORT[/tcp|/udp]")
        first = int(m.group(1))
        last = int(m.group(2) or first)
        if not 0 < first <= last < 65536:
            raise bad("ExposedPorts", f"has {key!r}: ports are 1-65535")
        if proto in IGNORED_PROTOCOLS:
            continue
        out.update((port, proto) for port in range(first, last + 1))
        if len(out) > MAX_ITEMS:
            raise bad("ExposedPorts", f"exposes more than {MAX_ITEMS} ports")
    return tuple(sorted(out))


def _volumes(keys, bad):
    out = set()
    for path in keys:
        if not path.startswith("/"):
            raise bad("Volumes", f"has {path!r}: not an absolute path")
        path = _normal(path)
        if path == "/":
            raise bad("Volumes", "has '/': a volume cannot replace the root")
        if any(path == k or path.startswith(k + "/") for k in KERNEL_FILESYSTEMS):
            raise bad("Volumes", f"has {path!r}: not over the kernel's filesystems")
        out.add(path)
    return tuple(sorted(out))


def _labels(value, bad):
    if value is None:
        return Frozen()
    if not isinstance(value, dict):
        raise bad("Labels", "is not a JSON object")
    for k, v in value.items():
        _check_string(k, "Labels", bad)
        _check_string(v, "Labels", bad)
        if not k:
            raise bad("Labels", "has an empty key")
    return Frozen(value)


HEALTH_KEYS = (("Interval", "interval"), ("Timeout", "timeout"),
               ("StartPeriod", "start_period"), ("Retries", "retries"))


def _healthcheck(value, bad):
    """docker's Healthcheck: {"Test": ["CMD-SHELL", "..."], "Interval": ns,
    "Timeout": ns, "StartPeriod": ns, "Retries": n}; an empty Test: none."""
    from ctr.spec.health import check_durations
    from ctr.spec.model import Healthcheck

    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad("Healthcheck", "is not a JSON object")
    test = _strings(value, "Test", lambda _k, why: bad("Healthcheck", f"Test {why}"))
    if not test:
        return None
    hc = {"test": test}
    for key, field in HEALTH_KEYS:
        n = value.get(key)
        if n is None or n == 0:
            continue
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise bad("Healthcheck", f"{key} is not a non-negative integer")
        hc[field] = n
    hc = Healthcheck(hc)
    try:
        check_durations(hc)
    except InvalidSpec as err:
        raise bad("Healthcheck", str(err).removeprefix("invalid healthcheck ")) from None
    return hc
