"""`ctr rename OLD NEW` (docker's verb)."""

import click

from ctr.cli.context import pass_ctx


@click.command()
@click.argument("name", metavar="OLD")
@click.argument("new", metavar="NEW")
@pass_ctx
def rename(obj, name, new):
    """Rename an instance, running or not: its record, and the /etc/hosts
    entries its network's peers have of it, follow. Refused while NEW is taken
    or when a systemd unit of ctr's names the instance."""
    obj.instances.rename(name, new)


def register(group):
    group.add_command(rename)
