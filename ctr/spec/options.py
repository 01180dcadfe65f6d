"""docker's run flags beyond the basics (RunOptions): /etc/hosts and
/etc/resolv.conf lines, devices, /dev/shm's size, sysctls, the pid, ipc and
uts namespaces shared, supplementary groups, oom_score_adj, the cidfile.

`parse_options` turns the CLI's strings into a RunOptions (the syntax, with
the option's name and the user's text in each error); `check_options` is
validate's check of a whole spec (ranges, and the rules between these and the
rest: a sysctl needs the namespace it lives in, a VM takes only some).
"""

import os

from ctr import lazyre
from ctr.errors import InvalidSpec
from ctr.spec.model import Device, RunOptions
from ctr.spec.parse import HOSTNAME_RE, int_in, need_host, parse_int, parse_size

HOST_GATEWAY = "host-gateway"  # docker's --add-host value: the network's gateway
GROUP_RE = lazyre.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*")
DOMAIN_RE = lazyre.compile(r"[^\s\0]{1,253}")
ACCESS_RE = lazyre.compile(r"[rwm]{1,3}")
SYSCTL_RE = lazyre.compile(r"[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_/:-]+)+")
# The sysctls an IPC namespace holds (runc's list), beside fs.mqueue.*.
SYSCTL_IPC = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
              "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
IPC_MODES = ("private", "shareable", "host")
OWN_IPC = (None, "private", "shareable")
# What a VM cannot take: its guest has a kernel, /dev and namespaces of its own.
VM_REFUSED = (("devices", "--device"), ("shm_size", "--shm-size"), ("sysctls", "--sysctl"),
              ("pid", "--pid"), ("ipc", "--ipc"), ("uts", "--uts"),
              ("group_add", "--group-add"))


# -- parsing the CLI's strings ----------------------------------------------------------

def _address(text):
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_add_host(items):
    """--add-host NAME:IP (or NAME=IP; IP an IPv4 or IPv6 address, or
    host-gateway) -> ((name, ip), ...)."""
    out = []
    for item in items:
        cut = min((i for i in (item.find(":"), item.find("=")) if i >= 0), default=-1)
        name, ip = item[:cut], item[cut + 1:]
        if cut < 0 or not HOSTNAME_RE.fullmatch(name):
            raise InvalidSpec(f"invalid --add-host {item!r}: expected NAME:IP")
        if ip != HOST_GATEWAY:
            ip = _address(ip.strip("[]"))
            if ip is None:
                raise InvalidSpec(f"invalid --add-host {item!r}: {item[cut + 1:]!r} is not an "
                                  f"IP address (nor {HOST_GATEWAY})")
        out.append((name, ip))
    return tuple(out)


def parse_dns(items):
    out = []
    for item in items:
        ip = _address(item)
        if ip is None:
            raise InvalidSpec(f"invalid --dns {item!r}: expected an IP address")
        out.append(ip)
    return tuple(out)


def _words(items, what):
    for item in items:
        if not DOMAIN_RE.fullmatch(item):
            raise InvalidSpec(f"invalid {what} {item!r}: expected one word, without spaces")
    return tuple(items)


def parse_device(item, host=None):
    """--device HOST[:CONTAINER][:ACCESS] (ACCESS: r, w, m, or several) -> Device.
    The host's node is looked at now: its type, numbers, mode and owner."""
    parts = str(item).split(":")
    access = "rwm"
    if len(parts) in (2, 3) and ACCESS_RE.fullmatch(parts[-1]) and (
            len(parts) == 3 or not parts[-1].startswith("/")):
        access = parts.pop()
    if len(parts) > 2 or not parts[0]:
        raise InvalidSpec(f"invalid --device {item!r}: expected HOST[:CONTAINER][:rwm]")
    source = parts[0]
    target = parts[1] if len(parts) == 2 else source
    if not source.startswith("/") or not target.startswith("/") or "\0" in item:
        raise InvalidSpec(f"invalid --device {item!r}: both paths must be absolute")
    try:
        node = need_host(host, "--device").device(source)
    except OSError as err:
        raise InvalidSpec(f"invalid --device {item!r}: {source}: {err.strerror}") from None
    if node is None:
        raise InvalidSpec(f"invalid --device {item!r}: {source} is not a device node")
    target = os.path.normpath(target)
    if not target.startswith("/dev/"):
        raise InvalidSpec(f"invalid --device {item!r}: the container's path must be under "
                          "/dev (the instance's own tmpfs)")
    return Device(source=source, target=target, access="".join(
        c for c in "rwm" if c in access), **node)


def parse_sysctl(items):
    """--sysctl KEY=VALUE (KEY with dots, or slashes as under /proc/sys)."""
    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("/", ".")
        if not sep or not SYSCTL_RE.fullmatch(key) or "\0" in value or "\n" in value:
            raise InvalidSpec(f"invalid --sysctl {item!r}: expected KEY=VALUE, like "
                              "net.ipv4.ip_forward=1")
        out[key] = value
    return out


def _mode(value, what, modes):
    """--pid/--ipc/--uts: one of `modes` or container:NAME (when allowed)."""
    if value in (None, ""):
        return None
    if value in modes:
        return value
    if "container:" in modes and value.startswith("container:"):
        from ctr.spec.parse import check_name

        check_name(value.split(":", 1)[1], f"instance name in {what} container:NAME")
        return value
    raise InvalidSpec(f"invalid {what} {value!r}: expected {' or '.join(modes)}"
                      + ("NAME" if "container:" in modes else ""))


def parse_options(*, add_host=(), dns=(), dns_search=(), dns_option=(), device=(),
                  shm_size=None, sysctl=(), pid=None, ipc=None, uts=None, group_add=(),
                  oom_score_adj=None, cidfile=None, host=None):
    """The CLI's strings of these flags -> RunOptions (only those given)."""
    out = {}
    if add_host:
        out["extra_hosts"] = parse_add_host(add_host)
    if dns:
        out["dns"] = parse_dns(dns)
    if dns_search:
        out["dns_search"] = _words(dns_search, "--dns-search")
    if dns_option:
        out["dns_options"] = _words(dns_option, "--dns-option")
    if device:
        out["devices"] = tuple(parse_device(d, host) for d in device)
    if shm_size is not None:
        out["shm_size"] = parse_size(shm_size, "--shm-size")
    if sysctl:
        out["sysctls"] = parse_sysctl(sysctl)
    out["pid"] = _mode(pid, "--pid", ("host", "container:"))
    out["ipc"] = _mode(ipc, "--ipc", (*IPC_MODES, "container:"))
    out["uts"] = _mode(uts, "--uts", ("host",))
    if group_add:
        for g in group_add:
            if not GROUP_RE.fullmatch(str(g)):
                raise InvalidSpec(f"invalid --group-add {g!r}: expected a group name or number")
        out["group_add"] = tuple(str(g) for g in group_add)
    if oom_score_adj is not None:
        out["oom_score_adj"] = parse_int(oom_score_adj, "--oom-score-adj")
    if cidfile:
        out["cidfile"] = os.path.abspath(cidfile)
    return RunOptions(out)


# -- the checks of a spec ---------------------------------------------------------------

def _own(mode):
    return mode is None or not (mode == "host" or mode.startswith("container:"))


def _sysctl_problem(key, spec):
    """Why sysctl `key` cannot be the instance's own (runc's rules), or None."""
    opts = spec.options
    if key in SYSCTL_IPC or key.startswith("fs.mqueue."):
        if opts.ipc not in OWN_IPC:
            return f"it belongs to the IPC namespace, which --ipc {opts.ipc} does not " \
                   "give the instance of its own"
        return None
    if key.startswith("net."):
        if spec.network == "host" or spec.network.startswith("container:"):
            return f"it belongs to the network namespace, which --network {spec.network} " \
                   "does not give the instance of its own"
        return None
    if key == "kernel.domainname":
        return None if _own(opts.uts) else "--uts host shares the host's domain name"
    if key == "kernel.hostname":
        return "set the hostname with --hostname"
    return "it is not in a namespace of the instance's own: it would change the host's"


def _check_values(opts):
    for name, ip in opts.extra_hosts or ():
        if not isinstance(name, str) or not HOSTNAME_RE.fullmatch(name) or not (
                ip == HOST_GATEWAY or (isinstance(ip, str) and _address(ip))):
            raise InvalidSpec(f"invalid --add-host {name}:{ip}: expected NAME:IP")
    for ip in opts.dns or ():
        if not isinstance(ip, str) or _address(ip) is None:
            raise InvalidSpec(f"invalid --dns {ip!r}: expected an IP address")
    _words(opts.dns_search or (), "--dns-search")
    _words(opts.dns_options or (), "--dns-option")
    for d in opts.devices or ():
        if d.get("type") not in ("c", "b", "p") or not str(
                d.get("target", "")).startswith("/dev/") or not ACCESS_RE.fullmatch(
                str(d.get("access"))):
            raise InvalidSpec(f"invalid --device {dict(d)!r}")
        int_in(d["major"], "--device major number", 0, (1 << 32) - 1)
        int_in(d["minor"], "--device minor number", 0, (1 << 32) - 1)
    for r in opts.device_rules or ():
        if not isinstance(r.get("allow"), bool) or r.get("type", "a") not in ("a", "c", "b") \
                or not ACCESS_RE.fullmatch(str(r.get("access", "rwm"))) or any(
                    r.get(k) is not None and not isinstance(r[k], int) for k in ("major", "minor")):
            raise InvalidSpec(f"invalid device rule {dict(r)!r}")
    if opts.shm_size is not None:
        int_in(opts.shm_size, "--shm-size", 1, 1 << 62)
    for key, value in (opts.sysctls or {}).items():
        if not SYSCTL_RE.fullmatch(str(key)) or not isinstance(value, str):
            raise InvalidSpec(f"invalid --sysctl {key}={value}: expected KEY=VALUE")
    _mode(opts.pid, "--pid", ("host", "container:"))
    _mode(opts.ipc, "--ipc", (*IPC_MODES, "container:"))
    _mode(opts.uts, "--uts", ("host",))
    for g in opts.group_add or ():
        if not GROUP_RE.fullmatch(str(g)):
            raise InvalidSpec(f"invalid --group-add {g!r}: expected a group name or number")
    if opts.oom_score_adj is not None:
        int_in(opts.oom_score_adj, "--oom-score-adj", -1000, 1000)
    if opts.cidfile is not None and not str(opts.cidfile).startswith("/"):
        raise InvalidSpec(f"invalid --cidfile {opts.cidfile!r}: expected an absolute path")


def check_options(spec, _host=None):
    """RunOptions in range, and agreeing with the rest of the spec."""
    opts = spec.options
    if not opts:
        return
    _check_values(opts)
    if spec.kind == "vm":
        given = [flag for key, flag in VM_REFUSED if opts.get(key) is not None]
        if given:
            raise InvalidSpec(f"{', '.join(given)}: for containers only (a VM has its own "
                              "kernel, /dev and namespaces)")
    if spec.network.startswith("container:") and (opts.extra_hosts or opts.dns or
                                                  opts.dns_search or opts.dns_options):
        raise InvalidSpec(f"--add-host and --dns* cannot be used with --network "
                          f"{spec.network}: the /etc files are that instance's")
    for key in opts.sysctls or {}:
        problem = _sysctl_problem(key, spec)
        if problem:
            raise InvalidSpec(f"--sysctl {key}: refused: {problem}")
    if opts.shm_size is not None and opts.ipc not in OWN_IPC:
        raise InvalidSpec(f"--shm-size needs an IPC namespace of the instance's own, not "
                          f"--ipc {opts.ipc} (its /dev/shm is the one shared)")
    if opts.uts == "host" and spec.hostname:
        raise InvalidSpec("--hostname and --uts host conflict: the host's hostname is used")
    if spec.init and not _own(opts.pid):
        raise InvalidSpec(f"--init needs a pid namespace of its own (PID 1), not --pid "
                          f"{opts.pid}")
    if spec.userns and not all(_own(m) for m in (opts.pid, opts.ipc, opts.uts)):
        raise InvalidSpec("--userns=auto needs pid, ipc and uts namespaces of its own")
