"""Verbs docker users type by habit: wait, restart, top, port, diff, version, info.
Each is a thin composition of what the layers below already offer."""

import json

import click

from ctr.cli.context import pass_ctx
from ctr.errors import CtrError, InvalidSpec


@click.command()
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def wait(obj, names):
    """Block until instances stop; print each exit status."""
    from ctr.query import wait_stopped

    for name in names:
        state = wait_stopped(obj.store.record(name))
        code = state.get("exit_code")
        click.echo(code if code is not None else -1)


@click.command()
@click.option("-t", "--time", "timeout", type=click.IntRange(min=0), default=10,
              show_default=True, help="Seconds to wait after the stop signal before SIGKILL.")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def restart(obj, timeout, names):
    """Stop instances (as `stop`), then start them again in the background."""
    instances = obj.instances
    for name in names:
        rec = instances.get(name)
        if rec.spec.remove:
            raise CtrError(f"instance {name} was run with --rm: a stop removes it, it cannot "
                           "be restarted")
        instances.stop(name, timeout)
        instances.start_detached(instances.get(name))
        click.echo(name)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def top(obj, name, ps_args):
    """The processes of a running instance, as `ps` shows them (default: -ef)."""
    from ctr.query import instance_pids

    pids = set(instance_pids(obj.store.record(name)))
    args = list(ps_args) or ["-ef"]
    import subprocess

    r = subprocess.run(["ps", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise InvalidSpec(f"ps {' '.join(args)}: {r.stderr.strip() or 'failed'}")
    lines = r.stdout.splitlines()
    if not lines:
        return
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidSpec(f"ps {' '.join(args)}: its output has no PID column")
    col = header.index("PID")
    click.echo(lines[0])
    for line in lines[1:]:
        fields = line.split(None, len(header) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            click.echo(line)


@click.command()
@click.argument("name")
@click.argument("port", required=False)
@pass_ctx
def port(obj, name, port):
    """The published ports of an instance (PORT[/PROTO]: only that one)."""
    from ctr.docker_view import published

    rec = obj.store.record(name)
    want_port, _, want_proto = (port or "").partition("/")
    if port and not want_port.isdigit():
        raise InvalidSpec(f"invalid port {port!r}: expected PORT[/tcp|/udp]")
    found = [p for p in published(rec.spec, rec.state())
             if not port or (p["port"] == int(want_port)
                             and p["proto"] == (want_proto or "tcp"))]
    if port and not found:
        raise CtrError(f"no public port '{port}' published for {name}")
    for p in found:
        line = f"{p['host_ip']}:{p['host_port']}"
        click.echo(line if port else f"{p['port']}/{p['proto']} -> {line}")


@click.command()
@click.argument("name")
@pass_ctx
def diff(obj, name):
    """What an instance changed in its root: A added, C changed, D deleted."""
    from ctr.query import changes

    rec = obj.store.record(name)
    spec = rec.spec
    if spec.userns and not spec.userns.get("idmap"):
        from ctr.userns import lower_layers

        lowers = lower_layers(rec) or []
    else:
        lowers = obj.images.get(spec.image)["lowerdirs"]
    for kind, path in changes(rec, lowers):
        click.echo(f"{kind} {path}")


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ctr")
    except PackageNotFoundError:
        return "unknown"


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def version(fmt):
    """ctr's version, its Python, and the host's kernel."""
    import platform

    data = {"Version": _version(), "Python": platform.python_version(),
            "Kernel": platform.release(), "Os": "linux", "Arch": platform.machine()}
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key + ':':10} {value}")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def info(obj, fmt):
    """The host as ctr sees it: kernel, cgroups, storage, networks, counts."""
    from ctr import cgroups
    from ctr.query import host_info

    data = host_info(obj.store, obj.images, cgroups.hierarchies())
    data["Version"] = _version()
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")
