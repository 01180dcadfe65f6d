"""InstanceSpec: the validated, immutable description of an instance.

Every user input is checked here, once; the layers below trust a spec.
"""

import dataclasses
import os
import re

from ctr.errors import InvalidSpec

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
HOSTNAME_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
HOSTNAME_RE = re.compile(rf"{HOSTNAME_LABEL}(\.{HOSTNAME_LABEL})*")
ENV_KEY_RE = re.compile(r"[^=\0]+")
USER_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*(:[a-zA-Z0-9_][a-zA-Z0-9_.-]*)?")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KINDS = ("container", "vm")

# Names generated when none is given: adjective_noun, as users of docker know.
_ADJECTIVES = (
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "young", "zesty",
    "bold", "crisp",
)
_NOUNS = (
    "babbage", "curie", "darwin", "euler", "fermi", "galois", "hopper", "lovelace", "meitner",
    "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "yalow",
    "lamport", "knuth", "hamilton",
)


def generate_name():
    a, b = os.urandom(2)
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}_{_NOUNS[b % len(_NOUNS)]}_{os.urandom(2).hex()}"


def new_id():
    return os.urandom(32).hex()


def check_name(name, what="name"):
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidSpec(
            f"invalid {what} {name!r}: use 1-63 characters from [a-zA-Z0-9_.-], "
            "starting with a letter or digit"
        )
    return name


def parse_env(items, environ=None):
    """-e K=V or -e K (taken from ctr's own environment, dropped when unset)."""
    environ = os.environ if environ is None else environ
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or not ENV_KEY_RE.fullmatch(key) or "\0" in value:
            raise InvalidSpec(f"invalid environment variable {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in environ:
                continue
            value = environ[key]
        out.append(f"{key}={value}")
    return out


def read_env_file(path):
    """docker's --env-file: KEY=VALUE lines; blank lines and # comments are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise InvalidSpec(f"cannot read env file {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise InvalidSpec(f"cannot read env file {path}: not UTF-8 text") from err
    items = [line.strip() for line in lines]
    items = [line for line in items if line and not line.startswith("#")]
    try:
        return parse_env(items)
    except InvalidSpec as err:
        raise InvalidSpec(f"{path}: {err}") from None


def merge_env(*layers):
    """Later layers win; order of first appearance is kept."""
    merged = {}
    for layer in layers:
        for item in layer:
            key, _, value = item.partition("=")
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def check_workdir(path):
    if path is None:
        return None
    if not path.startswith("/") or "\0" in path:
        raise InvalidSpec(f"invalid working directory {path!r}: must be an absolute path")
    return os.path.normpath(path)


def check_user(user):
    if user is None or user == "":
        return None
    if not USER_RE.fullmatch(user):
        raise InvalidSpec(f"invalid user {user!r}: expected NAME, UID, NAME:GROUP or UID:GID")
    return user


def check_hostname(hostname):
    if hostname is None:
        return None
    if len(hostname) > 64 or not HOSTNAME_RE.fullmatch(hostname):
        raise InvalidSpec(f"invalid hostname {hostname!r}")
    return hostname


# -- resources (cgroup limits) ------------------------------------------------------

SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_MEMORY = 6 << 20  # docker's minimum: below it a container cannot even start
CPU_PERIOD = 100_000  # microseconds, as docker and runc use for --cpus
RESOURCE_KEYS = ("memory", "memory_swap", "cpus", "cpu_shares", "cpu_weight", "cpuset_cpus",
                 "pids_limit", "blkio_weight", "device_read_bps", "device_write_bps")


def parse_size(value, what):
    """docker's sizes: a number with an optional unit b, k, m, g (t), binary multiples."""
    m = SIZE_RE.fullmatch(str(value).strip())
    if not m:
        raise InvalidSpec(f"invalid {what} {value!r}: expected a size like 64m, 1g or 512k")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).lower()])


def _int_in(value, what, low, high):
    try:
        n = int(str(value).strip())
    except ValueError:
        raise InvalidSpec(f"invalid {what} {value!r}: expected an integer") from None
    if not low <= n <= high:
        raise InvalidSpec(f"invalid {what} {value}: must be between {low} and {high}")
    return n


def _cpu_list(text):
    """'0-2,5' -> [0, 1, 2, 5]; ValueError when malformed."""
    cpus = set()
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        lo, hi = int(lo), int(hi) if sep else int(lo)
        if lo < 0 or hi < lo:
            raise ValueError(part)
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def host_cpus():
    with open("/sys/devices/system/cpu/online") as f:
        return _cpu_list(f.read().strip())


def check_cpuset(value, online=None):
    try:
        cpus = _cpu_list(value.strip())
    except ValueError:
        raise InvalidSpec(f"invalid cpuset {value!r}: expected a list like 0-2,5") from None
    online = host_cpus() if online is None else online
    missing = sorted(set(cpus) - set(online))
    if missing:
        raise InvalidSpec(f"invalid cpuset {value!r}: CPU {missing[0]} is not online "
                          f"(online: {','.join(map(str, online))})")
    return ",".join(map(str, cpus))


def check_device_rate(item, what):
    """--device-read-bps /dev/sda:10m -> ["MAJOR:MINOR", bytes]; the path must be a
    block device on the host."""
    import stat

    path, sep, rate = item.rpartition(":")
    if not sep or not path:
        raise InvalidSpec(f"invalid {what} {item!r}: expected DEVICE:RATE, like /dev/sda:10m")
    try:
        st = os.stat(path)
    except OSError as err:
        raise InvalidSpec(f"invalid {what} {item!r}: {path}: {err.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidSpec(f"invalid {what} {item!r}: {path} is not a block device")
    return [f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", parse_size(rate, what)]


def build_resources(current=None, *, memory=None, memory_swap=None, cpus=None, cpu_shares=None,
                    cpu_weight=None, cpuset_cpus=None, pids_limit=None, blkio_weight=None,
                    device_read_bps=(), device_write_bps=(), ncpus=None):
    """Validate resource options (as strings from the CLI) into the spec's resources
    dict. `current` is the instance's present resources, for `ctr update`: options
    given replace them, the others are kept."""
    res = dict(current or {})
    if memory is not None:
        res["memory"] = parse_size(memory, "memory limit")
        if res["memory"] < MIN_MEMORY:
            raise InvalidSpec(f"invalid memory limit {memory!r}: the minimum is 6m")
    if memory_swap is not None:
        res["memory_swap"] = (-1 if str(memory_swap).strip() == "-1"
                              else parse_size(memory_swap, "memory+swap limit"))
    if "memory_swap" in res:
        if "memory" not in res:
            raise InvalidSpec("--memory-swap needs --memory (it is memory plus swap)")
        if res["memory_swap"] != -1 and res["memory_swap"] < res["memory"]:
            raise InvalidSpec("--memory-swap must be at least --memory (it is memory plus "
                              "swap; -1 for unlimited swap)")
    if cpus is not None:
        try:
            n = float(cpus)
        except ValueError:
            raise InvalidSpec(f"invalid --cpus {cpus!r}: expected a number like 0.5") from None
        ncpus = len(host_cpus()) if ncpus is None else ncpus
        if not 0.01 <= n <= ncpus:
            raise InvalidSpec(f"invalid --cpus {cpus}: must be between 0.01 and {ncpus} "
                              "(the CPUs this host has)")
        res["cpus"] = n
    if cpu_shares is not None and cpu_weight is not None:
        raise InvalidSpec("give --cpu-shares or --cpu-weight, not both")
    if cpu_shares is not None:
        res.pop("cpu_weight", None)
        res["cpu_shares"] = _int_in(cpu_shares, "--cpu-shares", 2, 262144)
    if cpu_weight is not None:
        res.pop("cpu_shares", None)
        res["cpu_weight"] = _int_in(cpu_weight, "--cpu-weight", 1, 10000)
    if cpuset_cpus is not None:
        res["cpuset_cpus"] = check_cpuset(cpuset_cpus)
    if pids_limit is not None:
        n = _int_in(pids_limit, "--pids-limit", -1, 2**31 - 1)
        res["pids_limit"] = n if n > 0 else -1  # docker: 0 and -1 mean unlimited
    if blkio_weight is not None:
        res["blkio_weight"] = _int_in(blkio_weight, "--blkio-weight", 10, 1000)
    for key, items in (("device_read_bps", device_read_bps),
                       ("device_write_bps", device_write_bps)):
        if items:
            what = "--" + key.replace("_", "-")
            rates = dict(res.get(key) or [])
            rates.update(check_device_rate(i, what) for i in items)
            res[key] = sorted([dev, rate] for dev, rate in rates.items())
    return {k: res[k] for k in RESOURCE_KEYS if k in res}


def check_cgroup_parent(value):
    """None (ctr's default, /ctr), "self" (beneath ctr's own cgroup) or a path
    below each hierarchy's root."""
    if value is None or value == "self":
        return value
    parts = [p for p in value.split("/") if p]
    if not parts or any(p in (".", "..") or not NAME_RE.fullmatch(p) for p in parts):
        raise InvalidSpec(f"invalid --cgroup-parent {value!r}: expected a path like "
                          "/mygroup/sub (letters, digits, _.-) or 'self'")
    return "/" + "/".join(parts)


# -- network options --------------------------------------------------------------

PORT_RE = re.compile(r"(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?P<host>\d{1,5}):(?P<port>\d{1,5})"
                     r"(?:/(?P<proto>tcp|udp))?")


def check_network(value):
    """none | host | bridge (ctr0, the default) | container:NAME | a network's NAME."""
    value = value or "bridge"
    if value in ("none", "host", "bridge"):
        return value
    if value.startswith("container:"):
        check_name(value.split(":", 1)[1], "instance name in --network container:NAME")
        return value
    return check_name(value, "network name")


def check_ports(items):
    """-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] -> dicts, docker's syntax."""
    import ipaddress

    out = []
    for item in items:
        m = PORT_RE.fullmatch(item.strip())
        if not m:
            raise InvalidSpec(f"invalid port {item!r}: expected [HOSTIP:]HOSTPORT:PORT[/tcp|/udp]")
        host_ip = m.group("ip") or "0.0.0.0"
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise InvalidSpec(f"invalid port {item!r}: {host_ip} is not an IPv4 address") from None
        host, port = int(m.group("host")), int(m.group("port"))
        if not (0 < host < 65536 and 0 < port < 65536):
            raise InvalidSpec(f"invalid port {item!r}: ports are 1-65535")
        entry = {"host_ip": host_ip, "host_port": host, "port": port,
                 "proto": m.group("proto") or "tcp"}
        if any(e["host_port"] == host and e["proto"] == entry["proto"] for e in out):
            raise InvalidSpec(f"invalid port {item!r}: host port {host}/{entry['proto']} "
                              "is published twice")
        out.append(entry)
    return out


def check_ip(value):
    if value is None:
        return None
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise InvalidSpec(f"invalid --ip {value!r}: expected an IPv4 address") from None


# Linux capabilities, by number (linux/capability.h).
ALL_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
# docker's default set.
DEFAULT_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def _cap_names(values, opt):
    out = []
    for value in values:
        for name in str(value).split(","):
            name = name.strip().upper().removeprefix("CAP_")
            if name == "ALL":
                out.extend(ALL_CAPS)
            elif name in ALL_CAPS:
                out.append(name)
            else:
                raise InvalidSpec(f"invalid {opt} {value!r}: unknown capability {name or '?'}")
    return out


def build_caps(cap_add=(), cap_drop=(), privileged=False):
    """The capability set, docker's way: the default set (all with --privileged),
    minus --cap-drop, plus --cap-add (ALL is every capability)."""
    add, drop = _cap_names(cap_add, "--cap-add"), _cap_names(cap_drop, "--cap-drop")
    base = ALL_CAPS if privileged else DEFAULT_CAPS
    caps = [c for c in base if c not in drop] + [c for c in add if c not in drop]
    return tuple(c for c in ALL_CAPS if c in caps)  # kernel order, no duplicates


TMPFS_FLAGS = ("ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec")


def check_tmpfs(values, read_only=False):
    """--tmpfs PATH[:OPTIONS] (size=64m,mode=1777,noexec,...); --read-only adds
    /tmp and /run unless given."""
    out = []
    for value in values:
        path, _, opts = str(value).partition(":")
        if not path.startswith("/") or "\0" in value or os.path.normpath(path) == "/":
            raise InvalidSpec(f"invalid --tmpfs {value!r}: expected an absolute PATH[:OPTIONS]")
        flags, data = [], []
        for opt in filter(None, opts.split(",")):
            key = opt.split("=", 1)[0]
            if opt in TMPFS_FLAGS:
                flags.append(opt)
            elif key in ("size", "mode", "uid", "gid", "nr_inodes"):
                data.append(opt)
            else:
                raise InvalidSpec(f"invalid --tmpfs {value!r}: unknown option {opt!r}")
        out.append({"path": os.path.normpath(path), "flags": flags, "data": ",".join(data)})
    if read_only:
        given = {t["path"] for t in out}
        out += [{"path": p, "flags": ["nosuid", "nodev"], "data": "mode=1777"}
                for p in ("/tmp", "/run") if p not in given]
    return tuple(out)


def check_volumes(values):
    """-v SRC:DST[:ro|rw]: SRC an existing absolute host path, DST absolute."""
    out = []
    for value in values:
        parts = str(value).split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise InvalidSpec(f"invalid -v {value!r}: expected SRC:DST[:ro]")
        src, dst = parts[0], parts[1]
        if not src.startswith("/") or not dst.startswith("/") or "\0" in value:
            raise InvalidSpec(f"invalid -v {value!r}: both paths must be absolute")
        if os.path.normpath(dst) == "/":
            raise InvalidSpec(f"invalid -v {value!r}: cannot mount over the root")
        if not os.path.exists(src):
            raise InvalidSpec(f"-v {value}: {src} does not exist on the host")
        out.append({"source": os.path.realpath(src), "target": os.path.normpath(dst),
                    "readonly": len(parts) == 3 and parts[2] == "ro"})
    return tuple(out)


def check_security_opts(values, privileged=False):
    """--security-opt seccomp=unconfined|default|FILE.json, no-new-privileges[=BOOL]
    (docker's spellings, also with ':'). Returns (seccomp, no_new_privs): seccomp
    is "default", "unconfined" or the profile itself (kept in the spec, so a
    later change of the file does not change the instance)."""
    from ctr import seccomp

    profile, nnp = seccomp.DEFAULT, True
    for value in values:
        value = str(value)
        cut = min((i for i in (value.find("="), value.find(":")) if i >= 0), default=len(value))
        key, sep, arg = value[:cut], value[cut:cut + 1], value[cut + 1:]
        if key == "seccomp" and arg in (seccomp.UNCONFINED, seccomp.DEFAULT):
            profile = arg
        elif key == "seccomp" and arg:
            try:
                profile = seccomp.load_file(arg)
            except seccomp.ProfileError as err:
                raise InvalidSpec(f"--security-opt {value}: {err}") from err
        elif key == "no-new-privileges" and arg.lower() in ("", "true", "false"):
            nnp = arg.lower() != "false" or not sep
        else:
            raise InvalidSpec(f"invalid --security-opt {value!r}: expected "
                              "seccomp=unconfined|FILE.json or no-new-privileges[=true|false]")
    if privileged:
        profile = seccomp.UNCONFINED
    return profile, nnp


def check_userns(value, kind="container", privileged=False, network="bridge"):
    """--userns=host (the default: container root is host root, as in docker)
    or auto (ids of its own; the block is allocated when the record is made)."""
    if value in (None, "", "host"):
        return {}
    if value != "auto":
        raise InvalidSpec(f"invalid --userns {value!r}: expected auto or host")
    if kind != "container":
        raise InvalidSpec("--userns=auto is for containers (a VM has its own kernel)")
    if privileged:
        raise InvalidSpec("--userns=auto and --privileged exclude each other")
    if network == "host" or network.startswith("container:"):
        raise InvalidSpec(f"--userns=auto needs a network namespace of its own, "
                          f"not --network {network}")
    return {"mode": "auto"}


ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def check_ulimits(values):
    """--ulimit NAME=SOFT[:HARD] (docker's form; -1 or 'unlimited' for no limit)."""
    out = {}
    for value in values:
        name, _, limits = str(value).partition("=")
        soft, _, hard = limits.partition(":")
        try:
            if name not in ULIMITS:
                raise ValueError(f"unknown limit {name!r} (one of {', '.join(ULIMITS)})")
            soft, hard = (-1 if v in ("-1", "unlimited") else int(v)
                          for v in (soft, hard or soft))
            if soft < -1 or hard < -1:
                raise ValueError("a limit is a number >= 0, or -1 for unlimited")
            if hard != -1 and (soft == -1 or soft > hard):
                raise ValueError("the soft limit is above the hard one")
        except ValueError as err:
            msg = str(err) if "limit" in str(err) else "expected NAME=SOFT[:HARD]"
            raise InvalidSpec(f"invalid --ulimit {value!r}: {msg}") from err
        out[name] = {"name": name, "soft": soft, "hard": hard}
    return tuple(out.values())


def parse_signal(value, what="signal"):
    """A signal by name (KILL, SIGTERM, RTMIN+3, SIGRTMAX-2) or number -> its number."""
    import signal

    name = str(value).strip().upper()
    if name.isdigit():
        num = int(name)
        if 0 < num < signal.NSIG:
            return num
        raise InvalidSpec(f"invalid {what} {value!r}")
    name = name if name.startswith("SIG") else f"SIG{name}"
    for base, sign in (("SIGRTMIN+", 1), ("SIGRTMAX-", -1)):
        if name.startswith(base) and name[len(base):].isdigit():
            num = getattr(signal, base[:-1]) + sign * int(name[len(base):])
            if signal.SIGRTMIN <= num <= signal.SIGRTMAX:
                return num
            raise InvalidSpec(f"invalid {what} {value!r}: outside SIGRTMIN..SIGRTMAX")
    sig = getattr(signal.Signals, name, None) if name.isidentifier() else None
    if isinstance(sig, signal.Signals):
        return sig.value
    raise InvalidSpec(f"invalid {what} {value!r}")


def signal_name(num):
    """The name a spec keeps: SIGTERM, SIGRTMIN+3 (real-time ones relative to SIGRTMIN)."""
    import signal

    if signal.SIGRTMIN <= num <= signal.SIGRTMAX:
        return f"SIGRTMIN+{num - signal.SIGRTMIN}" if num != signal.SIGRTMIN else "SIGRTMIN"
    return signal.Signals(num).name


INIT = "/sbin/init"
# systemd's request to halt (systemd.special(7)): what `ctr stop` sends an init.
INIT_STOP_SIGNAL = "SIGRTMIN+3"
# What systemd mounts itself at boot (a failure is fatal for /run/lock) and cannot
# without CAP_SYS_ADMIN: ctr mounts them, as podman does for --systemd.
INIT_TMPFS = (
    {"path": "/run", "flags": ["nosuid", "nodev"], "data": "mode=755"},
    {"path": "/run/lock", "flags": ["nosuid", "nodev", "noexec"], "data": "mode=1777,size=5m"},
    {"path": "/tmp", "flags": ["nosuid", "nodev"], "data": "mode=1777"},
)


def check_init(image, command, kind, userns):
    """--init: the command is the image's /sbin/init unless one is given, which
    must then exist in the image. Returns the command."""
    if kind != "container":
        raise InvalidSpec("--init is for containers: a VM (--vm) boots ctr's own agent as "
                          "its init")
    if userns:
        raise InvalidSpec("--init with --userns=auto is not supported yet")
    if command:
        return tuple(command)
    root = image.get("rootfs")
    if root:
        from ctr.native import SYSCALLS
        from ctr.rootfs import resolve_in_root

        path = resolve_in_root(SYSCALLS, root.rstrip("/"), INIT)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise InvalidSpec(f"--init: the image {image['name']} has no {INIT} to boot "
                              "(give the init's path as the command)")
    return (INIT,)
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
LOG_DEFAULTS = {"max_size": 10 << 20, "max_files": 3}  # at most 30 MiB of log per instance
LOG_MIN_SIZE = 4 << 10


def check_restart(value, remove=False):
    """docker's --restart: no | on-failure[:N] | always | unless-stopped."""
    if value is None:
        return {"policy": "no", "max_retries": 0}
    policy, sep, count = str(value).partition(":")
    if policy not in RESTART_POLICIES or (sep and policy != "on-failure"):
        raise InvalidSpec(f"invalid --restart {value!r}: expected no, on-failure[:N], "
                          "always or unless-stopped")
    retries = _int_in(count, "--restart retry count", 1, 1 << 31) if sep else 0
    if remove and policy != "no":
        raise InvalidSpec("--restart and --rm conflict: an instance removed on exit "
                          "cannot be restarted")
    return {"policy": policy, "max_retries": retries}


def check_log(max_size=None, max_files=None):
    """Size-based rotation of a detached instance's log: --log-max-size (-1: no limit)
    and --log-max-files (the current file included)."""
    log = dict(LOG_DEFAULTS)
    if max_size is not None:
        size = -1 if str(max_size).strip() == "-1" else parse_size(max_size, "--log-max-size")
        if size != -1 and size < LOG_MIN_SIZE:
            raise InvalidSpec(f"invalid --log-max-size {max_size!r}: at least 4k")
        log["max_size"] = size
    if max_files is not None:
        log["max_files"] = _int_in(max_files, "--log-max-files", 1, 100)
    return log


VM_MIN_MEMORY = 64 << 20
VM_DEFAULT_MEMORY = 256 << 20


def check_vm(kind, resources, kernel, initrd, accel, tty, network):
    """A VM's own options: -m is its RAM (default 256m), --kernel/--initrd are
    files, --accel kvm|tcg. Refused for containers."""
    if kind != "vm":
        given = [f for f, v in (("--kernel", kernel), ("--initrd", initrd), ("--accel", accel))
                 if v]
        if given:
            raise InvalidSpec(f"{', '.join(given)}: only for VMs (--vm)")
        return {}
    if tty:
        raise InvalidSpec("-t is not supported for VMs yet")
    if network == "host" or network.startswith("container:"):
        raise InvalidSpec(f"--network {network} is not possible for a VM")
    if accel is not None and accel not in ("kvm", "tcg"):
        raise InvalidSpec(f"invalid --accel {accel!r}: expected kvm or tcg")
    out = {"memory": resources.get("memory", VM_DEFAULT_MEMORY)}
    if out["memory"] < VM_MIN_MEMORY:
        raise InvalidSpec(f"a VM needs at least {VM_MIN_MEMORY >> 20}m of memory")
    from ctr.cgroups import host_memory

    total = host_memory()
    if total and out["memory"] > total:
        raise InvalidSpec(f"-m {out['memory'] >> 20}m: more than the host has "
                          f"({total >> 20}m)")
    for opt, path in (("kernel", kernel), ("initrd", initrd)):
        if path:
            if not os.path.isfile(path):
                raise InvalidSpec(f"--{opt} {path}: no such file")
            out[opt] = os.path.abspath(path)
    if accel:
        out["accel"] = accel
    return out


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    name: str
    id: str
    image: str
    image_id: str
    command: tuple
    kind: str = "container"
    env: tuple = ()
    workdir: str = "/"
    user: str | None = None
    hostname: str = ""
    tty: bool = False
    remove: bool = False
    network: str = "bridge"
    ports: tuple = ()
    ip: str | None = None
    resources: dict = dataclasses.field(default_factory=dict)
    cgroup_parent: str | None = None
    vm: dict = dataclasses.field(default_factory=dict)
    caps: tuple = DEFAULT_CAPS
    privileged: bool = False
    read_only: bool = False
    tmpfs: tuple = ()
    volumes: tuple = ()
    userns: dict = dataclasses.field(default_factory=dict)
    seccomp: str | dict = "default"
    no_new_privs: bool = True
    ulimits: tuple = ()
    init: bool = False
    stop_signal: str = "SIGTERM"
    restart: dict = dataclasses.field(default_factory=lambda: check_restart(None))
    log: dict = dataclasses.field(default_factory=lambda: dict(LOG_DEFAULTS))
    sd_notify: str = "conmon"

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["command"] = list(self.command)
        d["env"] = list(self.env)
        d["ports"] = list(self.ports)
        d["caps"] = list(self.caps)
        d["tmpfs"] = list(self.tmpfs)
        d["volumes"] = list(self.volumes)
        d["ulimits"] = list(self.ulimits)
        return d

    @classmethod
    def from_dict(cls, d):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        d = dict(d)
        d["command"] = tuple(d["command"])
        d["env"] = tuple(d.get("env", ()))
        d["ports"] = tuple(d.get("ports", ()))
        for key in ("caps", "tmpfs", "volumes", "ulimits"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def build_spec(*, image, command, name=None, env=(), env_files=(), workdir=None,
               user=None, hostname=None, tty=False, remove=False, kind="container",
               cgroup_parent=None, network=None, publish=(), ip=None, vm=False, kernel=None,
               initrd=None, accel=None, cap_add=(), cap_drop=(), privileged=False,
               read_only=False, tmpfs=(), volumes=(), security_opt=(), ulimit=(),
               userns=None, restart=None, log_max_size=None, log_max_files=None,
               sd_notify=None, init=False, stop_signal=None, **resources):
    """Validate CLI-level inputs against an image record and return an InstanceSpec."""
    name = check_name(name) if name is not None else generate_name()
    kind = "vm" if vm else kind
    if kind not in KINDS:
        raise InvalidSpec(f"unknown instance kind {kind!r}")
    env_layers = [read_env_file(p) for p in env_files]
    user_env = merge_env(*env_layers, parse_env(env))
    if init:
        command = check_init(image, command, kind, userns not in (None, "", "host"))
    command = tuple(command) or tuple(image.get("cmd") or ())
    if not command:
        raise InvalidSpec("no command given and the image has no default command")
    if any("\0" in arg for arg in command):
        raise InvalidSpec("the command contains a NUL byte")
    network = check_network(network)
    ports = check_ports(publish)
    ip = check_ip(ip)
    if (ports or ip) and (network in ("none", "host") or network.startswith("container:")):
        raise InvalidSpec(f"-p and --ip need a bridge network, not --network {network}")
    resources = build_resources(**resources)
    vm_options = check_vm(kind, resources, kernel, initrd, accel, tty, network)
    caps = build_caps(cap_add, cap_drop, privileged)
    tmpfs = check_tmpfs(tmpfs, read_only)
    if init:
        given = {t["path"] for t in tmpfs}
        tmpfs += tuple(t for t in INIT_TMPFS if t["path"] not in given)
    stop_signal = signal_name(parse_signal(stop_signal, "--stop-signal")) if stop_signal \
        else (INIT_STOP_SIGNAL if init else "SIGTERM")
    volumes = check_volumes(volumes)
    seccomp, no_new_privs = check_security_opts(security_opt, privileged)
    if init and not any(str(o).startswith("no-new-privileges") for o in security_opt):
        no_new_privs = False  # a whole system has setuid programs (su, passwd): docker's default
    ulimits = check_ulimits(ulimit)
    userns = check_userns(userns, kind, privileged, network)
    restart = check_restart(restart, remove)
    log = check_log(log_max_size, log_max_files)
    from ctr.sdnotify import check_mode

    sd_notify = check_mode(sd_notify, kind)
    if kind == "vm" and (volumes or tmpfs or read_only or privileged or security_opt
                         or ulimits):
        raise InvalidSpec("-v, --tmpfs, --read-only, --privileged, --security-opt and "
                          "--ulimit are for containers, not VMs (yet)")
    instance_id = new_id()
    hostname = check_hostname(hostname) or instance_id[:12]
    base_env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if init:
        base_env.append("container=ctr")  # how systemd knows it runs in a container
        if not tty:
            # No terminal: /dev/console is /dev/null, where systemd's console getty
            # would fail until its start limit, leaving the system degraded.
            base_env.append("SYSTEMD_GETTY_AUTO=0")
    if tty:
        base_env.append("TERM=xterm")
    return InstanceSpec(
        name=name,
        id=instance_id,
        kind=kind,
        image=image["name"],
        image_id=image["id"],
        command=command,
        env=tuple(merge_env(image.get("env") or (), base_env, user_env)),
        workdir=check_workdir(workdir) or image.get("workdir") or "/",
        user=check_user(user),
        hostname=hostname,
        tty=bool(tty),
        remove=bool(remove),
        network=network,
        ports=tuple(ports),
        ip=ip,
        resources=resources,
        cgroup_parent=check_cgroup_parent(cgroup_parent),
        vm=vm_options,
        caps=caps,
        privileged=bool(privileged),
        read_only=bool(read_only),
        tmpfs=tmpfs,
        volumes=volumes,
        userns=userns,
        seccomp=seccomp,
        no_new_privs=no_new_privs,
        ulimits=ulimits,
        init=bool(init),
        stop_signal=stop_signal,
        restart=restart,
        log=log,
        sd_notify=sd_notify,
    )
