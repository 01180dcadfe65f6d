"""What `run` and `create` share (and `update`, `exec`): their options, and
making the record of a new instance. No command here: `ctr run` imports this
and ctr.cli.run, and builds no other verb's options."""

import sys

import click

from ctr.cli.context import progress, stacked
from ctr.cli.health import health_options
from ctr.errors import CtrError, InvalidSpec

# Options after IMAGE belong to the command: `ctr run busybox ls -l`.
CMD_SETTINGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


def resource_options(f):
    """Limits, shared by run/create and update; values are checked in ctr.spec."""
    opts = [
        click.option("-m", "--memory", metavar="SIZE", help="Memory limit (b, k, m, g)."),
        click.option("--memory-swap", metavar="SIZE",
                     help="Memory plus swap limit; -1 for unlimited swap (default: 2x memory)."),
        click.option("--cpus", metavar="N", help="CPU time, in CPUs (0.5: half of one)."),
        click.option("--cpu-shares", metavar="N", help="Relative CPU weight, v1 scale (2-262144)."),
        click.option("--cpu-weight", metavar="N", help="Relative CPU weight, v2 scale (1-10000)."),
        click.option("--cpuset-cpus", metavar="LIST", help="CPUs the instance may use (0-2,5)."),
        click.option("--pids-limit", metavar="N", help="Most tasks at once (-1: unlimited)."),
        click.option("--blkio-weight", metavar="N", help="Relative block I/O weight (10-1000)."),
        click.option("--device-read-bps", multiple=True, metavar="DEV:RATE",
                     help="Read rate limit of a block device (/dev/sda:10m)."),
        click.option("--device-write-bps", multiple=True, metavar="DEV:RATE",
                     help="Write rate limit of a block device."),
        click.option("--memory-reservation", metavar="SIZE",
                     help="Soft memory limit, reclaimed down to under pressure (v1 "
                          "memory.soft_limit_in_bytes, v2 memory.low)."),
        click.option("--cpu-period", metavar="US",
                     help="CFS period in microseconds (1000-1000000; with --cpu-quota, "
                          "instead of --cpus)."),
        click.option("--cpu-quota", metavar="US",
                     help="CPU time per period in microseconds (>= 1000; -1: unlimited)."),
    ]
    return stacked(f, opts)


def run_flag_options(f):
    """docker's run flags beyond the basics (ctr.spec.options: RunOptions)."""
    opts = [
        click.option("--add-host", multiple=True, metavar="NAME:IP",
                     help="Add a line to /etc/hosts (IP 'host-gateway': the network's "
                          "gateway)."),
        click.option("--dns", multiple=True, metavar="IP",
                     help="A nameserver in /etc/resolv.conf (instead of the host's)."),
        click.option("--dns-search", multiple=True, metavar="DOMAIN",
                     help="A search domain in /etc/resolv.conf (instead of the host's)."),
        click.option("--dns-option", multiple=True, metavar="OPT",
                     help="An options entry in /etc/resolv.conf (ndots:2, ...)."),
        click.option("--device", multiple=True, metavar="HOST[:CONTAINER][:rwm]",
                     help="Make a host device node in the container's /dev, allowed in "
                          "the device controller (r, w, m: read, write, mknod)."),
        click.option("--shm-size", metavar="SIZE", help="Size of /dev/shm (default 64m)."),
        click.option("--sysctl", multiple=True, metavar="KEY=VALUE",
                     help="A namespaced kernel parameter (net.*, fs.mqueue.*, kernel.shm*, "
                          "kernel.msg*, kernel.sem, kernel.domainname)."),
        click.option("--pid", metavar="host|container:NAME",
                     help="Share a pid namespace instead of having one of its own."),
        click.option("--ipc", metavar="MODE",
                     help="private (default), shareable (others may join), host or "
                          "container:NAME (a shareable one)."),
        click.option("--uts", metavar="host", help="Use the host's hostname and domain name."),
        click.option("--group-add", multiple=True, metavar="GROUP",
                     help="A supplementary group: a name from the image's /etc/group, or a "
                          "number."),
        click.option("--cidfile", metavar="FILE",
                     help="Write the instance's id to FILE (refused if it exists)."),
        click.option("--oom-score-adj", metavar="N",
                     help="The command's OOM score adjustment (-1000 to 1000)."),
    ]
    return stacked(f, opts)


def pull_options(f):
    """Where an image missing here comes from; shared by run/create and pull."""
    opts = [
        click.option("--pull", "pull", type=click.Choice(["missing", "always", "never"]),
                     default="missing", show_default=True,
                     help="Pull the image: when missing here, always, or never."),
        click.option("--platform", metavar="OS/ARCH[/VARIANT]",
                     help="The platform to pull from a multi-platform image "
                          "(default: the host's)."),
        click.option("--tls-verify", "tls_verify", type=click.BOOL, default=True,
                     help="Require HTTPS and verify certificates (false: a plain-HTTP "
                          "registry)."),
    ]
    return stacked(f, opts)


def pull_args(pull, platform, tls_verify):
    """The CLI's pull options as ImageStore.ensure takes them."""
    from ctr.images.reference import parse_platform

    return {"pull": pull, "platform": parse_platform(platform) if platform else None,
            "tls_verify": tls_verify, "progress": progress, "terminal": sys.stderr.isatty()}


def instance_options(f):
    opts = [
        click.option("--name", help="Name of the instance (generated when not given)."),
        click.option("-e", "--env", "env", multiple=True, metavar="K=V",
                     help="Set an environment variable (K alone: take it from ctr's)."),
        click.option("--env-file", "env_files", multiple=True, metavar="FILE",
                     help="Read K=V lines from a file."),
        click.option("-w", "--workdir", help="Working directory inside the instance."),
        click.option("-u", "--user", help="UID[:GID] or NAME[:GROUP] from the image."),
        click.option("--hostname", help="Hostname (default: the first 12 hex of the id)."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal."),
        click.option("-i", "--interactive", is_flag=True,
                     help="Keep stdin open: a detached instance's can be written to with "
                          "`ctr attach` (in the foreground stdin is always passed)."),
        click.option("--rm", "remove", is_flag=True, help="Remove the instance when it exits."),
        click.option("--network", "--net", "network", metavar="MODE",
                     help="bridge (default), none, host, container:NAME or a network's name."),
        click.option("-p", "--publish", multiple=True, metavar="[IP:]HOST:PORT[/PROTO]",
                     help="Publish a port of the instance on the host."),
        click.option("-P", "--publish-all", is_flag=True,
                     help="Publish each port the image exposes on a free host port "
                          "(chosen at each start; `ctr inspect` shows them)."),
        click.option("--ip", help="A fixed address on the instance's network."),
        click.option("--cgroup-parent", metavar="PATH",
                     help="Cgroup to nest in (default /ctr; 'self': ctr's own)."),
        click.option("--cgroupns", metavar="private|host",
                     help="Container: its own cgroup namespace (private, the default: "
                          "/sys/fs/cgroup and /proc/self/cgroup show its cgroup as the "
                          "root) or the host's (host: host paths in /proc/self/cgroup; "
                          "on a cgroup2-only host the whole hierarchy, read-only)."),
        click.option("--lxcfs", metavar="true|false",
                     help="Container: when lxcfs runs on the host (/var/lib/lxcfs, or "
                          "CTR_LXCFS_ROOT), its /proc/meminfo, cpuinfo, stat, uptime... "
                          "so free, top, uptime, nproc show the container's own "
                          "(default true)."),
        click.option("--cap-add", multiple=True, metavar="CAP",
                     help="Add a capability to the default set (ALL: every one)."),
        click.option("--cap-drop", multiple=True, metavar="CAP",
                     help="Drop a capability (ALL: every one)."),
        click.option("--privileged", is_flag=True,
                     help="All capabilities, the host's devices, /sys writable, no masked paths."),
        click.option("--read-only", is_flag=True,
                     help="Mount the root read-only (/tmp and /run get a tmpfs)."),
        click.option("--tmpfs", multiple=True, metavar="PATH[:OPTS]",
                     help="Mount a tmpfs (OPTS: size=64m,mode=1777,noexec,...)."),
        click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:OPTS]",
                     help="Bind a host path (/SRC), or a named volume (NAME: made on first "
                          "use, seeded from the image), at DST; -v DST: an anonymous volume. "
                          "OPTS: ro, rw, nocopy (volumes), rprivate (binds)."),
        click.option("--mount", "mounts", multiple=True, metavar="type=T,src=S,dst=D,...",
                     help="docker's --mount: type=bind|volume|tmpfs, source, target, "
                          "readonly, volume-nocopy, tmpfs-size, tmpfs-mode."),
        click.option("--security-opt", multiple=True, metavar="OPT",
                     help="seccomp=unconfined|FILE.json (docker's format), "
                          "no-new-privileges[=false]."),
        click.option("--userns", metavar="auto|host",
                     help="auto: ids of its own from ctr's /etc/subuid range (default: host)."),
        click.option("--ulimit", multiple=True, metavar="NAME=SOFT[:HARD]",
                     help="A resource limit (nofile=1024:2048, nproc=64, core=0...)."),
        click.option("--entrypoint", metavar="PATH",
                     help="Run PATH instead of the image's entrypoint, with COMMAND as its "
                          "arguments ('' clears the image's)."),
        click.option("-l", "--label", "labels", multiple=True, metavar="K=V",
                     help="Set a label (over the image's); `ctr inspect` shows them."),
        click.option("--label-file", "label_files", multiple=True, metavar="FILE",
                     help="Read K=V label lines from a file."),
        click.option("--init", "--systemd", "init", is_flag=True,
                     help="Boot the image's init system (systemd) as PID 1: /sbin/init "
                          "unless a command is given; stop signal SIGRTMIN+3. Unlike "
                          "docker's --init (a tiny reaper before the command), this "
                          "boots a system container."),
        click.option("--stop-signal", metavar="SIG",
                     help="Signal `ctr stop` sends first (default SIGTERM; SIGRTMIN+3 "
                          "with --init)."),
        click.option("--restart", metavar="POLICY",
                     help="Detached: no (default), on-failure[:N], always, unless-stopped; "
                          "restarts back off from 100 ms to 1 min."),
        click.option("--log-max-size", metavar="SIZE",
                     help="Detached: rotate the log at this size (default 10m; -1: never)."),
        click.option("--log-max-files", metavar="N",
                     help="Detached: log files kept, the current one included (default 3)."),
        resource_options,
        health_options,
        run_flag_options,
        click.option("--vm", is_flag=True,
                     help="Boot the image as a VM under QEMU (-m is then its RAM, default 256m)."),
        click.option("--kernel", metavar="PATH", help="VM: the kernel to boot."),
        click.option("--initrd", metavar="PATH", help="VM: an initramfs of one's own."),
        click.option("--accel", metavar="kvm|tcg",
                     help="VM: acceleration (default: kvm with vmx/svm, else tcg)."),
        click.option("--kernel-arg", metavar="ARG", multiple=True,
                     help="VM: a word appended to the guest kernel's command line "
                          "(repeatable), e.g. cgroup_no_v1=all."),
        click.option("--disk", metavar="PATH", multiple=True,
                     help="VM: a raw disk image, the guest's /dev/vda, /dev/vdb... "
                          "in order (repeatable)."),
        click.option("--sd-notify", metavar="conmon|container|ignore",
                     help="Under systemd (NOTIFY_SOCKET): ctr says READY=1 once the command "
                          "runs (conmon, default), or the command says it (container)."),
        pull_options,
        click.argument("image"),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
    ]
    return stacked(f, opts)


def _command(command):
    """`ctr run IMAGE -- CMD`: the separator is not part of the command."""
    return command[1:] if command[:1] == ("--",) else command


def _create(obj, image, command, pull="missing", platform=None, tls_verify=True, **opts):
    if image.startswith("-"):
        # Unknown options are kept for the command, so one before IMAGE lands here.
        raise click.NoSuchOption(image)
    from ctr.host import HostFacts
    from ctr.images.config import image_config
    from ctr.spec import build_spec

    if opts.get("cidfile"):
        _check_cidfile(opts["cidfile"])
    obj.store.ensure()
    img = obj.images.ensure(image, **pull_args(pull, platform, tls_verify))
    spec = build_spec(image=img, command=_command(command), defaults=image_config(img),
                      host=HostFacts(), **opts)
    rec = obj.instances.create(spec)
    if spec.options.cidfile:
        _write_cidfile(obj, rec, spec.options.cidfile)
    return rec


def _check_cidfile(path):
    import os

    if os.path.lexists(path):
        raise InvalidSpec(f"--cidfile {path}: the file exists (another instance's id?): "
                          "remove it first")


def _drop_cidfile(rec):
    import os

    if rec.spec.options.cidfile:
        try:
            os.unlink(rec.spec.options.cidfile)
        except FileNotFoundError:
            pass


def _write_cidfile(obj, rec, path):
    """docker's --cidfile: the id, written once the record exists; never over
    a file (O_EXCL). When it cannot be written the instance goes again."""
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, rec.spec.id.encode())
        finally:
            os.close(fd)
    except OSError as err:
        obj.instances.discard(rec)
        raise InvalidSpec(f"--cidfile {path}: {err.strerror}") from None


def _notice(rec):
    """A VM that will run under TCG says so, once, on stderr. An accelerator
    that cannot be had is the start's to refuse (which leaves nothing)."""
    if rec.spec.kind != "vm":
        return
    from ctr.vm.launch import choose_accel

    try:
        _, notice = choose_accel(rec.spec.vm.get("accel"))
    except CtrError:
        return
    if notice:
        click.echo(f"ctr: notice: {notice}", err=True)
