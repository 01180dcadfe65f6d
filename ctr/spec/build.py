"""Making a spec: `new_spec` from typed values (ctr's defaults and policies
filled in, then validated), and `build_spec` from the CLI's strings (parsed
into typed values, then new_spec). An OCI config.json or an image's config
becomes a spec through new_spec, as the CLI's options do.
"""

import os
from types import SimpleNamespace

from ctr.errors import InvalidSpec
from ctr.spec.caps import ALL_CAPS, DEFAULT_CAPS, build_caps, kernel_order
from ctr.spec.health import build_healthcheck
from ctr.spec.model import (
    DEFAULT_PATH,
    DEFAULT_SD_NOTIFY,
    LOG_DEFAULTS,
    RESOURCE_KEYS,
    SECCOMP_DEFAULT,
    SECCOMP_UNCONFINED,
    InstanceSpec,
    Port,
    Resources,
    Restart,
    RunOptions,
    Tmpfs,
    Userns,
    VmOptions,
    Volume,
    add_tmpfs,
)
from ctr.spec.mounts import check_mounts, check_targets, check_volumes
from ctr.spec.options import parse_options
from ctr.spec.parse import (
    READ_ONLY_TMPFS,
    check_bool,
    check_cgroup_parent,
    check_cgroupns,
    check_hostname,
    check_ip,
    check_log,
    check_name,
    check_network,
    check_ports,
    check_restart,
    check_security_opts,
    check_tmpfs,
    check_ulimits,
    check_user,
    check_userns,
    check_vm_files,
    check_workdir,
    merge_env,
    need_host,
    parse_env,
    parse_labels,
    parse_resources,
    parse_signal,
    read_env_file,
    read_label_file,
    signal_name,
)
from ctr.spec.validate import check_env, check_resources, validate

INIT = "/sbin/init"
# systemd's request to halt (systemd.special(7)): what `ctr stop` sends an init.
INIT_STOP_SIGNAL = "SIGRTMIN+3"
# What systemd mounts itself at boot (a failure is fatal for /run/lock) and cannot
# without CAP_SYS_ADMIN: ctr mounts them, as podman does for --systemd.
INIT_TMPFS = (
    Tmpfs(path="/run", flags=("nosuid", "nodev"), data="mode=755"),
    Tmpfs(path="/run/lock", flags=("nosuid", "nodev", "noexec"), data="mode=1777,size=5m"),
    Tmpfs(path="/tmp", flags=("nosuid", "nodev"), data="mode=1777"),
)
VM_DEFAULT_MEMORY = 256 << 20

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


def _base_env(hostname, tty, init):
    """What ctr puts in every instance's environment (the image's and the user's win)."""
    env = [f"PATH={DEFAULT_PATH}"] + ([f"HOSTNAME={hostname}"] if hostname else [])
    if init:
        env.append("container=ctr")  # how systemd knows it runs in a container
        if not tty:
            # No terminal: /dev/console is /dev/null, where systemd's console getty
            # would fail until its start limit, leaving the system degraded.
            env.append("SYSTEMD_GETTY_AUTO=0")
    if tty:
        env.append("TERM=xterm")
    return env


def _check_image_init(image, host):
    """--init without a command boots the image's /sbin/init: it must be there."""
    # a layered image: the init is in one of its layers (the top one that has it)
    roots = image.get("lowerdirs") or ([image["rootfs"]] if image.get("rootfs") else [])
    if roots and not any(need_host(host, "--init").has_init(root.rstrip("/"), INIT)
                         for root in roots):
        raise InvalidSpec(f"--init: the image {image['name']} has no {INIT} to boot "
                          "(give the init's path as the command)")


def flat_defaults(image):
    """The run defaults of an image record of the flat form (cmd, env, workdir):
    what new_spec uses when it is given no `defaults`."""
    return SimpleNamespace(entrypoint=(), cmd=tuple(image.get("cmd") or ()),
                           env=tuple(image.get("env") or ()),
                           workdir=image.get("workdir") or None, user=None,
                           exposed_ports=(), stop_signal=None, volumes=(), labels={},
                           healthcheck=None)


def _command(command, entrypoint, init, defaults):
    """docker's rules: arguments replace Cmd; an entrypoint given replaces the
    image's and clears its Cmd (an empty one clears both); the command is
    Entrypoint + Cmd. --init with neither boots /sbin/init."""
    command = tuple(command)
    if init and not command and entrypoint is None:
        return (INIT,)
    if entrypoint is not None:
        return (*entrypoint, *command)
    return (*defaults.entrypoint, *(command or defaults.cmd))


def _env(defaults, base, env):
    """The image's < ctr's own < the user's; but an image's PATH is kept (docker
    sets its default PATH only where the image has none)."""
    if any(e.startswith("PATH=") for e in defaults.env):
        base = [e for e in base if not e.startswith("PATH=")]
    return tuple(merge_env(defaults.env, base, env))


def _publish_all(ports, network, defaults):
    """-P: each port the image exposes, not published by -p already, on a free
    host port chosen at start (host_port 0). Without a bridge network there is
    nothing to publish on: ignored, as docker does."""
    if network in ("none", "host") or network.startswith("container:"):
        return ()
    given = {(p["port"], p["proto"]) for p in ports}
    return tuple(Port(host_port=0, port=n, proto=proto)
                 for n, proto in defaults.exposed_ports if (n, proto) not in given)


def _image_volumes(volumes, tmpfs, defaults):
    """An anonymous volume for each of the image's volumes that no -v or tmpfs covers."""
    covered = {v["target"] for v in volumes} | {t["path"] for t in tmpfs}
    return (*volumes, *(Volume(target=path, anonymous=True)
                        for path in defaults.volumes if path not in covered))


def new_spec(*, image, command=(), name=None, kind="container", env=(), workdir=None,
             user=None, hostname=None, tty=False, remove=False, network="bridge", ports=(),
             ip=None, resources=None, cgroup_parent=None, vm=None, caps=None,
             privileged=False, read_only=False, tmpfs=(), volumes=(), userns=None,
             seccomp=SECCOMP_DEFAULT, no_new_privs=None, ulimits=(), init=False,
             stop_signal=None, restart=None, log=None, sd_notify=None, host=None,
             entrypoint=None, publish_all=False, labels=None, defaults=None, oci=None,
             cgroupns="private", lxcfs=True, healthcheck=None, interactive=False,
             options=None):
    """An InstanceSpec from typed values: ctr's defaults and policies filled in,
    then checked (ctr.spec.validate: InvalidSpec). For example

        new_spec(image={"name": "busybox", "id": "sha256:..."}, command=("true",),
                 resources=Resources(memory=64 << 20, cpus=1.5), network="none",
                 host=HostFacts())

    image: the image's record: name and id; rootfs, where --init's /sbin/init
      is looked for.
    defaults: the image's run defaults (ctr.images.config.ImageConfig:
      entrypoint, cmd, env, workdir, user, exposed_ports, stop_signal, volumes,
      labels); None for those of a flat record (its cmd, env and workdir).
    command: () for the image's Cmd (/sbin/init with init); entrypoint: None
      for the image's, else it replaces the image's Entrypoint and Cmd (docker's
      --entrypoint; () clears it).
    env: the user's KEY=VALUE, over ctr's own (PATH unless the image sets one,
      HOSTNAME, TERM with a tty, container= with an init) and the image's.
    workdir, user, stop_signal: None for the image's (stop_signal: SIGRTMIN+3
      for an init, else the image's, else SIGTERM).
    publish_all: each port the image exposes on a free host port (-P).
    volumes: binds (Volume); each of the image's volumes not covered by one
      (nor by a tmpfs) becomes an anonymous Volume, a container's own.
    labels: {key: value} over the image's.
    resources (Resources), vm (VmOptions: memory defaults to the memory limit,
      else 256m), ports (Port), tmpfs (Tmpfs; read_only adds /tmp and /run,
      init what systemd needs), ulimits (Ulimit), userns (Userns), restart
      (Restart), log (LogLimits): typed values, or the plain mappings they are
      made of.
    caps: capability names; None for docker's default set (all with privileged).
    seccomp: "default", "unconfined" or a profile (privileged: unconfined).
    no_new_privs: None for the default (on; off for an init).
    oci: what a bundle's config.json asks beyond these (InstanceSpec.oci; ctr.oci).
    cgroupns: "private" (the container's own cgroup namespace) or "host".
    lxcfs: lxcfs's /proc files and cpu/online when lxcfs runs on the host.
    healthcheck: a Healthcheck (ctr.spec.health.build_healthcheck); None for the
      image's (defaults.healthcheck).
    interactive: -i, a detached instance's stdin kept open for `ctr attach`.
    options: RunOptions (--add-host, --dns, --device, --pid...; ctr.spec.options);
      with uts "host" the hostname is the host's (none of the instance's own).
    host: the host's facts (ctr.host.HostFacts), asked only when a check needs one.
    """
    check_env(env)  # before they are merged: "K" alone would become "K="
    defaults = flat_defaults(image) if defaults is None else defaults
    command = _command(command, entrypoint, init, defaults)
    boots_image_init = init and command == (INIT,) and entrypoint is None
    instance_id = new_id()
    options = RunOptions(options or {})
    if not (hostname or options.uts == "host"):
        hostname = instance_id[:12]
    resources = Resources(resources or {})
    vm = VmOptions(vm or {})
    if kind == "vm":
        vm = VmOptions(vm, memory=vm.get("memory") or resources.get("memory",
                                                                    VM_DEFAULT_MEMORY))
    if caps is None:
        caps = ALL_CAPS if privileged else DEFAULT_CAPS
    tmpfs = tuple(tmpfs)
    if read_only:
        tmpfs = add_tmpfs(tmpfs, READ_ONLY_TMPFS)
    if init:
        tmpfs = add_tmpfs(tmpfs, INIT_TMPFS)
    if stop_signal is None:
        stop_signal = INIT_STOP_SIGNAL if init else defaults.stop_signal or "SIGTERM"
    network = network or "bridge"
    ports = tuple(ports)
    volumes = tuple(volumes)
    if kind == "container":  # a VM's image volumes are part of its root (no volumes yet)
        volumes = _image_volumes(volumes, tmpfs, defaults)
    spec = InstanceSpec(
        name=check_name(name) if name is not None else generate_name(),
        id=instance_id,
        kind=kind,
        image=image["name"],
        image_id=image["id"],
        command=command,
        env=_env(defaults, _base_env(hostname, tty, init), env),
        workdir=workdir or defaults.workdir or "/",
        user=user or defaults.user or None,
        hostname=hostname or "",
        tty=tty,
        remove=remove,
        network=network,
        ports=ports,
        publish_all=_publish_all(ports, network, defaults) if publish_all else (),
        ip=ip,
        resources=resources,
        cgroup_parent=cgroup_parent,
        vm=vm,
        caps=kernel_order(caps),
        privileged=privileged,
        read_only=read_only,
        tmpfs=tmpfs,
        volumes=volumes,
        userns=userns or Userns(),
        seccomp=SECCOMP_UNCONFINED if privileged else seccomp,
        no_new_privs=(not init) if no_new_privs is None else no_new_privs,
        ulimits=ulimits,
        init=init,
        stop_signal=signal_name(parse_signal(stop_signal, "--stop-signal")),
        restart=restart or Restart(),
        log=log or LOG_DEFAULTS,
        sd_notify=sd_notify or DEFAULT_SD_NOTIFY,
        labels={**defaults.labels, **(labels or {})},
        oci=oci or {},
        cgroupns=cgroupns,
        lxcfs=lxcfs,
        healthcheck=healthcheck if healthcheck is not None else (
            getattr(defaults, "healthcheck", None) or {}),
        interactive=bool(interactive),
        options=options,
    )
    validate(spec, host)
    if boots_image_init:
        _check_image_init(image, host)
    return spec


def build_resources(current=None, *, host=None, ncpus=None, **options):
    """Resource options (strings, as the CLI has them) into Resources. `current`
    is the instance's present resources, for `ctr update`: options given replace
    them, the others are kept. `ncpus` overrides the host's count of CPUs."""
    given = parse_resources(**options, host=host)
    if "cpu_shares" in given and "cpu_weight" in given:
        raise InvalidSpec("give --cpu-shares or --cpu-weight, not both")
    res = dict(current or {})
    if "cpu_shares" in given:
        res.pop("cpu_weight", None)
    if "cpu_weight" in given:
        res.pop("cpu_shares", None)
    if "cpus" in given and ("cpu_period" in given or "cpu_quota" in given):
        raise InvalidSpec("give --cpus or --cpu-period/--cpu-quota, not both (--cpus N is "
                          "a quota of N periods)")
    if "cpus" in given:  # `ctr update`: one way of limiting CPU time replaces the other
        res.pop("cpu_period", None)
        res.pop("cpu_quota", None)
    if "cpu_period" in given or "cpu_quota" in given:
        res.pop("cpus", None)
    for key in ("device_read_bps", "device_write_bps"):
        if key in given:
            rates = dict(res.get(key) or ())
            rates.update(given[key])
            given[key] = sorted(rates.items())
    res.update(given)
    res = Resources({k: res[k] for k in RESOURCE_KEYS if k in res})
    check_resources(res, host, keys=given, ncpus=ncpus)
    return res


def _mounts(volumes, mounts, tmpfs, read_only):
    """-v, --mount and --tmpfs into (volumes, tmpfs); no two at one place."""
    volumes = check_volumes(volumes)
    mount_volumes, mount_tmpfs = check_mounts(mounts)
    volumes, tmpfs = (*volumes, *mount_volumes), (*check_tmpfs(tmpfs), *mount_tmpfs)
    check_targets(volumes, tmpfs)
    return volumes, add_tmpfs(tmpfs, READ_ONLY_TMPFS) if read_only else tmpfs


def build_spec(*, image, command, name=None, env=(), env_files=(), workdir=None,
               user=None, hostname=None, tty=False, remove=False, kind="container",
               cgroup_parent=None, network=None, publish=(), ip=None, vm=False, kernel=None,
               initrd=None, accel=None, kernel_arg=(), disk=(), cap_add=(), cap_drop=(),
               privileged=False,
               read_only=False, tmpfs=(), volumes=(), mounts=(), security_opt=(), ulimit=(),
               userns=None, restart=None, log_max_size=None, log_max_files=None,
               sd_notify=None, init=False, stop_signal=None, entrypoint=None,
               publish_all=False, labels=(), label_files=(), defaults=None, host=None,
               cgroupns=None, lxcfs=None,
               health_cmd=None, health_interval=None, health_timeout=None,
               health_retries=None, health_start_period=None, no_healthcheck=False,
               interactive=False,
               add_host=(), dns=(), dns_search=(), dns_option=(), device=(), shm_size=None,
               sysctl=(), pid=None, ipc=None, uts=None, group_add=(), oom_score_adj=None,
               cidfile=None, **resources):
    """The CLI's options (strings, by their click names), an image record and
    its run defaults (see new_spec) -> an InstanceSpec: each string parsed
    into its typed value, then new_spec. --entrypoint "" clears the image's."""
    if name is not None:
        check_name(name)
    kind = "vm" if vm else kind
    if kind == "vm" and security_opt:  # even one that asks for a default: as before
        raise InvalidSpec("-v, --tmpfs, --read-only, --privileged, --security-opt and "
                          "--ulimit are for containers, not VMs (yet)")
    user_env = merge_env(*(read_env_file(p) for p in env_files), parse_env(env))
    user_labels = {}
    for path in label_files:
        user_labels.update(read_label_file(path))
    user_labels.update(parse_labels(labels))
    if entrypoint is not None:
        if "\0" in entrypoint:
            raise InvalidSpec("invalid --entrypoint: it contains a NUL byte")
        entrypoint = (entrypoint,) if entrypoint else ()
    seccomp, no_new_privs = check_security_opts(security_opt, privileged, host)
    volumes, tmpfs = _mounts(volumes, mounts, tmpfs, read_only)
    if not any(str(o).startswith("no-new-privileges") for o in security_opt):
        no_new_privs = None  # not given: new_spec's default
    return new_spec(
        image=image, command=command, name=name, kind=kind, env=user_env,
        workdir=check_workdir(workdir), user=check_user(user),
        hostname=check_hostname(hostname), tty=bool(tty), remove=bool(remove),
        network=check_network(network), ports=check_ports(publish), ip=check_ip(ip),
        resources=build_resources(host=host, **resources),
        cgroup_parent=check_cgroup_parent(cgroup_parent),
        vm=check_vm_files(kernel, initrd, accel, kind, kernel_arg, disk),
        caps=build_caps(cap_add, cap_drop, privileged), privileged=bool(privileged),
        read_only=bool(read_only), tmpfs=tmpfs, volumes=volumes,
        userns=check_userns(userns), seccomp=seccomp,
        no_new_privs=no_new_privs, ulimits=check_ulimits(ulimit), init=bool(init),
        stop_signal=stop_signal or None, restart=check_restart(restart),
        log=check_log(log_max_size, log_max_files), sd_notify=sd_notify, host=host,
        entrypoint=entrypoint, publish_all=bool(publish_all), labels=user_labels,
        defaults=defaults, cgroupns=check_cgroupns(cgroupns),
        lxcfs=check_bool(lxcfs, "--lxcfs"), interactive=interactive,
        healthcheck=build_healthcheck(
            getattr(defaults, "healthcheck", None), cmd=health_cmd, interval=health_interval,
            timeout=health_timeout, retries=health_retries, start_period=health_start_period,
            disabled=no_healthcheck),
        options=parse_options(add_host=add_host, dns=dns, dns_search=dns_search,
                              dns_option=dns_option, device=device, shm_size=shm_size,
                              sysctl=sysctl, pid=pid, ipc=ipc, uts=uts, group_add=group_add,
                              oom_score_adj=oom_score_adj, cidfile=cidfile, host=host),
    )
