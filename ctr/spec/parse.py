"""User strings (the CLI's options, docker's spellings) into typed values.

Each parser checks the syntax of what it reads and says which option was
wrong, quoting the user's text; ranges and the rules between fields are
ctr.spec.validate's, which sees typed values whatever front end made them
(where the typed value would lose the user's spelling, a size's unit or a
port's, the parser checks the range first too). What must be looked up on the host
(a block device's number, a seccomp profile file) is asked of the `host`
passed in (see ctr.spec.model's Host and ctr.host).
"""

import os
import re

from ctr import lazyre
from ctr.errors import InvalidSpec
from ctr.spec.model import (
    LOG_DEFAULTS,
    LOG_MIN_SIZE,
    MAX_RETRIES,
    MIN_MEMORY,
    RESTART_POLICIES,
    SECCOMP_DEFAULT,
    SECCOMP_UNCONFINED,
    LogLimits,
    Port,
    Restart,
    Tmpfs,
    Ulimit,
    Userns,
    VmOptions,
    add_tmpfs,
)

NAME_RE = lazyre.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
HOSTNAME_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
HOSTNAME_RE = lazyre.compile(rf"{HOSTNAME_LABEL}(\.{HOSTNAME_LABEL})*")
ENV_KEY_RE = lazyre.compile(r"[^=\0]+")
USER_RE = lazyre.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*(:[a-zA-Z0-9_][a-zA-Z0-9_.-]*)?")
SIZE_RE = lazyre.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
PORT_RE = lazyre.compile(r"(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?P<host>\d{1,5}):(?P<port>\d{1,5})"
                     r"(?:/(?P<proto>tcp|udp))?")
TMPFS_FLAGS = ("ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec")
TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes")
# What --read-only adds, unless given: somewhere to write.
READ_ONLY_TMPFS = tuple(Tmpfs(path=p, flags=("nosuid", "nodev"), data="mode=1777")
                        for p in ("/tmp", "/run"))
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def need_host(host, what):
    if host is None:
        raise TypeError(f"{what} needs facts of the host: pass host= (ctr.host.HostFacts)")
    return host


# -- names, paths, users ----------------------------------------------------------------

def check_name(name, what="name"):
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidSpec(
            f"invalid {what} {name!r}: use 1-63 characters from [a-zA-Z0-9_.-], "
            "starting with a letter or digit"
        )
    return name


def check_workdir(path):
    if path is None:
        return None
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise InvalidSpec(f"invalid working directory {path!r}: must be an absolute path")
    return os.path.normpath(path)


def check_user(user):
    if user is None or user == "":
        return None
    if not isinstance(user, str) or not USER_RE.fullmatch(user):
        raise InvalidSpec(f"invalid user {user!r}: expected NAME, UID, NAME:GROUP or UID:GID")
    return user


def check_hostname(hostname):
    if hostname is None:
        return None
    if not isinstance(hostname, str) or len(hostname) > 64 or not HOSTNAME_RE.fullmatch(hostname):
        raise InvalidSpec(f"invalid hostname {hostname!r}")
    return hostname


def check_cgroup_parent(value):
    """None (ctr's default, /ctr), "self" (beneath ctr's own cgroup) or a path
    below each hierarchy's root."""
    if value is None or value == "self":
        return value
    parts = [p for p in str(value).split("/") if p]
    if not parts or any(p in (".", "..") or not NAME_RE.fullmatch(p) for p in parts):
        raise InvalidSpec(f"invalid --cgroup-parent {value!r}: expected a path like "
                          "/mygroup/sub (letters, digits, _.-) or 'self'")
    return "/" + "/".join(parts)


# -- environment --------------------------------------------------------------------------

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


def parse_labels(items, what="--label"):
    """--label K=V or K (docker: an empty value) -> {K: V}; the last one wins."""
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        if not key or "\0" in item:
            raise InvalidSpec(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def read_label_file(path):
    """docker's --label-file: KEY=VALUE lines; blank lines and # comments are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except OSError as err:
        raise InvalidSpec(f"cannot read label file {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise InvalidSpec(f"cannot read label file {path}: not UTF-8 text") from err
    return parse_labels([line for line in lines if line and not line.startswith("#")],
                        f"label in {path}:")


def merge_env(*layers):
    """Later layers win; order of first appearance is kept."""
    merged = {}
    for layer in layers:
        for item in layer:
            key, _, value = item.partition("=")
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


# -- numbers --------------------------------------------------------------------------------

def parse_size(value, what):
    """docker's sizes: a number with an optional unit b, k, m, g (t), binary multiples."""
    m = SIZE_RE.fullmatch(str(value).strip())
    if not m:
        raise InvalidSpec(f"invalid {what} {value!r}: expected a size like 64m, 1g or 512k")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).lower()])


def size_text(n):
    """A size as a user would write it: 6m, 512k, 100 (the largest exact unit)."""
    for unit in "tgmk":
        if n and n % SIZE_UNITS[unit] == 0:
            return f"{n // SIZE_UNITS[unit]}{unit}"
    return str(n)


def parse_int(value, what):
    try:
        return int(str(value).strip())
    except ValueError:
        raise InvalidSpec(f"invalid {what} {value!r}: expected an integer") from None


def int_in(n, what, low, high):
    """n, an int between low and high (a typed value: validate's check too)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise InvalidSpec(f"invalid {what} {n!r}: expected an integer")
    if not low <= n <= high:
        raise InvalidSpec(f"invalid {what} {n}: must be between {low} and {high}")
    return n


def cpu_list(text):
    """'0-2,5' -> [0, 1, 2, 5]; ValueError when malformed."""
    cpus = set()
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        lo, hi = int(lo), int(hi) if sep else int(lo)
        if lo < 0 or hi < lo:
            raise ValueError(part)
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


# -- resources ------------------------------------------------------------------------------

def parse_cpuset(value):
    """--cpuset-cpus 0-2,5 -> "0,1,2,5" (whether they are online is validate's)."""
    try:
        cpus = cpu_list(str(value).strip())
    except ValueError:
        raise InvalidSpec(f"invalid cpuset {value!r}: expected a list like 0-2,5") from None
    return ",".join(map(str, cpus))


def parse_device_rate(item, what, host=None):
    """--device-read-bps /dev/sda:10m -> ("MAJOR:MINOR", bytes); the path must
    be a block device on the host."""
    path, sep, rate = item.rpartition(":")
    if not sep or not path:
        raise InvalidSpec(f"invalid {what} {item!r}: expected DEVICE:RATE, like /dev/sda:10m")
    try:
        devno = need_host(host, what).block_device(path)
    except OSError as err:
        raise InvalidSpec(f"invalid {what} {item!r}: {path}: {err.strerror}") from None
    if devno is None:
        raise InvalidSpec(f"invalid {what} {item!r}: {path} is not a block device")
    return devno, parse_size(rate, what)


def parse_resources(*, memory=None, memory_swap=None, cpus=None, cpu_shares=None,
                    cpu_weight=None, cpuset_cpus=None, pids_limit=None, blkio_weight=None,
                    device_read_bps=(), device_write_bps=(), memory_reservation=None,
                    cpu_period=None, cpu_quota=None, host=None):
    """The resource options given (strings) -> {key: typed value}, only those given.
    Device rates come as {devno: rate}."""
    res = {}
    if memory is not None:
        res["memory"] = parse_size(memory, "memory limit")
        if res["memory"] < MIN_MEMORY:
            raise InvalidSpec(f"invalid memory limit {memory!r}: the minimum is 6m")
    if memory_swap is not None:
        res["memory_swap"] = (-1 if str(memory_swap).strip() == "-1"
                              else parse_size(memory_swap, "memory+swap limit"))
    if memory_reservation is not None:
        res["memory_reservation"] = parse_size(memory_reservation, "--memory-reservation")
    if cpu_period is not None:
        res["cpu_period"] = parse_int(cpu_period, "--cpu-period")
    if cpu_quota is not None:
        res["cpu_quota"] = parse_int(cpu_quota, "--cpu-quota")
    if cpus is not None:
        try:
            res["cpus"] = float(cpus)
        except ValueError:
            raise InvalidSpec(f"invalid --cpus {cpus!r}: expected a number like 0.5") from None
    if cpu_shares is not None:
        res["cpu_shares"] = parse_int(cpu_shares, "--cpu-shares")
    if cpu_weight is not None:
        res["cpu_weight"] = parse_int(cpu_weight, "--cpu-weight")
    if cpuset_cpus is not None:
        res["cpuset_cpus"] = parse_cpuset(cpuset_cpus)
    if pids_limit is not None:
        n = parse_int(pids_limit, "--pids-limit")
        res["pids_limit"] = -1 if n == 0 else n  # docker: 0 and -1 mean unlimited
    if blkio_weight is not None:
        res["blkio_weight"] = parse_int(blkio_weight, "--blkio-weight")
    for key, items in (("device_read_bps", device_read_bps),
                       ("device_write_bps", device_write_bps)):
        if items:
            what = "--" + key.replace("_", "-")
            res[key] = dict(parse_device_rate(i, what, host) for i in items)
    return res


# -- network --------------------------------------------------------------------------------

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
    """-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] -> Ports, docker's syntax."""
    if not items:
        return ()
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
        entry = Port(host_ip=host_ip, host_port=host, port=port, proto=m.group("proto") or "tcp")
        if any(e["host_port"] == host and e["proto"] == entry["proto"] for e in out):
            raise InvalidSpec(f"invalid port {item!r}: host port {host}/{entry['proto']} "
                              "is published twice")
        out.append(entry)
    return tuple(out)


def check_ip(value):
    if value is None:
        return None
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise InvalidSpec(f"invalid --ip {value!r}: expected an IPv4 address") from None


# -- mounts (-v and --mount: ctr.spec.mounts) ----------------------------------------------

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
            elif key in TMPFS_DATA:
                data.append(opt)
            else:
                raise InvalidSpec(f"invalid --tmpfs {value!r}: unknown option {opt!r}")
        out.append(Tmpfs(path=os.path.normpath(path), flags=flags, data=",".join(data)))
    return add_tmpfs(tuple(out), READ_ONLY_TMPFS) if read_only else tuple(out)


# -- security ---------------------------------------------------------------------------------

def check_security_opts(values, privileged=False, host=None):
    """--security-opt seccomp=unconfined|default|FILE.json, no-new-privileges[=BOOL]
    (docker's spellings, also with ':'). Returns (seccomp, no_new_privs): seccomp
    is "default", "unconfined" or the profile itself (kept in the spec, so a
    later change of the file does not change the instance)."""
    profile, nnp = SECCOMP_DEFAULT, True
    for value in values:
        value = str(value)
        cut = min((i for i in (value.find("="), value.find(":")) if i >= 0), default=len(value))
        key, sep, arg = value[:cut], value[cut:cut + 1], value[cut + 1:]
        if key == "seccomp" and arg in (SECCOMP_UNCONFINED, SECCOMP_DEFAULT):
            profile = arg
        elif key == "seccomp" and arg:
            try:
                profile = need_host(host, "--security-opt seccomp=FILE").seccomp_profile(arg)
            except ValueError as err:
                raise InvalidSpec(f"--security-opt {value}: {err}") from err
        elif key == "no-new-privileges" and arg.lower() in ("", "true", "false"):
            nnp = arg.lower() != "false" or not sep
        else:
            raise InvalidSpec(f"invalid --security-opt {value!r}: expected "
                              "seccomp=unconfined|FILE.json or no-new-privileges[=true|false]")
    if privileged:
        profile = SECCOMP_UNCONFINED
    return profile, nnp


def check_cgroupns(value):
    """--cgroupns private (the default) or host, docker's flag."""
    if value in (None, ""):
        return "private"
    if value not in ("private", "host"):
        raise InvalidSpec(f"invalid --cgroupns {value!r}: expected private or host")
    return value


BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def check_bool(value, option, default=True):
    """A docker-style boolean option's value (--lxcfs=false): None is the default."""
    if value is None:
        return default
    try:
        return BOOLEANS[str(value).lower()]
    except KeyError:
        raise InvalidSpec(f"invalid {option} {value!r}: expected true or false") from None


def check_userns(value):
    """--userns=host (the default: container root is host root, as in docker)
    or auto (ids of its own; the block is allocated when the record is made)."""
    if value in (None, "", "host"):
        return Userns()
    if value != "auto":
        raise InvalidSpec(f"invalid --userns {value!r}: expected auto or host")
    return Userns(mode="auto")


def ulimit_problem(soft, hard):
    """What is wrong with a soft and hard limit (-1: unlimited), or None."""
    if not all(isinstance(n, int) and n >= -1 for n in (soft, hard)):
        return "a limit is a number >= 0, or -1 for unlimited"
    if hard != -1 and (soft == -1 or soft > hard):
        return "the soft limit is above the hard one"
    return None


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
            problem = ulimit_problem(soft, hard)
            if problem:
                raise ValueError(problem)
        except ValueError as err:
            msg = str(err) if "limit" in str(err) else "expected NAME=SOFT[:HARD]"
            raise InvalidSpec(f"invalid --ulimit {value!r}: {msg}") from err
        out[name] = Ulimit(name=name, soft=soft, hard=hard)
    return tuple(out.values())


# -- signals, restarts, logs, notify, VMs ------------------------------------------------------

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


def check_restart(value):
    """docker's --restart: no | on-failure[:N] | always | unless-stopped."""
    if value is None:
        return Restart()
    policy, sep, count = str(value).partition(":")
    if policy not in RESTART_POLICIES or (sep and policy != "on-failure"):
        raise InvalidSpec(f"invalid --restart {value!r}: expected no, on-failure[:N], "
                          "always or unless-stopped")
    retries = int_in(parse_int(count, "--restart retry count"), "--restart retry count", 1,
                     MAX_RETRIES) if sep else 0
    return Restart(policy=policy, max_retries=retries)


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
        log["max_files"] = parse_int(max_files, "--log-max-files")
    return LogLimits(log)


def check_vm_files(kernel=None, initrd=None, accel=None, kind="vm", kernel_args=(),
                   disks=()):
    """--kernel, --initrd and each --disk: files on the host (kept as absolute
    paths); --accel; --kernel-arg words. For a container they are kept as given,
    for validate to refuse."""
    out = {"kernel": kernel or None, "initrd": initrd or None, "accel": accel or None,
           "kernel_args": tuple(kernel_args) or None, "disks": tuple(disks) or None}
    for opt, path in (("kernel", kernel), ("initrd", initrd)):
        if path and kind == "vm":
            if not os.path.isfile(path):
                raise InvalidSpec(f"--{opt} {path}: no such file")
            out[opt] = os.path.abspath(path)
    if disks and kind == "vm":
        for path in disks:
            if not os.path.isfile(path):
                raise InvalidSpec(f"--disk {path}: no such file")
        out["disks"] = tuple(os.path.abspath(p) for p in disks)
    return VmOptions(out)
