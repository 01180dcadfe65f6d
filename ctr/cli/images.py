"""Image verbs: ctr image ls|build|import|rm."""

import json

import click

from ctr.cli.context import progress


def _human(size):
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return str(size)


@click.group()
def image():
    """Manage images (read-only root filesystems)."""


@image.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def image_ls(obj, fmt):
    """List images."""
    images = obj.images.list()
    if fmt == "json":
        click.echo(json.dumps(images, indent=2))
        return
    rows = [("NAME", "ID", "SIZE", "CREATED")]
    for img in images:
        rows.append((img["name"], img["id"].split(":")[-1][:12], _human(img["size"]),
                     img["created"][:19].replace("T", " ")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@image.command(name="build")
@click.argument("name")
@click.pass_obj
def image_build(obj, name):
    """Build image NAME from its recipe in images/NAME."""
    img = obj.images.build(name, progress=progress)
    click.echo(f"{img['name']} {img['id']}")


@image.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name")
@click.pass_obj
def image_import(obj, file, name):
    """Import a root filesystem tarball (.tar, .tar.gz) as image NAME."""
    img = obj.images.import_tar(file, name, progress=progress)
    click.echo(f"{img['name']} {img['id']}")


@image.command(name="rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def image_rm(obj, names):
    """Remove images no instance uses."""
    from ctr.query import image_users

    for name in names:
        obj.images.remove(name, used_by=image_users(obj.store, name))
        click.echo(name)


def register(group):
    group.add_command(image)
