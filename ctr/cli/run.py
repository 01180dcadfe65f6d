"""`ctr run`: a module of its own, so that a start builds the options of no
other verb (~200 click options in ctr.cli.instances)."""

import click

from ctr.cli.context import pass_ctx
from ctr.cli.runflags import CMD_SETTINGS, _create, _drop_cidfile, _notice, instance_options
from ctr.errors import CtrError


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
