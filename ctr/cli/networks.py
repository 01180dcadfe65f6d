"""Network verbs: ctr network create|ls|rm."""

import json

import click


@click.group()
def network():
    """Manage networks (a bridge, a subnet, NAT)."""


@network.command(name="create")
@click.option("--subnet", metavar="CIDR", help="Default: the first free 10.89.N.0/24.")
@click.option("--gateway", metavar="IP", help="Default: the subnet's first address.")
@click.argument("name")
@click.pass_obj
def network_create(obj, subnet, gateway, name):
    """Create a network."""
    from ctr.net import manage

    manage.create(obj.store, name, subnet, gateway)
    click.echo(name)


@network.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def network_ls(obj, fmt):
    """List networks."""
    from ctr.net import manage
    from ctr.query import network_users

    nets = manage.listing(obj.store, network_users(obj.store))
    if fmt == "json":
        click.echo(json.dumps(nets, indent=2))
        return
    rows = [("NAME", "BRIDGE", "SUBNET", "GATEWAY", "INSTANCES")]
    rows += [(n["name"], n["bridge"], n["subnet"], n["gateway"], str(len(n["instances"])))
             for n in nets]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@network.command(name="rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def network_rm(obj, names):
    """Remove networks no instance uses (their bridge and NAT rules go too)."""
    from ctr.net import manage
    from ctr.query import network_users

    for name in names:
        manage.remove(obj.store, name, network_users(obj.store))
        click.echo(name)
