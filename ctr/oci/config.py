"""An OCI bundle's config.json -> InstanceSpec, through the typed constructor
(ctr.spec.new_spec), never through the CLI's strings (runc's specconv).

Every value is checked here, once: a bad one is an InvalidSpec naming the
field ("config.json: process.args: ..."). Fields this module does not know are
ignored, as the runtime-spec asks. What it does with the known ones:

    root.path, root.readonly        the bundle's directory as it is (no overlay)
    process.*                       args, env (exactly), cwd, user uid:gid,
                                    additionalGids (exactly), umask, terminal,
                                    capabilities (the five sets, as runc applies
                                    them: see capability_sets), rlimits,
                                    noNewPrivileges, oomScoreAdj
    hostname
    mounts                          bind/rbind -> volumes, tmpfs -> tmpfs; /proc, /sys,
                                    /dev, /dev/pts, /dev/shm, /dev/mqueue and
                                    /sys/fs/cgroup of their usual types are ctr's own
                                    (the options runc's default spec gives them);
                                    cgroup or cgroup2 at /sys/fs/cgroup: the container's
                                    own cgroup there, as for ctr's containers ("ro":
                                    read-only)
    linux.namespaces                new, or (network, ipc, uts, pid) joined by path
    linux.uid/gidMappings           a new user namespace's maps, as given (id 0 mapped)
    linux.resources                 memory, cpu, pids
    linux.cgroupsPath               absolute; relative under /ctr-oci; default /ctr-oci/ID
    linux.maskedPaths/readonlyPaths, linux.sysctl (namespaced keys only), linux.seccomp
    annotations                     kept in the container's state, not the spec

    hooks                           every phase (ctr.hooks)

Refused with a clear error (not in this version): user, mount and cgroup
namespaces joined by path (and any join beside a new user namespace), other
mount types.
"""

import json
import os
import re

from ctr.errors import InvalidSpec
from ctr.spec.options import SYSCTL_IPC  # the IPC namespace's sysctls (runc's list)

OCI_VERSION = "1.0.2"
CGROUP_PARENT = "/ctr-oci"
STANDARD_MOUNTS = {("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "tmpfs"),
                   ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"), ("/dev/mqueue", "mqueue"),
                   ("/sys/fs/cgroup", "cgroup"), ("/sys/fs/cgroup", "cgroup2")}
TMPFS_FLAGS = ("ro", "nosuid", "nodev", "noexec")
TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes")
PROPAGATION = ("rprivate", "private", "rslave", "slave", "rshared", "shared", "runbindable",
               "unbindable")
IGNORED_MOUNT_OPTIONS = ("rw", "bind", "rbind", "strictatime", "relatime", "norelatime",
                         "noatime", "suid", "dev", "exec", "newinstance")
ROOT_PROPAGATION = ("rprivate", "private", "rslave", "slave", "rshared", "shared")
DEVICE_TYPES = ("c", "b", "p", "u")  # u: an unbuffered character device, made as c
RULE_TYPES = ("a", "c", "b")
HUGEPAGES = "/sys/kernel/mm/hugepages"
NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup")
RLIMIT_INFINITY = (1 << 64) - 1
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
ID_RE = re.compile(r"[\w+.-]+")  # runc's rule for a container's id
CGROUP_PART_RE = re.compile(r"[\w.:@+-]+")


# What the cgroup backends call a limit (ctr run's flag) -> config.json's field.
CGROUP_NAMES = {
    "--memory-swap": "linux.resources.memory.swap", "--memory-reservation":
    "linux.resources.memory.reservation", "--memory": "linux.resources.memory.limit",
    "--cpu-shares/--cpu-weight": "linux.resources.cpu.shares",
    "--cpu-shares": "linux.resources.cpu.shares", "--cpus": "linux.resources.cpu.quota",
    "--cpuset-cpus": "linux.resources.cpu.cpus", "--pids-limit": "linux.resources.pids.limit",
    "--blkio-weight": "linux.resources.blockIO.weight",
    "--device-read-bps": "linux.resources.blockIO.throttleReadBpsDevice",
    "--device-write-bps": "linux.resources.blockIO.throttleWriteBpsDevice",
    "--device-*-bps": "linux.resources.blockIO.throttle*Device",
}


def cgroup_error(err):
    """A CgroupError of ctr-oci's create or update, naming config.json's field
    where the backend named ctr run's flag."""
    text = str(err)
    for flag, field in CGROUP_NAMES.items():
        if text.startswith(flag + " ") or f" {flag} " in text:
            text = text.replace(flag, field, 1)
            break
    for prefix in ("blockIO.", "memory.swappiness", "hugepageLimits", "unified"):
        if text.startswith(prefix):
            text = "linux.resources." + text
            break
    return type(err)(text, op=err.op, path=err.path, value=err.value, errno=err.errno)


def _err(field, why):
    return InvalidSpec(f"config.json: {field}: {why}")


def check_id(cid):
    if not isinstance(cid, str) or not ID_RE.fullmatch(cid) or cid in (".", ".."):
        raise InvalidSpec(f"invalid container id {cid!r}: use letters, digits and _+.-")
    return cid


def read_config(bundle):
    """The bundle's config.json as a dict. InvalidSpec if it cannot be read."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except OSError as err:
        raise InvalidSpec(f"cannot read {path}: {err.strerror}") from err
    except ValueError as err:
        raise InvalidSpec(f"{path} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise InvalidSpec(f"{path}: expected a JSON object")
    return data


def _obj(value, field):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(field, "expected an object")
    return value


def _list(value, field, kind=None):
    if value is None:
        return []
    if not isinstance(value, list) or (kind and not all(isinstance(v, kind) for v in value)):
        raise _err(field, f"expected a list{' of ' + kind.__name__ + 's' if kind else ''}")
    return value


def _int(value, field, lo=None, hi=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise _err(field, f"expected an integer, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _err(field, f"{value} is out of range")
    return value


def _abs(value, field):
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise _err(field, f"expected an absolute path, not {value!r}")
    return os.path.normpath(value)


def root_path(bundle, config):
    """The rootfs directory: root.path, relative to the bundle."""
    root = _obj(config.get("root"), "root")
    path = root.get("path")
    if not isinstance(path, str) or not path or "\0" in path:
        raise _err("root.path", "expected a path")
    full = os.path.realpath(os.path.join(bundle, path))
    if not os.path.isdir(full):
        raise _err("root.path", f"{full} is not a directory")
    return full, bool(root.get("readonly"))


def _user(process, oci):
    """"uid:gid" for the spec; additionalGids, umask and oomScoreAdj into `oci`."""
    user = _obj(process.get("user"), "process.user")
    if user.get("username"):
        raise _err("process.user.username", "not supported: give uid and gid")
    uid = _int(user.get("uid", 0), "process.user.uid", 0, (1 << 32) - 2)
    gid = _int(user.get("gid", 0), "process.user.gid", 0, (1 << 32) - 2)
    oci["additional_gids"] = [
        _int(g, f"process.user.additionalGids[{i}]", 0, (1 << 32) - 2)
        for i, g in enumerate(_list(user.get("additionalGids"), "process.user.additionalGids"))]
    if user.get("umask") is not None:
        oci["umask"] = _int(user["umask"], "process.user.umask", 0, 0o777)
    if process.get("oomScoreAdj") is not None:
        oci["oom_score_adj"] = _int(process["oomScoreAdj"], "process.oomScoreAdj", -1000, 1000)
    return f"{uid}:{gid}"


def capability_sets(value, where):
    """process.capabilities -> {set: [names without CAP_, in kernel order]} for
    each of CAP_SETS, a set not given empty (as runc). `where` begins each
    error ("config.json: process.capabilities"; an exec's "--process FILE:
    capabilities"); the error names the set. Refused, as the kernel would refuse
    them at the init's last step: an unknown name; an effective capability not
    in permitted or an inheritable one not in bounding (capset(2)). An ambient
    one not in both permitted and inheritable (PR_CAP_AMBIENT_RAISE would refuse
    it) is left out, as runc (which warns) and crun do: `runc spec` 1.1.2 to
    1.1.x and the engines of that time wrote ambient sets without inheritable
    ones, and their configs run as they run under runc."""
    from ctr.spec import ALL_CAPS
    from ctr.spec.caps import kernel_order

    if not isinstance(value, dict):
        raise InvalidSpec(f"{where}: expected an object")
    sets = {}
    for name in CAP_SETS:
        names = value.get(name)
        if names is None:
            names = []
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise InvalidSpec(f"{where}.{name}: expected a list of strings")
        for c in names:
            if c.removeprefix("CAP_") not in ALL_CAPS:
                raise InvalidSpec(f"{where}.{name}: unknown capability {c!r}")
        sets[name] = list(kernel_order(c.removeprefix("CAP_") for c in names))
    for name, within, why in (
            ("effective", ("permitted",), "capset(2) refuses an effective capability "
             "that is not permitted"),
            ("inheritable", ("bounding",), "capset(2) refuses an inheritable capability "
             "outside the bounding set")):
        for c in sets[name]:
            missing = [w for w in within if c not in sets[w]]
            if missing:
                raise InvalidSpec(f"{where}.{name}: CAP_{c} is not in the "
                                  f"{' and '.join(missing)} set ({why})")
    sets["ambient"] = [c for c in sets["ambient"]
                       if c in sets["permitted"] and c in sets["inheritable"]]
    return sets


def _caps(process, oci):
    """The bounding set for the spec (its `caps`, what the rest of ctr reads);
    the five sets into `oci` when the process has any."""
    if process.get("capabilities") is None:
        return []
    sets = capability_sets(process["capabilities"], "config.json: process.capabilities")
    oci["capabilities"] = sets
    return sets["bounding"]


def _rlimits(process):
    import resource

    from ctr.spec import Ulimit

    out = []
    for i, r in enumerate(_list(process.get("rlimits"), "process.rlimits")):
        field = f"process.rlimits[{i}]"
        r = _obj(r, field)
        kind = r.get("type")
        if not isinstance(kind, str) or not kind.startswith("RLIMIT_") or not hasattr(
                resource, kind):
            raise _err(f"{field}.type", f"unknown rlimit {kind!r}")
        soft, hard = (_int(r.get(k), f"{field}.{k}", 0, RLIMIT_INFINITY)
                      for k in ("soft", "hard"))
        soft, hard = (-1 if v == RLIMIT_INFINITY else v for v in (soft, hard))
        out.append(Ulimit(name=kind[len("RLIMIT_"):].lower(), soft=soft, hard=hard))
    return out


def _options(m, field):
    return _list(m.get("options"), f"{field}.options", str)


def _mounts(bundle, config):
    from ctr.spec import Tmpfs, Volume

    volumes, tmpfs = [], []
    for i, m in enumerate(_list(config.get("mounts"), "mounts")):
        field = f"mounts[{i}]"
        m = _obj(m, field)
        dest = _abs(m.get("destination"), f"{field}.destination")
        opts = _options(m, field)
        kind = m.get("type") or ("bind" if {"bind", "rbind"} & set(opts) else None)
        if (dest, kind) in STANDARD_MOUNTS:
            continue
        if kind == "bind" or {"bind", "rbind"} & set(opts):
            src = m.get("source")
            if not isinstance(src, str) or not src or "\0" in src:
                raise _err(f"{field}.source", "expected a path")
            src = os.path.join(bundle, src)  # an absolute source stays as it is
            if not os.path.exists(src):
                raise _err(f"{field}.source", f"{src} does not exist")
            volumes.append(Volume(source=os.path.normpath(src), target=dest,
                                  readonly="ro" in opts, propagation=_propagation(opts),
                                  flags=tuple(o for o in opts if o in TMPFS_FLAGS[1:]) or None))
        elif kind == "tmpfs":
            flags = [o for o in opts if o in TMPFS_FLAGS]
            data = [o for o in opts if o.split("=", 1)[0] in TMPFS_DATA]
            other = [o for o in opts if o not in flags and o not in data and o not in PROPAGATION
                     and o not in IGNORED_MOUNT_OPTIONS and o != "tmpcopyup"]
            if other:
                raise _err(f"{field}.options", f"unknown tmpfs option {other[0]!r}")
            tmpfs.append(Tmpfs(path=dest, flags=flags, data=",".join(data),
                               copyup=True if "tmpcopyup" in opts else None,
                               propagation=_propagation(opts)))
        else:
            raise _err(f"{field}.type", f"{kind!r} at {dest} is not supported")
    return volumes, tmpfs


def _propagation(opts):
    """The propagation options of a mount, in order; None for none."""
    return tuple(o for o in opts if o in PROPAGATION) or None


def _root_propagation(linux):
    value = linux.get("rootfsPropagation")
    if value in (None, ""):
        return None  # runc's rslave before the pivot (ctr.namespaces), nothing after
    if value not in ROOT_PROPAGATION:
        raise _err("linux.rootfsPropagation", f"{value!r} is not one of "
                   f"{', '.join(ROOT_PROPAGATION)}")
    return value


def _devices(linux):
    """linux.devices: the nodes made in the container (Device entries)."""
    from ctr.spec import Device

    out = []
    for i, d in enumerate(_list(linux.get("devices"), "linux.devices")):
        field = f"linux.devices[{i}]"
        d = _obj(d, field)
        path = _abs(d.get("path"), f"{field}.path")
        if not path.startswith("/dev/"):
            raise _err(f"{field}.path", f"{path} is not under /dev")
        kind = d.get("type")
        if kind not in DEVICE_TYPES:
            raise _err(f"{field}.type", f"{kind!r} is not one of c, b, u, p")
        numbers = [0, 0]
        if kind != "p":
            numbers = [_int(d.get(k), f"{field}.{k}", 0, (1 << 32) - 1)
                       for k in ("major", "minor")]
        mode = d.get("fileMode")
        out.append(Device(
            source=path, target=path, type="c" if kind == "u" else kind, major=numbers[0],
            minor=numbers[1],
            # the type's bits may be given too (podman does): the permission bits kept
            mode=0o666 if mode is None else _int(mode, f"{field}.fileMode", 0, 0o177777) & 0o7777,
            uid=_int(d.get("uid", 0), f"{field}.uid", 0, (1 << 32) - 2),
            gid=_int(d.get("gid", 0), f"{field}.gid", 0, (1 << 32) - 2)))
    if len({d.target for d in out}) != len(out):
        raise _err("linux.devices", "a path is listed twice")
    return tuple(out)


def _check_bound_devices(devices):
    """In a user namespace mknod is refused: each node is the host's of the same
    path, bound (runc's way), which must be that very device."""
    import stat

    kinds = {"c": stat.S_ISCHR, "b": stat.S_ISBLK, "p": stat.S_ISFIFO}
    for i, d in enumerate(devices):
        try:
            st = os.stat(d.target)
        except OSError:
            st = None
        if st is None or not kinds[d.type](st.st_mode) or (d.type != "p" and (
                os.major(st.st_rdev), os.minor(st.st_rdev)) != (d.major, d.minor)):
            raise _err(f"linux.devices[{i}]", f"in a user namespace the host's {d.target} is "
                       f"bound (mknod is refused there), and it is not {d.type} "
                       f"{d.major}:{d.minor}")


def _device_rules(res):
    """linux.resources.devices: the device controller's rules, in order."""
    from ctr.spec import DeviceRule

    out = []
    for i, r in enumerate(_list(res.get("devices"), "linux.resources.devices")):
        field = f"linux.resources.devices[{i}]"
        r = _obj(r, field)
        if not isinstance(r.get("allow"), bool):
            raise _err(f"{field}.allow", "expected true or false")
        kind = r.get("type") or "a"
        if kind not in RULE_TYPES:
            raise _err(f"{field}.type", f"{kind!r} is not one of a, c, b")
        access = r.get("access") or "rwm"
        if not isinstance(access, str) or not re.fullmatch(r"[rwm]{1,3}", access) or len(
                set(access)) != len(access):
            raise _err(f"{field}.access", f"{access!r}: expected r, w and m, or some of them")
        numbers = {k: None if r.get(k) in (None, -1) else
                   _int(r[k], f"{field}.{k}", 0, (1 << 32) - 1) for k in ("major", "minor")}
        out.append(DeviceRule(allow=r["allow"], type=kind, access=access, **numbers))
    return tuple(out)


def _cgroup_mount(config):
    """"ro" or "rw" when the config mounts cgroup (or cgroup2) at /sys/fs/cgroup,
    else None (_mounts checked the entries)."""
    for m in config.get("mounts") or ():
        if m.get("destination") == "/sys/fs/cgroup" and m.get("type") in ("cgroup", "cgroup2"):
            return "ro" if "ro" in (m.get("options") or ()) else "rw"
    return None


def _namespaces(linux):
    seen = []
    for i, ns in enumerate(_list(linux.get("namespaces"), "linux.namespaces")):
        field = f"linux.namespaces[{i}]"
        ns = _obj(ns, field)
        kind = ns.get("type")
        if kind not in NAMESPACES:
            raise _err(f"{field}.type", f"unknown namespace type {kind!r}")
        if kind in (n["type"] for n in seen):
            raise _err(field, f"the {kind} namespace is listed twice")
        entry = {"type": kind}
        if ns.get("path"):
            path = _abs(ns["path"], f"{field}.path")
            if kind not in ("network", "ipc", "uts", "pid"):  # user, mount, cgroup
                raise _err(f"{field}.path", f"joining a {kind} namespace by path is not "
                           "supported")
            if not os.path.exists(path):
                raise _err(f"{field}.path", f"{path} does not exist")
            entry["path"] = path
        seen.append(entry)
    if not any(n["type"] == "mount" and "path" not in n for n in seen):
        raise _err("linux.namespaces", "a new mount namespace is required")
    return seen


def _id_maps(linux, namespaces):
    """linux.uidMappings/gidMappings of a new user namespace: {"uid": [...],
    "gid": [...]} of {containerID, hostID, size}, or None without one. The
    container's id 0 must be mapped (ctr's init becomes it before anything)."""
    user = any(n["type"] == "user" for n in namespaces)
    if user and any("path" in n for n in namespaces):
        raise _err("linux.namespaces", "a new user namespace together with namespaces "
                   "joined by path is not supported")
    maps = {}
    for kind in ("uid", "gid"):
        key = f"linux.{kind}Mappings"
        entries = _list(linux.get(f"{kind}Mappings"), key)
        if entries and not user:
            raise _err(key, "given, but linux.namespaces has no user namespace")
        if user and not entries:
            raise _err(key, "a user namespace needs its id mappings")
        if len(entries) > 340:  # the kernel's limit on lines of a map
            raise _err(key, "more than 340 ranges")
        out = []
        for i, m in enumerate(entries):
            m = _obj(m, f"{key}[{i}]")
            out.append({k: _int(m.get(k), f"{key}[{i}].{k}", lo=1 if k == "size" else 0,
                                hi=(1 << 32) - 1) for k in ("containerID", "hostID", "size")})
        if user and not any(m["containerID"] == 0 for m in out):
            raise _err(key, "the container's id 0 must be mapped")
        maps[kind] = out
    return maps if user else None


def _check_hostname(hostname, namespaces):
    """runc's rule: a hostname needs a UTS namespace of the container's own."""
    if hostname and not any(n["type"] == "uts" and "path" not in n for n in namespaces):
        raise _err("hostname", "set, but the container has no UTS namespace of its own")


def cgroups_path(linux, cid, systemd=False):
    """The container's cgroup below each hierarchy's root."""
    value = linux.get("cgroupsPath")
    if value is None or value == "":
        return f"{CGROUP_PARENT}/{cid}"
    if not isinstance(value, str):
        raise _err("linux.cgroupsPath", "expected a string")
    if not value.startswith("/") and value.count(":") == 2:
        raise _err("linux.cgroupsPath", f"{value!r} is systemd's slice:prefix:name, and "
                   "systemd is not the cgroup manager here (use a cgroupfs path)")
    del systemd
    parts = [p for p in value.split("/") if p]
    if not parts or any(p in (".", "..") or not CGROUP_PART_RE.fullmatch(p) for p in parts):
        raise _err("linux.cgroupsPath", f"invalid path {value!r}")
    prefix = "" if value.startswith("/") else CGROUP_PARENT
    return prefix + "/" + "/".join(parts)


def _resources(linux):
    return resources_of(linux.get("resources"), "linux.resources")


def resources_of(res, where):
    """A runtime-spec resources object -> Resources; errors name `where`
    (linux.resources of config.json, or update's --resources)."""
    try:
        return _resources_of(res)
    except InvalidSpec as err:
        if where == "linux.resources":
            raise
        text = str(err).replace("config.json: linux.resources.", f"{where}: ", 1)
        raise InvalidSpec(text.replace("config.json: linux.resources", where, 1)) from None


def _resources_of(res):
    from ctr.spec import Resources

    res = _obj(res, "linux.resources")
    out = {}
    mem = _obj(res.get("memory"), "linux.resources.memory")
    if mem.get("limit") is not None and mem["limit"] != -1:
        out["memory"] = _int(mem["limit"], "linux.resources.memory.limit", 1)
    if mem.get("swap") is not None and "memory" in out:
        swap = _int(mem["swap"], "linux.resources.memory.swap", -1)
        if swap:
            out["memory_swap"] = swap
    cpu = _obj(res.get("cpu"), "linux.resources.cpu")
    if cpu.get("quota") is not None and cpu["quota"] > 0:
        quota = _int(cpu["quota"], "linux.resources.cpu.quota", 1)
        period = _int(cpu.get("period") or 100000, "linux.resources.cpu.period", 1000)
        out["cpus"] = quota / period
    if cpu.get("shares"):
        out["cpu_shares"] = _int(cpu["shares"], "linux.resources.cpu.shares", 2, 262144)
    if cpu.get("cpus"):
        if not isinstance(cpu["cpus"], str):
            raise _err("linux.resources.cpu.cpus", "expected a string like 0-1,3")
        out["cpuset_cpus"] = cpu["cpus"]
    pids = _obj(res.get("pids"), "linux.resources.pids")
    if pids.get("limit") is not None and pids["limit"] != 0:
        out["pids_limit"] = _int(pids["limit"], "linux.resources.pids.limit", -1)
    if mem.get("reservation") not in (None, -1, 0):
        out["memory_reservation"] = _int(mem["reservation"], "linux.resources.memory."
                                         "reservation", 6 << 20)
    if mem.get("swappiness") not in (None, -1, (1 << 64) - 1):  # unset: -1, podman's 2**64-1
        out["memory_swappiness"] = _int(mem["swappiness"], "linux.resources.memory.swappiness",
                                        0, 100)
    # kernel, kernelTCP, disableOOMKiller, useHierarchy: deprecated or v1-only
    # knobs runc too sets at most best-effort: ignored, as the spec allows.
    out.update(_block_io(_obj(res.get("blockIO"), "linux.resources.blockIO")))
    pages = []
    for i, h in enumerate(_list(res.get("hugepageLimits"), "linux.resources.hugepageLimits")):
        field = f"linux.resources.hugepageLimits[{i}]"
        h = _obj(h, field)
        size = h.get("pageSize")
        kib = _page_kib(size)
        if kib is None:
            raise _err(f"{field}.pageSize", f"{size!r}: expected a size like 2MB")
        if not os.path.isdir(f"{HUGEPAGES}/hugepages-{kib}kB"):
            raise _err(f"{field}.pageSize", f"{size} is not a hugepage size of this host")
        pages.append((size, _int(h.get("limit"), f"{field}.limit", 0)))
    if pages:
        out["hugepage_limits"] = pages
    unified = _obj(res.get("unified"), "linux.resources.unified")
    for key, value in unified.items():
        if not isinstance(value, str) or "\0" in value or not re.fullmatch(
                r"[a-z0-9_]+\.[a-z0-9_.]+", key) or key.startswith("cgroup."):
            raise _err("linux.resources.unified", f"invalid entry {key!r}: expected a "
                       "controller's file (memory.high) and a string")
    if unified:
        out["unified"] = dict(unified)
    return Resources(out)


def _page_kib(size):
    """"2MB" -> 2048; None if it is not a size."""
    m = re.fullmatch(r"(\d+)([KMG])B", size) if isinstance(size, str) else None
    return int(m[1]) << {"K": 0, "M": 10, "G": 20}[m[2]] if m else None


def _block_io(bio):
    where = "linux.resources.blockIO"
    out = {}
    if bio.get("weight") not in (None, 0):
        out["blkio_weight"] = _int(bio["weight"], f"{where}.weight", 10, 1000)
    # leafWeight (and weightDevice's): CFQ's, gone from kernels since 5.0: ignored.
    weights = []
    for i, w in enumerate(_list(bio.get("weightDevice"), f"{where}.weightDevice")):
        field = f"{where}.weightDevice[{i}]"
        w = _obj(w, field)
        if w.get("weight") is not None:
            weights.append((_devno(w, field), _int(w["weight"], f"{field}.weight", 10, 1000)))
    if weights:
        out["blkio_weight_device"] = weights
    for key, name in (("device_read_bps", "throttleReadBpsDevice"),
                      ("device_write_bps", "throttleWriteBpsDevice"),
                      ("device_read_iops", "throttleReadIOPSDevice"),
                      ("device_write_iops", "throttleWriteIOPSDevice")):
        rates = []
        for i, r in enumerate(_list(bio.get(name), f"{where}.{name}")):
            field = f"{where}.{name}[{i}]"
            r = _obj(r, field)
            rates.append((_devno(r, field), _int(r.get("rate"), f"{field}.rate", 0)))
        if rates:
            out[key] = rates
    return out


def _devno(entry, field):
    major, minor = (_int(entry.get(k), f"{field}.{k}", 0, (1 << 32) - 1)
                    for k in ("major", "minor"))
    return f"{major}:{minor}"


def _sysctl(linux):
    out = {}
    for key, value in _obj(linux.get("sysctl"), "linux.sysctl").items():
        if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9_.]+", key):
            raise _err("linux.sysctl", f"invalid entry {key!r}")
        if not (key.startswith(("net.", "fs.mqueue.")) or key in SYSCTL_IPC):
            raise _err("linux.sysctl", f"{key} is not in the container's namespaces")
        out[key] = value
    return out


def _seccomp(linux):
    """The OCI profile in the shape ctr.seccomp reads (docker's, which has
    the same fields); None when there is none (unconfined, as runc)."""
    from ctr.seccomp import ProfileError, check

    sec = linux.get("seccomp")
    if sec is None:
        return None
    sec = _obj(sec, "linux.seccomp")
    profile = {k: sec[k] for k in ("defaultAction", "defaultErrnoRet", "architectures")
               if k in sec}
    profile["syscalls"] = [{k: s[k] for k in ("names", "action", "errnoRet", "args") if k in s}
                           for s in _list(sec.get("syscalls"), "linux.seccomp.syscalls", dict)]
    try:
        check(profile)
    except ProfileError as err:
        raise _err("linux.seccomp", str(err)) from None
    return profile


def _hooks(config):
    """config.hooks: {phase: [{path, args, env, timeout}]} (ctr.hooks runs them)."""
    from ctr.hooks import PHASES

    out = {}
    for phase, hooks in _obj(config.get("hooks"), "hooks").items():
        if phase not in PHASES:
            continue  # unknown fields are ignored
        checked = []
        for i, hook in enumerate(_list(hooks, f"hooks.{phase}")):
            where = f"hooks.{phase}[{i}]"
            hook = _obj(hook, where)
            entry = {"path": _abs(hook.get("path"), f"{where}.path")}
            if hook.get("args") is not None:
                entry["args"] = _list(hook["args"], f"{where}.args", str)
            env = _list(hook.get("env"), f"{where}.env", str)
            if any("=" not in e or "\0" in e for e in env):
                raise _err(f"{where}.env", "expected KEY=VALUE strings")
            entry["env"] = env
            if hook.get("timeout") is not None:
                entry["timeout"] = _int(hook["timeout"], f"{where}.timeout", lo=1)
            checked.append(entry)
        if checked:
            out[phase] = checked
    return out


def _lsm(process):
    for key, where in (("apparmorProfile", "/sys/kernel/security/apparmor"),
                       ("selinuxLabel", "/sys/fs/selinux/enforce")):
        if process.get(key) and not os.path.exists(where):
            raise _err(f"process.{key}", "set, but the host has no such security module")


def annotations(config):
    out = _obj(config.get("annotations"), "annotations")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in out.items()):
        raise _err("annotations", "expected strings")
    return out


def to_spec(bundle, config, cid, host=None, systemd_cgroup=False):
    """The InstanceSpec of container `cid` from its bundle's `config`."""
    import dataclasses

    from ctr.spec import check_hostname, check_workdir, new_spec

    check_id(cid)
    if not isinstance(config.get("ociVersion"), str):
        raise _err("ociVersion", "expected a version string")
    hooks = _hooks(config)
    root, readonly = root_path(bundle, config)
    process = _obj(config.get("process"), "process")
    if not process:
        raise _err("process", "required to create a container")
    args = _list(process.get("args"), "process.args", str)
    if not args or not args[0]:
        raise _err("process.args", "expected the command to run")
    env = _list(process.get("env"), "process.env", str)
    for e in env:
        if "=" not in e or e.startswith("=") or "\0" in e:
            raise _err("process.env", f"invalid entry {e!r}: expected KEY=VALUE")
    cwd = process.get("cwd", "/")
    try:
        cwd = check_workdir(cwd)
    except InvalidSpec:
        raise _err("process.cwd", f"expected an absolute path, not {cwd!r}") from None
    _lsm(process)
    linux = _obj(config.get("linux"), "linux")
    hostname = config.get("hostname") or None
    try:
        check_hostname(hostname)
    except InvalidSpec:
        raise _err("hostname", f"invalid hostname {hostname!r}") from None
    volumes, tmpfs = _mounts(bundle, config)
    seccomp = _seccomp(linux)
    namespaces = _namespaces(linux)
    id_maps = _id_maps(linux, namespaces)
    _check_hostname(hostname, namespaces)
    oci = {"root": root, "namespaces": namespaces,
           "cgroups_path": cgroups_path(linux, cid, systemd_cgroup)}
    userns = None
    if id_maps:
        oci["id_mappings"] = id_maps
        zero = {k: next(m for m in id_maps[k] if m["containerID"] == 0) for k in id_maps}
        userns = {"mode": "oci", "uid": zero["uid"]["hostID"], "gid": zero["gid"]["hostID"],
                  "size": zero["uid"]["size"]}
    for key, name in (("maskedPaths", "masked_paths"), ("readonlyPaths", "readonly_paths")):
        if key in linux:
            oci[name] = [_abs(p, f"linux.{key}") for p in _list(linux[key], f"linux.{key}")]
    cgroup_mount = _cgroup_mount(config)
    if cgroup_mount:
        oci["cgroup_mount"] = cgroup_mount
    sysctl = _sysctl(linux)
    if sysctl:
        oci["sysctl"] = sysctl
    if _root_propagation(linux):
        oci["root_propagation"] = _root_propagation(linux)
    options = {"device_rules": _device_rules(_obj(linux.get("resources"), "linux.resources"))}
    devices = _devices(linux)
    if devices:
        options["devices"] = devices
        if userns:
            _check_bound_devices(devices)
    if hooks:
        oci["hooks"] = hooks
        oci["hook_state"] = {"id": cid, "bundle": bundle, "annotations": annotations(config),
                             "version": config["ociVersion"]}
    spec = new_spec(
        image={"name": bundle, "id": "bundle:" + bundle}, command=args,
        name=re.sub(r"[^\w.-]", "_", cid).lstrip("_.-")[:63] or "oci", env=(),
        workdir=cwd, user=_user(process, oci), hostname=hostname or "",
        tty=bool(process.get("terminal")), network="none", resources=_resources(linux),
        caps=_caps(process, oci), read_only=readonly, tmpfs=tmpfs, volumes=volumes,
        seccomp=seccomp if seccomp is not None else "unconfined",
        no_new_privs=bool(process.get("noNewPrivileges")), ulimits=_rlimits(process),
        userns=userns, oci=oci, host=host, lxcfs=False, options=options)
    # The process's environment is the config's, exactly (no PATH or HOSTNAME of
    # ctr's); the hostname is set only when the config names one; a read-only
    # root gets no tmpfs at /tmp and /run of ctr's (runc adds none).
    return dataclasses.replace(spec, env=tuple(env), hostname=hostname or "", tmpfs=tmpfs)
