"""The spec's data: InstanceSpec and the typed values it is made of.

Plain documented data, as runc's libcontainer/configs: nothing here parses a
user's string or reads the host. A spec is immutable all the way down: its
sequences are tuples and its objects are frozen mappings (`Frozen`), which a
caller reads like the dicts they replace (`spec.resources.get("cpus")`,
`spec.restart["policy"]`) and never changes: a changed spec is a new one
(`dataclasses.replace`), and whatever it is given (plain dicts and lists
included) is frozen on the way in.

`to_dict()` is the spec.json format (plain JSON data); `from_dict()` reads it
back, records written by older versions included.
"""

import dataclasses
from collections.abc import Mapping
from typing import Protocol

from ctr.spec.caps import DEFAULT_CAPS

KINDS = ("container", "vm")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

RESOURCE_KEYS = ("memory", "memory_swap", "cpus", "cpu_shares", "cpu_weight", "cpuset_cpus",
                 "pids_limit", "blkio_weight", "device_read_bps", "device_write_bps",
                 "memory_reservation", "cpu_period", "cpu_quota", "device_read_iops",
                 "device_write_iops", "blkio_weight_device", "memory_swappiness",
                 "hugepage_limits", "unified")
MIN_MEMORY = 6 << 20  # docker's minimum: below it a container cannot even start
VM_MIN_MEMORY = 64 << 20
LOG_MIN_SIZE = 4 << 10
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
MAX_RETRIES = 1 << 31
SD_NOTIFY_MODES = ("conmon", "container", "ignore")  # see ctr.sdnotify
DEFAULT_SD_NOTIFY = "conmon"
SECCOMP_DEFAULT, SECCOMP_UNCONFINED = "default", "unconfined"  # as ctr.seccomp names them

_REQUIRED = object()


def freeze(value):
    """JSON-like data made immutable: mappings become Frozen, lists tuples."""
    if isinstance(value, Frozen):
        return value
    if isinstance(value, Mapping):
        return Frozen(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value):
    """The plain JSON data of a frozen value (dicts and lists)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def _refuse(self, *args, **kwargs):
    raise TypeError(f"{type(self).__name__} is immutable: build a new one")


class Frozen(dict):
    """A mapping that cannot be changed, and hashes: what a spec holds where
    JSON has an object. Its values are frozen too. It is a dict for whoever
    only reads (json.dumps, isinstance checks); every method that would change
    it raises TypeError. It equals any mapping of the same JSON value, so a
    tuple in it equals a list in a plain dict.

    A subclass with FIELDS ({name: default}) is a typed entry: no other keys,
    the defaults filled in, a default of None meaning "absent", and the
    fields readable as attributes (`port.host_port`)."""

    __slots__ = ()
    FIELDS = None

    def __init__(self, data=(), /, **kwargs):
        if self:
            _refuse(self)  # __init__ called again: dict's would update it
        items = dict(data, **kwargs)
        if self.FIELDS is not None:
            items = self._fields(items)
        super().__init__((k, freeze(v)) for k, v in items.items())

    @classmethod
    def _fields(cls, items):
        unknown = set(items) - set(cls.FIELDS)
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        out = {}
        for name, default in cls.FIELDS.items():
            value = items.get(name, default)
            if value is _REQUIRED:
                raise TypeError(f"{cls.__name__}: {name} is required")
            if value is not None:
                out[name] = value
        return out

    def __getattr__(self, name):
        if self.FIELDS is not None and name in self.FIELDS:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __eq__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return thaw(self) == thaw(other)

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(frozenset(self.items()))

    def __repr__(self):
        return f"{type(self).__name__}({dict(self)!r})"

    def __reduce__(self):
        return type(self), (dict(self),)

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


class Resources(Frozen):
    """cgroup limits, only those set: memory and memory_swap in bytes (swap -1:
    unlimited), cpus (a float), cpu_shares or cpu_weight, cpuset_cpus ("0,1"),
    pids_limit (-1: unlimited), blkio_weight, device_read_bps/device_write_bps
    as (("MAJOR:MINOR", bytes per second), ...); memory_reservation (bytes, a
    soft limit), cpu_period and cpu_quota (microseconds; quota -1: unlimited),
    which exclude cpus. What an OCI bundle may ask besides (ctr.oci.config):
    device_read_iops/device_write_iops (("MAJOR:MINOR", operations per
    second), ...), blkio_weight_device (("MAJOR:MINOR", weight), ...),
    memory_swappiness (0-100; v1 only, as runc), hugepage_limits (("2MB",
    bytes), ...), unified ({cgroup2 file: value}, cgroup v2 only)."""

    __slots__ = ()
    FIELDS = dict.fromkeys(RESOURCE_KEYS)


class Port(Frozen):
    """A published port: host_ip:host_port on the host to port in the instance
    (host_port 0 in a spec's publish_all: a free one, chosen at each start)."""

    __slots__ = ()
    FIELDS = {"host_ip": "0.0.0.0", "host_port": _REQUIRED, "port": _REQUIRED, "proto": "tcp"}


class Tmpfs(Frozen):
    """A tmpfs at path: flags (nosuid, noexec...) and mount data (size=1m,mode=700);
    an OCI bundle's may ask `copyup` (tmpcopyup: what the folder held is copied
    into it) and `propagation` (as Volume's)."""

    __slots__ = ()
    FIELDS = {"path": _REQUIRED, "flags": (), "data": "", "copyup": None, "propagation": None}


class Volume(Frozen):
    """A host path bound at target. `anonymous`: one of the image's volumes (its
    config's Volumes, or -v /PATH), a folder of the instance's own under the
    state root, seeded from the image's content at target on the first start,
    removed with `rm -v` or --rm. `name`: a named volume (ctr.volumes), made on
    first use, kept until `ctr volume rm`, seeded while empty unless `nocopy`.
    Either has no source until the record is made.
    `propagation`: an OCI bundle's mount options rprivate, private, rslave,
    slave, rshared, shared, runbindable, unbindable, applied in order once the
    volume is bound (ctr.rootfs.PROPAGATION); None: the container's own
    (private). `flags`: an OCI bundle's nosuid, nodev, noexec for the bind."""

    __slots__ = ()
    FIELDS = {"source": None, "target": _REQUIRED, "readonly": False, "anonymous": None,
              "name": None, "nocopy": None, "propagation": None, "flags": None}


class Ulimit(Frozen):
    """An rlimit by its lower-case name (nofile); -1 is unlimited."""

    __slots__ = ()
    FIELDS = {"name": _REQUIRED, "soft": _REQUIRED, "hard": _REQUIRED}


class Restart(Frozen):
    """The restart policy of a detached instance (docker's --restart)."""

    __slots__ = ()
    FIELDS = {"policy": "no", "max_retries": 0}


class LogLimits(Frozen):
    """Rotation of a detached instance's log: max_size bytes (-1: no limit),
    max_files files (the current one included)."""

    __slots__ = ()
    FIELDS = {"max_size": 10 << 20, "max_files": 3}  # at most 30 MiB of log per instance


class VmOptions(Frozen):
    """A VM's own options, empty for a container: memory (its RAM, bytes), and
    optionally kernel, initrd (absolute paths), accel (kvm or tcg), kernel_args
    (words appended to the guest kernel's command line) and disks (absolute
    paths of raw disk images, the guest's /dev/vda, /dev/vdb... in order)."""

    __slots__ = ()
    FIELDS = dict.fromkeys(("memory", "kernel", "initrd", "accel", "kernel_args", "disks"))


class Userns(Frozen):
    """A user namespace of its own: empty for none (--userns=host), mode "auto"
    until the record is made, then the block of ids: uid, gid (the bases) and size,
    and idmap: True when the image's layers are idmapped mounts (ctr.userns),
    absent when the record has shifted copies of them."""

    __slots__ = ()
    FIELDS = dict.fromkeys(("mode", "uid", "gid", "size", "idmap"))


class Healthcheck(Frozen):
    """docker's healthcheck (its image config's Healthcheck, in ns): test is
    ("CMD-SHELL", "cmd"), ("CMD", argv...) or ("NONE",) (--no-healthcheck);
    an empty one is none. interval, timeout, start_period in nanoseconds and
    retries: None for docker's defaults (ctr.health). See ctr.spec.health."""

    __slots__ = ()
    FIELDS = {"test": None, "interval": None, "timeout": None, "retries": None,
              "start_period": None}
class Device(Frozen):
    """A device node made at `target` in the container's /dev: --device's (the
    host's node `source`: type "c" or "b", major, minor, its mode bits and
    owner), allowed `access` ("rwm" or a part of it) in the device controller;
    or an OCI bundle's linux.devices entry (type "p" too: a fifo; `source` is
    the host's node of the same path, bound in a user namespace, as runc does),
    whose access the bundle's device rules decide (RunOptions.device_rules)."""

    __slots__ = ()
    FIELDS = {"source": _REQUIRED, "target": _REQUIRED, "type": _REQUIRED, "major": _REQUIRED,
              "minor": _REQUIRED, "access": "rwm", "mode": 0o660, "uid": 0, "gid": 0}


class DeviceRule(Frozen):
    """One rule of the device controller, in order (the last one that matches
    decides, as the runtime-spec says): allow or deny `access` ("rwm" or a part)
    to devices of `type` ("a": all, "c", "b"), `major`:`minor` (None: any)."""

    __slots__ = ()
    FIELDS = {"allow": _REQUIRED, "type": "a", "major": None, "minor": None, "access": "rwm"}


def device_rule_text(rule):
    """A DeviceRule (or its spec.json mapping) as the v1 devices cgroup reads
    it: "c 1:3 rwm", "a *:* r"."""
    num = ["*" if rule.get(k) is None else str(rule[k]) for k in ("major", "minor")]
    return f"{rule.get('type', 'a')} {num[0]}:{num[1]} {rule.get('access', 'rwm')}"


class RunOptions(Frozen):
    """docker's run flags beyond the basics, only those given (see
    ctr.spec.options, which parses and checks them):

      extra_hosts    ((name, ip), ...): --add-host lines in /etc/hosts; ip may be
                     "host-gateway" (the network's gateway, found at start)
      dns, dns_search, dns_options    /etc/resolv.conf's lines, each replacing
                     the host's of its kind
      devices        (Device, ...)
      device_rules   (DeviceRule, ...): the device controller's rules, in
                     order, before ctr's own allowed devices (an OCI bundle's
                     linux.resources.devices); when given, these decide what
                     `devices` may be used, not their `access`
      shm_size       /dev/shm's size in bytes
      sysctls        {key: value}, namespaced keys only
      pid, ipc, uts  the namespace: None (its own), "host", "container:NAME";
                     ipc also "private" (its own) or "shareable" (its own, and
                     others may join it)
      group_add      supplementary groups: names (the image's /etc/group, at
                     start) or numbers, as strings
      oom_score_adj  the command's /proc/self/oom_score_adj
      cidfile        the file the instance's id was written to at create"""

    __slots__ = ()
    FIELDS = dict.fromkeys(("extra_hosts", "dns", "dns_search", "dns_options", "devices",
                            "device_rules",
                            "shm_size", "sysctls", "pid", "ipc", "uts", "group_add",
                            "oom_score_adj", "cidfile"))


LOG_DEFAULTS = LogLimits()
NO_RESTART = Restart()


def _entries(cls):
    return lambda values: tuple(v if type(v) is cls else cls(v) for v in values)


def _typed(cls):
    return lambda value: value if type(value) is cls else cls(value or {})


def _strings(what):
    def coerce(values):
        if isinstance(values, str):
            raise TypeError(f"{what} is a sequence of strings, not one string")
        return tuple(values)
    return coerce


def _seccomp(value):
    return value if isinstance(value, str) else freeze(value)


# How each field is frozen when a spec is made (dataclasses.replace included).
_FREEZE = {
    "command": _strings("command"), "env": _strings("env"), "ports": _entries(Port),
    "resources": _typed(Resources), "vm": _typed(VmOptions), "caps": _strings("caps"),
    "tmpfs": _entries(Tmpfs), "volumes": _entries(Volume), "userns": _typed(Userns),
    "seccomp": _seccomp, "ulimits": _entries(Ulimit), "restart": _typed(Restart),
    "log": _typed(LogLimits), "labels": _typed(Frozen), "publish_all": _entries(Port),
    "oci": freeze, "healthcheck": _typed(Healthcheck), "options": _typed(RunOptions),
}

# Fields added since spec.json was first written: left out of it while they hold
# their default, so a spec without them is written as before (and read by an
# older ctr).
_OMITTED_DEFAULT = ("labels", "publish_all", "oci", "cgroupns", "lxcfs", "healthcheck",
                    "interactive", "options")
CGROUPNS_MODES = ("private", "host")


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    """What an instance is, checked once (ctr.spec.validate): the layers below
    trust it. Build one with ctr.spec.new_spec (typed values) or build_spec
    (the CLI's strings)."""

    name: str
    id: str
    image: str
    image_id: str
    command: tuple
    kind: str = "container"
    env: tuple = ()  # "KEY=VALUE", the image's, ctr's and the user's merged
    workdir: str = "/"
    user: str | None = None
    hostname: str = ""
    tty: bool = False
    remove: bool = False
    network: str = "bridge"  # none | host | bridge | container:NAME | a network's name
    ports: tuple = ()  # of Port
    ip: str | None = None
    resources: Resources = Resources()
    cgroup_parent: str | None = None
    vm: VmOptions = VmOptions()
    caps: tuple = DEFAULT_CAPS  # capability names without CAP_, in kernel order
    privileged: bool = False
    read_only: bool = False
    tmpfs: tuple = ()  # of Tmpfs
    volumes: tuple = ()  # of Volume
    userns: Userns = Userns()
    seccomp: str | Frozen = SECCOMP_DEFAULT  # "default", "unconfined" or a profile
    no_new_privs: bool = True
    ulimits: tuple = ()  # of Ulimit
    init: bool = False
    stop_signal: str = "SIGTERM"
    restart: Restart = NO_RESTART
    log: LogLimits = LOG_DEFAULTS
    sd_notify: str = DEFAULT_SD_NOTIFY
    labels: Frozen = Frozen()  # {key: value}: the image's, then --label-file's, --label's
    publish_all: tuple = ()  # of Port, host_port 0: -P, a free host port each, at start
    # A container's cgroup namespace: its own ("private": /proc/self/cgroup and
    # /sys/fs/cgroup are rooted at its cgroup) or the host's ("host").
    cgroupns: str = "private"
    lxcfs: bool = True  # lxcfs's /proc files, when lxcfs runs on the host
    # What an OCI bundle's config.json asks beyond ctr's own options (ctr.oci
    # makes it; empty for every other instance, and in records made before it):
    #   root            the bundle's root, used as it is (no overlay: the caller owns it)
    #   namespaces      [{"type": T, "path": P?}]: those to make, or join by path
    #   masked_paths, readonly_paths    in place of ctr's defaults
    #   cgroups_path    the instance's cgroup below each hierarchy's root
    #   cgroup_mount    "ro"/"rw": the config mounts cgroup at /sys/fs/cgroup
    #   sysctl, additional_gids, umask, oom_score_adj   the process's, as given
    #   capabilities    {bounding, effective, inheritable, permitted, ambient: names},
    #                   the process's five sets (`caps` is the bounding one); absent
    #                   when the config gives none (then no capabilities, as before)
    #   root_propagation    linux.rootfsPropagation, when given (else rslave before
    #                   the pivot, as runc: mounts made on the host later appear inside)
    oci: Frozen = Frozen()
    healthcheck: Healthcheck = Healthcheck()  # see ctr.spec.health, ctr.health
    interactive: bool = False  # -i: a detached instance's stdin stays open (ctr attach)
    options: RunOptions = RunOptions()  # --add-host, --dns, --device, --pid...: see RunOptions

    def __post_init__(self):
        for name, coerce in _FREEZE.items():
            object.__setattr__(self, name, coerce(getattr(self, name)))

    def to_dict(self):
        """The spec.json form: plain JSON data."""
        return {f.name: thaw(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name not in _OMITTED_DEFAULT or getattr(self, f.name) != f.default}

    @classmethod
    def from_dict(cls, d):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        return cls(**d)


def add_tmpfs(tmpfs, extra):
    """`tmpfs` plus those of `extra` at paths it has not got (what --read-only
    and --init add: the user's own come first and win)."""
    given = {t["path"] for t in tmpfs}
    return (*tmpfs, *(t for t in extra if t["path"] not in given))


class Host(Protocol):
    """What the spec's checks ask of the host, passed in by the caller (ctr.host
    has the real one): the package itself reads nothing of the machine."""

    cpus_online: tuple  # the numbers of the CPUs online
    memory: int | None  # bytes of RAM, None when unknown

    def block_device(self, path: str) -> str | None:
        """"MAJOR:MINOR" of the block device at path; None if it is not one;
        OSError if there is nothing there."""

    def device(self, path: str) -> Mapping | None:
        """The device node at path: {type, major, minor, mode, uid, gid}; None if
        it is not one; OSError if there is nothing there."""

    def seccomp_profile(self, path: str) -> Mapping:
        """A docker-format profile from a file, checked; ValueError if it is not one."""

    def has_init(self, rootfs: str, path: str) -> bool:
        """Whether path, resolved inside the root filesystem, is an executable file."""
