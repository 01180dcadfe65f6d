"""Volume verbs: ctr volume create|ls|inspect|rm|prune (docker's)."""

import json

import click

from ctr.cli.context import human_size, pass_ctx


@click.group()
def volume():
    """Manage volumes: folders under the state root that outlive instances
    (-v NAME:/PATH or --mount source=NAME binds one; made on first use)."""


@volume.command(name="create")
@click.option("-l", "--label", "labels", multiple=True, metavar="K=V", help="Set a label.")
@click.argument("name", required=False)
@pass_ctx
def volume_create(obj, labels, name):
    """Create a volume (a random name if none is given); print its name. An
    existing one is left as it is."""
    from ctr import volumes
    from ctr.spec import check_volume_name, parse_labels

    if name is not None:
        check_volume_name(name, "invalid volume name")
    obj.store.ensure()
    click.echo(volumes.create(obj.store, name, parse_labels(labels)))


@volume.command(name="ls")
@click.option("-q", "--quiet", is_flag=True, help="Only the names.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="dangling=true|false (no instance names it), name=PART, "
                   "label=KEY[=VALUE]; the same key ORs, different keys AND.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              help="json: one object per line, as docker's.")
@pass_ctx
def volume_ls(obj, quiet, filters, fmt):
    """List volumes (named and anonymous)."""
    from ctr import volumes

    vols = volumes.listing(obj.store, volumes.parse_filters(filters))
    if quiet:
        for v in vols:
            click.echo(v["Name"])
        return
    if fmt == "json":
        for v in vols:
            click.echo(json.dumps(v))
        return
    click.echo("DRIVER    VOLUME NAME")
    for v in vols:
        click.echo(f"{v['Driver']:<10}{v['Name']}")


@volume.command(name="inspect")
@click.option("-f", "--format", "fmt", metavar="TEMPLATE",
              help="A Go template over the fields, as docker's: '{{.Mountpoint}}'.")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def volume_inspect(obj, fmt, names):
    """Show volumes as JSON (docker's fields: Name, Mountpoint, CreatedAt, ...)."""
    from ctr import volumes

    docs = [volumes.info(obj.store, n) for n in names]
    if fmt:
        from ctr.cli.template import render

        for doc in docs:
            click.echo(render(fmt, doc))
        return
    click.echo(json.dumps(docs, indent=4))


@volume.command(name="rm")
@click.option("-f", "--force", is_flag=True, help="A volume that is not there is no error.")
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def volume_rm(obj, force, names):
    """Remove volumes no instance names (a stopped one included: rm it first)."""
    from ctr import volumes

    for name in names:
        volumes.remove(obj.store, name, force=force)
        click.echo(name)


@volume.command(name="prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask first.")
@click.option("-a", "--all", "all_volumes", is_flag=True,
              help="Named volumes too, not only anonymous ones.")
@pass_ctx
def volume_prune(obj, force, all_volumes):
    """Remove the anonymous volumes no instance names (with -a every unused
    volume), as docker 23 and later do."""
    from ctr import volumes

    if not force:
        what = "all volumes" if all_volumes else "all anonymous volumes"
        click.confirm(f"This removes {what} not used by at least one instance.\n"
                      "Are you sure?", abort=True, err=True)
    removed = volumes.prune(obj.store, all_volumes)
    if removed:
        click.echo("Deleted Volumes:")
        for name, _ in removed:
            click.echo(name)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(sum(size for _, size in removed))}")


def register(group):
    group.add_command(volume)
