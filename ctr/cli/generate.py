"""ctr generate systemd: units for instances (see ctr.systemd)."""

import os
import sys

import click

from ctr.errors import InvalidSpec


def ctr_executable():
    """The absolute path of the ctr being run (a unit must name it), not resolved
    through symlinks: /usr/local/bin/ctr stays valid across venv moves."""
    import shutil

    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.basename(argv0) != "__main__.py":
        path = argv0 if "/" in argv0 else shutil.which(argv0)
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    beside = os.path.join(os.path.dirname(sys.executable), "ctr")
    if os.access(beside, os.X_OK):
        return beside
    raise InvalidSpec("cannot tell the path of the ctr executable for the unit: "
                      "run ctr by its path")


@click.group()
def generate():
    """Generate files for other tools (systemd units)."""


@generate.command()
@click.option("--new", is_flag=True,
              help="The unit creates the instance on start (ctr run --rm, rebuilt from its "
                   "spec) and removes it on stop.")
@click.option("--restart-policy",
              metavar="no|on-success|on-failure|on-abnormal|on-watchdog|on-abort|always",
              help="systemd's Restart= (default: always for an instance made with "
                   "--restart always|unless-stopped, else on-failure).")
@click.option("--stop-timeout", type=click.IntRange(min=0), default=10, show_default=True,
              help="Seconds between SIGTERM and SIGKILL on stop (TimeoutStopSec= adds 60).")
@click.option("--files", is_flag=True, help="Write ctr-NAME.service instead of printing it.")
@click.option("--dest", metavar="DIR", help="With --files: the folder (default: the current one).")
@click.argument("name")
@click.pass_obj
def systemd(obj, new, restart_policy, stop_timeout, files, dest, name):
    """A systemd unit running instance NAME in the foreground (Type=notify)."""
    from importlib.metadata import PackageNotFoundError, version

    from ctr import systemd as units
    from ctr.store import DEFAULT_ROOT

    if restart_policy is not None:
        units.check_restart(restart_policy)
    if dest is not None and not files:
        raise InvalidSpec("--dest needs --files")
    spec = obj.store.record(name).spec
    restart_policy = restart_policy or units.restart_for(spec)
    image = obj.images.get(spec.image) if new else {}
    root = obj.store.root
    try:
        ver = version("ctr")
    except PackageNotFoundError:
        ver = ""
    text = units.unit(spec, image, ctr=ctr_executable(), new=new, restart=restart_policy,
                      stop_timeout=stop_timeout, version=ver,
                      root=None if root == DEFAULT_ROOT else root)
    if not files:
        click.echo(text, nl=False)
        return
    dest = os.path.abspath(dest or ".")
    if not os.path.isdir(dest):
        raise InvalidSpec(f"--dest {dest}: no such folder")
    path = os.path.join(dest, units.unit_name(name))
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise InvalidSpec(f"writing {path}: {err.strerror}") from err
    click.echo(path)
