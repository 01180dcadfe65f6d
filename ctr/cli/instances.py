"""Instance verbs: create, start, stop, kill, rm, ls, inspect, logs, exec (run is
ctr.cli.run's; the options they share are ctr.cli.runflags')."""

import json
import sys

import click

from ctr.cli.context import pass_ctx
from ctr.cli.runflags import (
    CMD_SETTINGS,
    _command,
    _create,
    _notice,
    instance_options,
    resource_options,
)
from ctr.errors import InvalidSpec
from ctr.spec import parse_signal


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
