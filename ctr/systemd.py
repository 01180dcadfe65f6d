"""systemd units for instances: `ctr generate systemd`.

A unit runs its instance in the foreground (`ctr start -a`, or with --new a
`ctr run --rm` rebuilt from the spec, the way Quadlet and `podman generate
systemd --new` do), so the unit's main process is the ctr that reaps the
instance and exits with its status. The choices, argued in the README:

- Type=notify, NotifyAccess=all: ctr says READY=1 once the command runs
  (ctr.sdnotify); ExecStop's `ctr stop` may say STOPPING=1.
- Delegate=yes and `--cgroup-parent self`: the instance's cgroup nests in the
  unit's, so systemd accounts for it and its final SIGKILL reaches it.
- KillMode=mixed (Quadlet's): SIGTERM to ctr alone, which forwards it to the
  instance's init and records the exit; SIGKILL to the whole cgroup only if the
  stop timeout runs out. control-group would SIGTERM every process of the
  container at once, behind its init's back; none/process would leave them.
- TimeoutStopSec = stop timeout + 60 s (podman's margin): ExecStop's
  `ctr stop -t N` waits N s before SIGKILL, then for the reaper to record.
- SuccessExitStatus=143: ctr reports an instance ended by SIGTERM as exit
  143, which systemd would otherwise count as a failure of every stop.
"""

import os
import re

from ctr.errors import InvalidSpec

RESTART_POLICIES = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog",
                    "on-abort", "always")
DEFAULT_RESTART = "on-failure"
DEFAULT_STOP_TIMEOUT = 10
STOP_MARGIN = 60
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")


# -- ExecStart= syntax ------------------------------------------------------------------

def escape_arg(arg):
    """One argument as systemd's command lines read it (systemd.service(5),
    "Command lines"): specifiers first (% -> %%), then quotes and C escapes,
    then at exec time $VAR expansion ($ -> $$). Anything but plain characters is
    double-quoted; a lone ';' (a command separator) and '' are quoted too."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(arg):
        return text
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def command_line(argv):
    return " ".join(escape_arg(a) for a in argv)


# -- the run command of --new -------------------------------------------------------------

def _device_path(devno):
    """A path naming block device MAJOR:MINOR (the spec keeps numbers)."""
    link = f"/dev/block/{devno}"
    if os.path.exists(link):
        return link
    try:
        with open(f"/sys/dev/block/{devno}/uevent") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line.strip().split("=", 1)[1]
    except OSError:
        pass
    raise InvalidSpec(f"cannot rebuild the device rate limit of block device {devno}: "
                      "no such device on this host")


def _resource_args(res):
    args = []
    if "memory" in res:
        args += ["--memory", str(res["memory"])]
    if "memory_swap" in res:
        args += ["--memory-swap", str(res["memory_swap"])]
    if "cpus" in res:
        args += ["--cpus", repr(float(res["cpus"]))]
    for key in ("cpu_shares", "cpu_weight", "cpuset_cpus", "pids_limit", "blkio_weight"):
        if key in res:
            args += ["--" + key.replace("_", "-"), str(res[key])]
    for key in ("device_read_bps", "device_write_bps"):
        for devno, rate in res.get(key) or ():
            args += ["--" + key.replace("_", "-"), f"{_device_path(devno)}:{rate}"]
    return args


def _base_env(spec, defaults):
    """The environment a run of this image gets without any -e."""
    from ctr.spec import DEFAULT_PATH, merge_env

    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={spec.hostname}"]
    if any(e.startswith("PATH=") for e in defaults.env):
        base = base[1:]  # the image's own PATH is kept
    if spec.tty:
        base.append("TERM=xterm")
    return set(merge_env(defaults.env, base))


def _health_args(hc, image_hc):
    """The --health-* options that turn the image's healthcheck into the spec's."""
    if hc == image_hc or (not hc and not image_hc):
        return []
    if tuple(hc.get("test") or ()) == ("NONE",):
        return ["--no-healthcheck"]
    args = []
    test = tuple(hc.get("test") or ())
    if test != tuple(image_hc.get("test") or ()):
        if test[0] != "CMD-SHELL":
            import shlex

            test = ("CMD-SHELL", shlex.join(test[1:]))
        args += ["--health-cmd", test[1]]
    for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                      ("start_period", "--health-start-period")):
        if hc.get(key) is not None and hc.get(key) != image_hc.get(key):
            args += [flag, f"{hc[key]}ns"]
    if hc.get("retries") is not None and hc.get("retries") != image_hc.get("retries"):
        args += ["--health-retries", str(hc["retries"])]
    return args


def run_args(spec, image):
    """`run` and its options that rebuild `spec` (name, command and all), plus
    --rm and --cgroup-parent self: parsed by ctr's own CLI they give the same
    spec but for its id (and the hostname, when it was the id's)."""
    from ctr import seccomp
    from ctr.images.config import image_config
    from ctr.spec import ALL_CAPS, DEFAULT_CAPS, LOG_DEFAULTS

    defaults = image_config(image)

    if isinstance(spec.seccomp, dict):
        raise InvalidSpec(f"--new cannot rebuild {spec.name}: its seccomp profile came "
                          "from a file that ctr did not keep; generate without --new")
    args = ["run", "--rm", "--name", spec.name, "--cgroup-parent", "self"]
    if spec.sd_notify != "conmon":
        args += ["--sd-notify", spec.sd_notify]
    if spec.kind == "vm":
        args.append("--vm")
        for key in ("kernel", "initrd", "accel"):
            if spec.vm.get(key):
                args += ["--" + key, spec.vm[key]]
        for key, opt in (("kernel_args", "--kernel-arg"), ("disks", "--disk")):
            for value in spec.vm.get(key) or ():
                args += [opt, value]
    if spec.hostname != spec.id[:12]:
        args += ["--hostname", spec.hostname]
    base = _base_env(spec, defaults)
    for item in spec.env:
        if item not in base:
            args += ["-e", item]
    if spec.workdir != (defaults.workdir or "/"):
        args += ["-w", spec.workdir]
    if spec.user:
        args += ["-u", spec.user]
    if spec.tty:
        args.append("-t")
    if spec.network != "bridge":
        args += ["--network", spec.network]
    for p in spec.ports:
        ip = "" if p["host_ip"] == "0.0.0.0" else p["host_ip"] + ":"
        args += ["-p", f"{ip}{p['host_port']}:{p['port']}/{p['proto']}"]
    if spec.publish_all:
        args.append("-P")
    if spec.ip:
        args += ["--ip", spec.ip]
    args += _resource_args(spec.resources)
    if spec.privileged:
        args.append("--privileged")
    base_caps = ALL_CAPS if spec.privileged else DEFAULT_CAPS
    for cap in base_caps:
        if cap not in spec.caps:
            args += ["--cap-drop", cap]
    for cap in spec.caps:
        if cap not in base_caps:
            args += ["--cap-add", cap]
    if spec.read_only:
        args.append("--read-only")
    for t in spec.tmpfs:  # all of them, --read-only's too: the order is kept
        opts = ",".join([*t.get("flags", ()), *filter(None, [t.get("data")])])
        args += ["--tmpfs", f"{t['path']}:{opts}" if opts else t["path"]]
    for v in spec.volumes:
        if v.get("anonymous"):
            continue  # each run makes its own from the image's, as podman's --new units do
        opts = ",".join(o for o, on in (("ro", v.get("readonly")), ("nocopy", v.get("nocopy")))
                        if on)
        args += ["-v", f"{v.get('name') or v['source']}:{v['target']}"
                 + (f":{opts}" if opts else "")]
    for key, value in spec.labels.items():
        if defaults.labels.get(key) != value:
            args += ["--label", f"{key}={value}"]
    if spec.seccomp == seccomp.UNCONFINED and not spec.privileged:
        args += ["--security-opt", "seccomp=unconfined"]
    if not spec.no_new_privs:
        args += ["--security-opt", "no-new-privileges=false"]
    if spec.userns:
        args += ["--userns", spec.userns.get("mode", "auto")]
    for u in spec.ulimits:
        args += ["--ulimit", f"{u['name']}={u['soft']}:{u['hard']}"]
    # The instance's --restart is not passed: the unit's Restart= does that job
    # (and ctr in the foreground applies no policy).
    if spec.log != LOG_DEFAULTS:
        args += ["--log-max-size", str(spec.log["max_size"]),
                 "--log-max-files", str(spec.log["max_files"])]
    args += _health_args(spec.healthcheck, defaults.healthcheck or {})
    if defaults.entrypoint:  # the command below is whole: not after the image's entrypoint
        args += ["--entrypoint", ""]
    return [*args, spec.image, "--", *spec.command]


def restart_for(spec):
    """Restart= for an instance's own --restart policy: always for always and
    unless-stopped, on-failure otherwise (podman's default)."""
    return "always" if spec.restart.get("policy") in ("always", "unless-stopped") else \
        DEFAULT_RESTART


# -- the unit ------------------------------------------------------------------------------

def unit_name(name):
    return f"ctr-{name}.service"


UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system")


def unit_of(name, dirs=UNIT_DIRS):
    """The unit `ctr generate systemd` made for the instance `name`, if one is
    installed (it names the instance: ctr rename refuses), else None."""
    unit = unit_name(name)
    return unit if any(os.path.exists(os.path.join(d, unit)) for d in dirs) else None


def check_restart(policy):
    if policy not in RESTART_POLICIES:
        raise InvalidSpec(f"invalid --restart-policy {policy!r}: expected one of "
                          f"{', '.join(RESTART_POLICIES)}")
    return policy


def unit(spec, image, *, ctr, root=None, new=False, restart=DEFAULT_RESTART,
         stop_timeout=DEFAULT_STOP_TIMEOUT, version=""):
    """The unit's text. `ctr`: the absolute path of the executable; `root`: the
    state root, passed as --root when it is not the default one."""
    check_restart(restart)
    if not os.path.isabs(ctr):
        raise InvalidSpec(f"the ctr executable must be an absolute path, not {ctr!r}")
    if not isinstance(stop_timeout, int) or stop_timeout < 0:
        raise InvalidSpec(f"invalid --stop-timeout {stop_timeout!r}: seconds, 0 or more")
    if spec.remove and not new:
        raise InvalidSpec(f"instance {spec.name} is removed when it stops (--rm): a unit "
                          "could start it once; use --new")
    base = [ctr] + (["--root", root] if root else [])
    name = spec.name

    def line(*argv, prefix=""):
        return prefix + command_line([*base, *argv])

    if new:
        start = line(*run_args(spec, image))
    else:
        start = line("start", "-a", "--cgroup-parent", "self", name)
    kind = "VM" if spec.kind == "vm" else "container"
    out = [f"# {unit_name(name)}: the ctr {kind} {name}",
           f"# generated by `ctr generate systemd{' --new' if new else ''}`"
           + (f" (ctr {version})" if version else ""),
           "# install: copy to /etc/systemd/system, systemctl daemon-reload, "
           f"systemctl enable --now {unit_name(name)}",
           "",
           "[Unit]",
           f"Description=ctr {kind} {name}",
           "Wants=network-online.target",
           "After=network-online.target"]
    state_root = root or "/var/lib/ctr"
    if _PLAIN.fullmatch(state_root) and "$" not in state_root:
        out.append(f"RequiresMountsFor={state_root.replace('%', '%%')}")
    notify = spec.sd_notify != "ignore"
    out += ["",
            "[Service]",
            "Type=notify" if notify else "Type=exec",
            *(["NotifyAccess=all"] if notify else []),
            "Delegate=yes",
            "KillMode=mixed",
            f"Restart={restart}",
            f"TimeoutStopSec={stop_timeout + STOP_MARGIN}",
            "SuccessExitStatus=143"]
    if new:
        out.append(line("rm", "-f", name, prefix="ExecStartPre=-"))
    out.append("ExecStart=" + start)
    out.append(line("stop", "-t", str(stop_timeout), name,
                    prefix="ExecStop=-" if new else "ExecStop="))
    if new:
        out.append(line("rm", "-f", name, prefix="ExecStopPost=-"))
    out += ["", "[Install]", "WantedBy=default.target", ""]
    return "\n".join(out)
