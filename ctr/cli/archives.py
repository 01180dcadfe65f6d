"""Images in and out of files: ctr image import|load|save, ctr load|save, and an
instance's changes or root: ctr commit, ctr export."""

import click

from ctr.cli.context import pass_ctx, progress, stacked
from ctr.cli.images import image


@image.command(name="import")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help="The image to take from a multi-platform OCI index (default: the host's).")
@click.argument("path", type=click.Path())
@click.argument("name", required=False)
@pass_ctx
def image_import(obj, platform, path, name):
    """Import PATH: an OCI layout directory, an OCI archive, a docker archive (docker
    save, podman save) or a root filesystem tarball (.tar, .tar.gz; NAME needed).
    NAME names the image; else it keeps the names the archive records."""
    from ctr.images.reference import parse_platform

    for img in obj.images.import_path(path, name, progress=progress,
                                      platform=parse_platform(platform) if platform else None):
        click.echo(f"{img['name']} {img['id']}")


def _load(obj, path, quiet):
    from ctr.images.archive import spooled

    with spooled(obj.images, path) as file:
        imgs = obj.images.import_path(file, progress=None if quiet else progress)
    for img in imgs:
        click.echo(img["name"] if quiet else f"Loaded image: {img['name']}")


_LOAD_OPTIONS = [
    click.option("-i", "--input", "path", metavar="FILE",
                 help="The archive to read (default: stdin)."),
    click.option("-q", "--quiet", is_flag=True, help="Print only the names."),
    pass_ctx,
]


def _options(options):
    return lambda f: stacked(f, options)


@image.command(name="load")
@_options(_LOAD_OPTIONS)
def image_load(obj, path, quiet):
    """Load images from a docker or OCI archive, with the names it records (docker's
    verb for `image import`)."""
    _load(obj, path, quiet)


@click.command(name="load")
@_options(_LOAD_OPTIONS)
def load(obj, path, quiet):
    """Load images from a docker or OCI archive (ctr image load)."""
    _load(obj, path, quiet)


def _save(obj, names, output, fmt):
    from ctr.images.archive import output as opened
    from ctr.images.archive import save as write

    with opened(output) as out:
        write(obj.images, names, out, fmt, progress=progress)


_SAVE_OPTIONS = [
    click.option("-o", "--output", metavar="FILE",
                 help="The archive to write (default: stdout, unless a terminal)."),
    click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci-archive"]),
                 default="docker-archive", show_default=True,
                 help="docker-archive: uncompressed layers, as docker and podman save; "
                      "oci-archive: an OCI layout in a tar, gzip layers."),
    click.argument("names", nargs=-1, required=True),
    pass_ctx,
]


@image.command(name="save")
@_options(_SAVE_OPTIONS)
def image_save(obj, output, fmt, names):
    """Write images to an archive that podman, docker and skopeo load."""
    _save(obj, names, output, fmt)


@click.command(name="save")
@_options(_SAVE_OPTIONS)
def save(obj, output, fmt, names):
    """Write images to an archive (ctr image save)."""
    _save(obj, names, output, fmt)


@click.command()
@click.option("-m", "--message", help="A comment for the new layer's history entry.")
@click.option("-a", "--author", help="The image's author.")
@click.option("-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
              help="A Dockerfile instruction for the new config: CMD, ENTRYPOINT, ENV, "
                   "EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR (repeatable).")
@click.option("-p/-P", "--pause/--no-pause", "pause", default=True, show_default=True,
              help="Freeze a running instance while its changes are read.")
@click.argument("name")
@click.argument("image_name", metavar="IMAGE")
@pass_ctx
def commit(obj, message, author, changes, pause, name, image_name):
    """Make instance NAME's changes a new layer on its image, as image IMAGE."""
    from ctr.images.commit import commit as make

    img = make(obj.images, obj.instances, name, image_name, message=message, changes=changes,
               author=author, pause=pause, progress=progress)
    click.echo(img["id"])


@click.command()
@click.option("-o", "--output", metavar="FILE",
              help="The tar to write (default: stdout, unless a terminal).")
@click.argument("name")
@pass_ctx
def export(obj, output, name):
    """Write instance NAME's whole root filesystem as one tar (docker export)."""
    from ctr.images.archive import output as opened
    from ctr.images.commit import export as write

    with opened(output) as out:
        write(obj.images, obj.instances, name, out)
