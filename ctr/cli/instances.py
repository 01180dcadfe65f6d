"""Instance verbs: run, create, start, stop, kill, rm, ls, inspect, logs, exec."""

import json
import sys

import click

from ctr.cli.context import pass_ctx, progress
from ctr.cli.health import health_options
from ctr.errors import CtrError, InvalidSpec
from ctr.spec import parse_signal

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
    for opt in reversed(opts):
        f = opt(f)
    return f


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
    for opt in reversed(opts):
        f = opt(f)
    return f


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
    for opt in reversed(opts):
        f = opt(f)
    return f


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
    for opt in reversed(opts):
        f = opt(f)
    return f


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


@click.command(context_settings=CMD_SETTINGS)
@click.option("-d", "--detach", is_flag=True, help="Run in the background, print the name.")
@instance_options
@pass_ctx
def run(obj, detach, **opts):
    """Create and start an instance of IMAGE running COMMAND."""
    rec = _create(obj, **opts)
    _notice(rec)
    try:
        code = obj.instances.run(rec, detach=detach)
    except CtrError:
        _drop_cidfile(rec)  # the run left no instance: its id names nothing
        raise
    if not detach:
        return code
    click.echo(rec.name)
    return 0


@click.command(context_settings=CMD_SETTINGS)
@instance_options
@pass_ctx
def create(obj, **opts):
    """Create an instance of IMAGE without starting it; print its name."""
    click.echo(_create(obj, **opts).name)


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach: wait and return its exit status.")
@click.option("--cgroup-parent", metavar="PATH",
              help="With -a: the cgroup to nest in for this run ('self': ctr's own, as "
                   "systemd units do).")
@click.argument("name")
@pass_ctx
def start(obj, attach, cgroup_parent, name):
    """Start a created or stopped instance."""
    instances = obj.instances
    rec = instances.get(name)
    _notice(rec)
    if cgroup_parent is not None and not attach:
        raise InvalidSpec("--cgroup-parent on start needs -a (a detached start keeps "
                          "the instance's own)")
    if attach:
        return instances.run_attached(rec, cgroup_parent=cgroup_parent)
    instances.start_detached(rec)
    click.echo(name)
    return 0


@click.command()
@click.option("-t", "--time", "timeout", type=click.IntRange(min=0), default=10,
              show_default=True, help="Seconds to wait after the stop signal before SIGKILL.")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def stop(obj, timeout, names):
    """Stop instances: their stop signal (SIGTERM unless --stop-signal or --init
    chose another), then SIGKILL after the timeout."""
    for name in names:
        obj.instances.stop(name, timeout)
        click.echo(name)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True,
              help="Signal name or number.")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def kill(obj, sig, names):
    """Send a signal to the instances' main process (SIGKILL: to every process)."""
    signum = parse_signal(sig)
    for name in names:
        obj.instances.kill(name, signum)
        click.echo(name)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running instance first.")
@click.option("-v", "--volumes", is_flag=True,
              help="Remove its anonymous volumes too (the image's Volumes, -v /PATH, "
                   "--mount without a source); named ones stay.")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def rm(obj, force, volumes, names):
    """Remove instances and everything they hold (their anonymous volumes with -v)."""
    for name in names:
        obj.instances.remove(name, force=force, volumes=volumes)
        click.echo(name)


def _status(spec, state):
    status = state["status"]
    if status in ("stopped", "restarting") and state.get("exit_code") is not None:
        return f"{status} ({state['exit_code']})"
    return status


LIVE = ("running", "paused", "restarting")


def _row(rec, spec, state):
    return {
        "name": rec.name,
        "id": spec.id if spec else None,
        "kind": spec.kind if spec else None,
        "image": spec.image if spec else None,
        "status": state["status"],
        "exit_code": state.get("exit_code"),
        "restarts": state.get("restart_count", 0),
        "pid": state.get("pid") if state["status"] in ("running", "paused") else None,
        "created": state.get("created"),
        "command": list(spec.command) if spec else None,
        "error": state.get("error"),
    }


@click.command(name="ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="Also instances that are not running.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def ls(obj, show_all, fmt):
    """List instances (running ones unless -a)."""
    rows = []
    for rec, spec, state in obj.store.listing():
        if show_all or state["status"] in LIVE:
            rows.append((_row(rec, spec, state), spec, state))
    if fmt == "json":
        click.echo(json.dumps([r for r, _, _ in rows], indent=2))
        return
    table = [("NAME", "KIND", "IMAGE", "STATUS", "RESTARTS", "PID", "CREATED", "COMMAND")]
    for row, spec, state in rows:
        table.append((row["name"], row["kind"] or "-", row["image"] or "-",
                      _status(spec, state), str(row["restarts"]), str(row["pid"] or "-"),
                      (row["created"] or "-")[:19].replace("T", " "),
                      " ".join(row["command"] or ["-"])[:40]))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@click.command()
@click.option("-f", "--format", "fmt", metavar="TEMPLATE",
              help="A Go template over the fields, as docker's: '{{.State.Pid}}'.")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def inspect(obj, fmt, names):
    """Show instances' spec, state and paths as JSON: ctr's own fields, and
    docker's (.State.Status, .Config.Env, .NetworkSettings.IPAddress, ...)."""
    from ctr.docker_view import view
    from ctr.query import inspect as describe

    docs = []
    for name in names:
        rec = obj.store.record(name)
        doc = describe(rec, obj.images)
        docs.append({**view(rec, rec.spec, doc["state"]), **doc})
    if fmt:
        from ctr.cli.template import render

        for doc in docs:
            click.echo(render(fmt, doc))
        return
    out = docs[0] if len(docs) == 1 else docs
    click.echo(json.dumps(out, indent=2, sort_keys=True))


def _tail(value):
    if value is None or value == "all":
        return None
    if not value.isdigit():
        raise InvalidSpec(f"invalid --tail {value!r}: expected a number of lines or 'all'")
    return int(value)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the instance stops.")
@click.option("-n", "--tail", metavar="N", help="Only the last N lines (default: all).")
@click.option("--since", metavar="TIME",
              help="Lines written since TIME: 2026-01-02T15:04:05Z, a Unix time, or 10m ago.")
@click.option("--until", metavar="TIME", help="Lines written before TIME (same forms).")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time (UTC).")
@click.argument("name")
@pass_ctx
def logs(obj, follow, tail, since, until, timestamps, name):
    """Print the output of a detached instance (its stderr on stderr)."""
    from ctr.logs import parse_time, read

    tail = _tail(tail)
    since = parse_time(since, "--since") if since else None
    until = parse_time(until, "--until") if until else None
    out = {b"stdout": sys.stdout.buffer, b"stderr": sys.stderr.buffer}
    rec = obj.store.record(name)
    for line in read(rec, follow=follow, tail=tail, since=since, until=until):
        stream = out[line.stream]
        if timestamps:
            stream.write(line.ts + b" ")
        stream.write(line.data)
        stream.flush()


@click.command(name="exec", context_settings=CMD_SETTINGS)
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-i", "--interactive", is_flag=True, help="Accepted for docker compatibility.")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V")
@click.option("-w", "--workdir")
@click.option("-u", "--user")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def exec_(obj, tty, interactive, env, workdir, user, name, command):
    """Run a command in a running instance; its exit status is ctr's."""
    del interactive
    return obj.instances.exec(name, _command(command), env=env, workdir=workdir, user=user, tty=tty)


@click.command()
@resource_options
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def update(obj, names, **options):
    """Change the limits of instances (running ones at once)."""
    if not any(v not in (None, ()) for v in options.values()):
        raise InvalidSpec("nothing to update: give at least one limit, like --memory 64m")
    for name in names:
        obj.instances.update(name, **options)
        click.echo(name)


def _each(verb, doc):
    """A verb that applies Instances.<verb> to each NAME and prints it."""

    @click.command(name=verb, help=doc)
    @click.argument("names", nargs=-1, required=True)
    @pass_ctx
    def command(obj, names):
        for name in names:
            getattr(obj.instances, verb)(name)
            click.echo(name)

    return command


pause = _each("pause", "Freeze every process of instances.")
unpause = _each("unpause", "Thaw paused instances.")


@click.command()
@pass_ctx
def gc(obj):
    """Clean up after instances that died unwatched (cgroups, --rm records)."""
    for name in obj.instances.gc():
        click.echo(name)
