"""Checks of a whole spec: each field's range and the rules between fields.

As runc's libcontainer/configs/validate: a list of checks, each given the spec
(typed values, whatever front end made them) and the host's facts, each
raising InvalidSpec with the option a user of the CLI would recognise.
`validate(spec, host)` runs them all; ctr.spec.new_spec calls it.
"""

from collections.abc import Mapping

from ctr import lazyre
from ctr.errors import InvalidSpec
from ctr.spec.caps import ALL_CAPS
from ctr.spec.model import (
    CGROUPNS_MODES,
    DEFAULT_SD_NOTIFY,
    KINDS,
    LOG_MIN_SIZE,
    MAX_RETRIES,
    MIN_MEMORY,
    RESTART_POLICIES,
    SD_NOTIFY_MODES,
    SECCOMP_DEFAULT,
    SECCOMP_UNCONFINED,
    VM_MIN_MEMORY,
)
from ctr.spec.mounts import check_volume_name
from ctr.spec.options import check_options
from ctr.spec.parse import (
    ENV_KEY_RE,
    TMPFS_DATA,
    TMPFS_FLAGS,
    ULIMITS,
    check_cgroup_parent,
    check_hostname,
    check_ip,
    check_name,
    check_network,
    check_user,
    check_workdir,
    cpu_list,
    int_in,
    need_host,
    parse_signal,
    size_text,
    ulimit_problem,
)

DEVNO_RE = lazyre.compile(r"\d+:\d+")


def _own_netns(network):
    return network != "host" and not network.startswith("container:")


# -- resources ---------------------------------------------------------------------------

def _memory(res, _host, _ncpus):
    if isinstance(res["memory"], bool) or not isinstance(res["memory"], int):
        raise InvalidSpec(f"invalid memory limit {res['memory']!r}: expected a size in bytes")
    if res["memory"] < MIN_MEMORY:
        raise InvalidSpec(f"invalid memory limit {size_text(res['memory'])}: the minimum is 6m")


def _cpus(res, host, ncpus):
    n = res["cpus"]
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise InvalidSpec(f"invalid --cpus {n!r}: expected a number like 0.5")
    ncpus = len(need_host(host, "--cpus").cpus_online) if ncpus is None else ncpus
    if not 0.01 <= n <= ncpus:
        raise InvalidSpec(f"invalid --cpus {n:g}: must be between 0.01 and {ncpus} "
                          "(the CPUs this host has)")


def _cpuset(res, host, _ncpus):
    value = res["cpuset_cpus"]
    try:
        cpus = cpu_list(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidSpec(f"invalid cpuset {value!r}: expected a list like 0-2,5") from None
    online = need_host(host, "--cpuset-cpus").cpus_online
    missing = sorted(set(cpus) - set(online))
    if missing:
        raise InvalidSpec(f"invalid cpuset {value!r}: CPU {missing[0]} is not online "
                          f"(online: {','.join(map(str, online))})")


def _pids(res, _host, _ncpus):
    if int_in(res["pids_limit"], "--pids-limit", -1, 2**31 - 1) == 0:
        raise InvalidSpec("invalid --pids-limit 0: at least 1, or -1 for unlimited")


def _rates(key):
    what = "--" + key.replace("_", "-")

    def check(res, _host, _ncpus):
        for entry in res[key]:
            if len(entry) != 2 or not DEVNO_RE.fullmatch(str(entry[0])):
                raise InvalidSpec(f"invalid {what} {entry!r}: expected (MAJOR:MINOR, RATE)")
            int_in(entry[1], what, 0, 2**63 - 1)
    return check


def _weights(res, _host, _ncpus):
    for entry in res["blkio_weight_device"]:
        if len(entry) != 2 or not DEVNO_RE.fullmatch(str(entry[0])):
            raise InvalidSpec(f"invalid blkio weight {entry!r}: expected (MAJOR:MINOR, WEIGHT)")
        int_in(entry[1], "a device's blkio weight", 10, 1000)


HUGEPAGE_RE = lazyre.compile(r"\d+[KMG]B")
UNIFIED_KEY_RE = lazyre.compile(r"[a-z0-9_]+\.[a-z0-9_.]+")


def _hugepages(res, _host, _ncpus):
    for entry in res["hugepage_limits"]:
        if len(entry) != 2 or not HUGEPAGE_RE.fullmatch(str(entry[0])):
            raise InvalidSpec(f"invalid hugepage limit {entry!r}: expected (SIZE like 2MB, "
                              "BYTES)")
        int_in(entry[1], "a hugepage limit", 0, 2**63 - 1)


def _unified(res, _host, _ncpus):
    for key, value in res["unified"].items():
        if not UNIFIED_KEY_RE.fullmatch(str(key)) or key.startswith("cgroup."):
            raise InvalidSpec(f"invalid cgroup2 file {key!r}: expected a controller's file "
                              "(memory.high)")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidSpec(f"invalid value of {key}: expected a string")


def _in(key, what, low, high):
    return lambda res, _host, _ncpus: int_in(res[key], what, low, high)


def _reservation(res, _host, _ncpus):
    n = int_in(res["memory_reservation"], "--memory-reservation", 0, 2**63 - 1)
    if n < MIN_MEMORY:
        raise InvalidSpec(f"invalid --memory-reservation {size_text(n)}: the minimum is 6m")


RESOURCE_CHECKS = {
    "memory": _memory,
    "memory_reservation": _reservation,
    "cpu_period": _in("cpu_period", "--cpu-period", 1000, 1_000_000),
    "cpu_quota": lambda res, _h, _n: res["cpu_quota"] == -1 or int_in(
        res["cpu_quota"], "--cpu-quota", 1000, 2**63 - 1),
    "cpus": _cpus,
    "cpu_shares": _in("cpu_shares", "--cpu-shares", 2, 262144),
    "cpu_weight": _in("cpu_weight", "--cpu-weight", 1, 10000),
    "cpuset_cpus": _cpuset,
    "pids_limit": _pids,
    "blkio_weight": _in("blkio_weight", "--blkio-weight", 10, 1000),
    "device_read_bps": _rates("device_read_bps"),
    "device_write_bps": _rates("device_write_bps"),
    "device_read_iops": _rates("device_read_iops"),
    "device_write_iops": _rates("device_write_iops"),
    "blkio_weight_device": _weights,
    "memory_swappiness": _in("memory_swappiness", "memory swappiness", 0, 100),
    "hugepage_limits": _hugepages,
    "unified": _unified,
}


def check_resources(res, host=None, keys=None, ncpus=None):
    """Limits: each of `keys` (default: all there are) in its range, and the rules
    between them. `ncpus` overrides the host's count of CPUs."""
    for key in res if keys is None else keys:
        if key in res and key in RESOURCE_CHECKS:
            RESOURCE_CHECKS[key](res, host, ncpus)
    if "memory_swap" in res:
        if "memory" not in res:
            raise InvalidSpec("--memory-swap needs --memory (it is memory plus swap)")
        if res["memory_swap"] != -1 and res["memory_swap"] < res["memory"]:
            raise InvalidSpec("--memory-swap must be at least --memory (it is memory plus "
                              "swap; -1 for unlimited swap)")
    if "cpu_shares" in res and "cpu_weight" in res:
        raise InvalidSpec("give --cpu-shares or --cpu-weight, not both")
    if "cpus" in res and ("cpu_period" in res or "cpu_quota" in res):
        raise InvalidSpec("give --cpus or --cpu-period/--cpu-quota, not both (--cpus N is "
                          "a quota of N periods)")
    if "memory" in res and res.get("memory_reservation", 0) > res["memory"]:
        raise InvalidSpec("--memory-reservation must be at most --memory (it is a soft "
                          "limit below the hard one)")


# -- the checks of a spec, in order ----------------------------------------------------------

def _identity(spec, _host):
    check_name(spec.name)
    if spec.kind not in KINDS:
        raise InvalidSpec(f"unknown instance kind {spec.kind!r}")
    for what, value in (("id", spec.id), ("image", spec.image), ("image id", spec.image_id)):
        if not isinstance(value, str) or not value:
            raise InvalidSpec(f"invalid {what} {value!r}: expected a non-empty string")


def _process(spec, _host):
    if not spec.command:
        raise InvalidSpec("no command given and the image has no default command")
    if not all(isinstance(arg, str) for arg in spec.command):
        raise InvalidSpec(f"invalid command {spec.command!r}: expected strings")
    if any("\0" in arg for arg in spec.command):
        raise InvalidSpec("the command contains a NUL byte")
    check_env(spec.env)
    check_workdir(spec.workdir)
    check_user(spec.user)
    check_hostname(spec.hostname or None)
    parse_signal(spec.stop_signal, "--stop-signal")


def check_env(items):
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not ENV_KEY_RE.fullmatch(key) or "\0" in value:
            raise InvalidSpec(f"invalid environment variable {item!r}: expected KEY=VALUE")


def _init(spec, _host):
    if not spec.init:
        return
    if spec.kind != "container":
        raise InvalidSpec("--init is for containers: a VM (--vm) boots ctr's own agent as "
                          "its init")
    if spec.userns:
        raise InvalidSpec("--init with --userns=auto is not supported yet")


def _cgroupns(spec, _host):
    if spec.cgroupns not in CGROUPNS_MODES:
        raise InvalidSpec(f"invalid --cgroupns {spec.cgroupns!r}: expected private or host")
    if not isinstance(spec.lxcfs, bool):
        raise InvalidSpec(f"invalid --lxcfs {spec.lxcfs!r}: expected true or false")
    if spec.cgroupns == "private":
        return
    if spec.kind != "container":
        raise InvalidSpec("--cgroupns is for containers (a VM has its own kernel)")
    if spec.init:
        # systemd needs a cgroup view rooted at its own cgroup (see ctr.rootfs)
        raise InvalidSpec("--init needs a cgroup namespace of its own: not --cgroupns host")
    if spec.userns:
        raise InvalidSpec("--cgroupns host with --userns=auto is not supported")


def _port_text(p):
    ip = "" if p.get("host_ip") == "0.0.0.0" else f"{p.get('host_ip')}:"
    return f"{ip}{p.get('host_port')}:{p.get('port')}/{p.get('proto')}"


def _ports(ports):
    if not ports:
        return
    import ipaddress

    seen = set()
    for p in ports:
        text = _port_text(p)
        try:
            ipaddress.IPv4Address(p["host_ip"])
        except ValueError:
            raise InvalidSpec(f"invalid port {text!r}: {p['host_ip']} is not an IPv4 "
                              "address") from None
        if not all(isinstance(n, int) and 0 < n < 65536 for n in (p["host_port"], p["port"])):
            raise InvalidSpec(f"invalid port {text!r}: ports are 1-65535")
        if p["proto"] not in ("tcp", "udp"):
            raise InvalidSpec(f"invalid port {text!r}: the protocol is tcp or udp")
        if (p["host_port"], p["proto"]) in seen:
            raise InvalidSpec(f"invalid port {text!r}: host port {p['host_port']}/{p['proto']} "
                              "is published twice")
        seen.add((p["host_port"], p["proto"]))


def _network(spec, _host):
    check_network(spec.network)
    _ports(spec.ports)
    check_ip(spec.ip)
    for p in spec.publish_all:
        if p["host_port"] != 0 or not (isinstance(p["port"], int) and 0 < p["port"] < 65536) \
                or p["proto"] not in ("tcp", "udp"):
            raise InvalidSpec(f"invalid -P port {_port_text(p)!r}: expected host port 0 "
                              "(chosen at start), a port 1-65535, tcp or udp")
    if (spec.ports or spec.ip or spec.publish_all) and (spec.network in ("none", "host")
                                    or spec.network.startswith("container:")):
        raise InvalidSpec(f"-p, -P and --ip need a bridge network, not --network "
                          f"{spec.network}")


def _resources(spec, host):
    check_resources(spec.resources, host)
    check_cgroup_parent(spec.cgroup_parent)


# What --kernel-arg words may add to the guest's command line (ctr's own
# parameters take ~200 of the kernel's 2048 bytes).
KERNEL_ARGS_MAX = 1024


def _vm(spec, host):
    vm = spec.vm
    if spec.kind != "vm":
        given = [opt for opt, key in (("--kernel", "kernel"), ("--initrd", "initrd"),
                                      ("--accel", "accel"), ("--kernel-arg", "kernel_args"),
                                      ("--disk", "disks"), ("a VM's memory", "memory"))
                 if vm.get(key)]
        if given:
            raise InvalidSpec(f"{', '.join(given)}: only for VMs (--vm)")
        return
    if spec.tty:
        raise InvalidSpec("-t is not supported for VMs yet")
    if not _own_netns(spec.network):
        raise InvalidSpec(f"--network {spec.network} is not possible for a VM")
    if vm.get("accel") not in (None, "kvm", "tcg"):
        raise InvalidSpec(f"invalid --accel {vm['accel']!r}: expected kvm or tcg")
    memory = vm.get("memory")
    if not isinstance(memory, int) or memory < VM_MIN_MEMORY:
        raise InvalidSpec(f"a VM needs at least {VM_MIN_MEMORY >> 20}m of memory")
    total = need_host(host, "a VM's memory").memory
    if total and memory > total:
        raise InvalidSpec(f"-m {memory >> 20}m: more than the host has ({total >> 20}m)")
    for opt in ("kernel", "initrd"):
        if vm.get(opt) and not str(vm[opt]).startswith("/"):
            raise InvalidSpec(f"--{opt} {vm[opt]}: expected an absolute path")
    if "memory_reservation" in spec.resources:
        raise InvalidSpec("--memory-reservation is for containers: a VM's memory is its "
                          "guest's RAM (-m)")
    for path in vm.get("disks") or ():
        if not str(path).startswith("/") or "," in str(path):
            raise InvalidSpec(f"--disk {path}: expected an absolute path without a comma")
    for word in vm.get("kernel_args") or ():
        if not word or any(c.isspace() for c in word) or '"' in word:
            raise InvalidSpec(f"invalid --kernel-arg {word!r}: one word, no quotes")
    if len(" ".join(vm.get("kernel_args") or ())) > KERNEL_ARGS_MAX:
        raise InvalidSpec(f"--kernel-arg: at most {KERNEL_ARGS_MAX} characters in all "
                          "(the kernel's command line is short)")
    if (spec.volumes or spec.tmpfs or spec.read_only or spec.privileged or spec.ulimits
            or spec.seccomp != SECCOMP_DEFAULT or not spec.no_new_privs):
        raise InvalidSpec("-v, --mount, --tmpfs, --read-only, --privileged, --security-opt "
                          "and --ulimit are for containers, not VMs (yet)")


def _security(spec, _host):
    unknown = [c for c in spec.caps if c not in ALL_CAPS]
    if unknown:
        raise InvalidSpec(f"invalid capability {unknown[0]!r}: unknown capability "
                          f"{unknown[0]}")
    if not (spec.seccomp in (SECCOMP_DEFAULT, SECCOMP_UNCONFINED)
            or isinstance(spec.seccomp, Mapping)):
        raise InvalidSpec(f"invalid seccomp {spec.seccomp!r}: expected default, unconfined "
                          "or a profile")


def _mounts(spec, _host):
    for t in spec.tmpfs:
        path = t["path"]
        if not path.startswith("/") or "\0" in path or path.rstrip("/") == "":
            raise InvalidSpec(f"invalid --tmpfs {path!r}: expected an absolute PATH[:OPTIONS]")
        for opt in [*t["flags"], *filter(None, t["data"].split(","))]:
            if opt not in TMPFS_FLAGS and opt.split("=", 1)[0] not in TMPFS_DATA:
                raise InvalidSpec(f"invalid --tmpfs {path!r}: unknown option {opt!r}")
    for v in spec.volumes:
        source = v.get("source")
        text = f"{source}:{v['target']}" if source else v["target"]
        if v.get("name") is not None:
            check_volume_name(v["name"], "invalid volume")
        if source is None and not v.get("anonymous") and not v.get("name"):
            raise InvalidSpec(f"invalid -v {text!r}: expected SRC:DST[:ro]")
        if source is not None and not source.startswith("/") or not v["target"].startswith("/"):
            raise InvalidSpec(f"invalid -v {text!r}: both paths must be absolute")
        if v["target"].rstrip("/") == "":
            raise InvalidSpec(f"invalid -v {text!r}: cannot mount over the root")
        if "\0" in v["target"] + (source or ""):
            raise InvalidSpec(f"invalid -v {text!r}: a path contains a NUL byte")
    for key, value in spec.labels.items():
        if not isinstance(key, str) or not key or not isinstance(value, str) \
                or "\0" in key + value:
            raise InvalidSpec(f"invalid label {key!r}: expected KEY=VALUE")


def _ulimits(spec, _host):
    for u in spec.ulimits:
        text = f"{u['name']}={u['soft']}:{u['hard']}"
        if u["name"] not in ULIMITS:
            raise InvalidSpec(f"invalid --ulimit {text!r}: unknown limit {u['name']!r} "
                              f"(one of {', '.join(ULIMITS)})")
        problem = ulimit_problem(u["soft"], u["hard"])
        if problem:
            raise InvalidSpec(f"invalid --ulimit {text!r}: {problem}")


def _userns(spec, _host):
    ns = spec.userns
    if not ns:
        return
    if not (ns.get("mode") == "auto" or all(isinstance(ns.get(k), int)
                                             for k in ("uid", "gid", "size"))):
        raise InvalidSpec(f"invalid --userns {dict(ns)!r}: expected auto or a block of ids")
    if spec.kind != "container":
        raise InvalidSpec("--userns=auto is for containers (a VM has its own kernel)")
    if spec.privileged:
        raise InvalidSpec("--userns=auto and --privileged exclude each other")
    if not _own_netns(spec.network):
        raise InvalidSpec(f"--userns=auto needs a network namespace of its own, "
                          f"not --network {spec.network}")


def _detached(spec, _host):
    policy, retries = spec.restart["policy"], spec.restart["max_retries"]
    if policy not in RESTART_POLICIES or (retries and policy != "on-failure"):
        raise InvalidSpec(f"invalid --restart {policy}:{retries}: expected no, "
                          "on-failure[:N], always or unless-stopped")
    int_in(retries, "--restart retry count", 0, MAX_RETRIES)
    if spec.remove and policy != "no":
        raise InvalidSpec("--restart and --rm conflict: an instance removed on exit "
                          "cannot be restarted")
    size = spec.log["max_size"]
    if size != -1 and (not isinstance(size, int) or size < LOG_MIN_SIZE):
        raise InvalidSpec(f"invalid --log-max-size {size_text(size)}: at least 4k")
    int_in(spec.log["max_files"], "--log-max-files", 1, 100)
    check_sd_notify(spec.sd_notify, spec.kind)


def check_sd_notify(value, kind="container"):
    """--sd-notify: conmon (the default), container or ignore (see ctr.sdnotify)."""
    value = value or DEFAULT_SD_NOTIFY
    if value not in SD_NOTIFY_MODES:
        raise InvalidSpec(f"invalid --sd-notify {value!r}: expected "
                          f"{', '.join(SD_NOTIFY_MODES)}")
    if value == "container" and kind != "container":
        raise InvalidSpec("--sd-notify=container is for containers: a VM reports "
                          "readiness through ctr (conmon)")
    return value


CHECKS = (_identity, _process, _init, _cgroupns, _network, _resources, _vm, _security, _mounts,
          _ulimits, _userns, _detached, check_options)


def validate(spec, host=None):
    """Refuse a spec that cannot be run (InvalidSpec, the first problem found).
    `host`: the host's facts (ctr.host.HostFacts), needed when the spec has
    limits on CPUs or is a VM."""
    for check in CHECKS:
        check(spec, host)
    return spec
