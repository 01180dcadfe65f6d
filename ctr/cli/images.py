"""Image verbs: ctr image ls|build|pull|inspect|tag|rm|prune, and ctr pull (import,
load and save: ctr/cli/archives.py)."""

import json

import click

from ctr.cli.context import human_size, progress


def _repo_tag(name):
    """docker's REPOSITORY and TAG columns of an image name."""
    repo, _, digest = name.partition("@")
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = repo.rpartition(":")
    else:
        tag = "<none>" if digest else "latest"
    return repo, tag


def _ago(created):
    import datetime

    try:
        then = datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    secs = (datetime.datetime.now(datetime.UTC) - then).total_seconds()
    for unit, n in (("years", 365 * 86400), ("months", 30 * 86400), ("weeks", 7 * 86400),
                    ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= 2 * n:
            return f"{int(secs // n)} {unit} ago"
    return "About a minute ago" if secs >= 60 else "Less than a minute ago"


@click.group()
def image():
    """Manage images (read-only root filesystems, in layers)."""


@image.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def image_ls(obj, fmt):
    """List images: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE."""
    images = obj.images.list()
    if fmt == "json":
        click.echo(json.dumps(images, indent=2))
        return
    rows = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
    for img in images:
        repo, tag = _repo_tag(img["name"])
        rows.append((repo, tag, img["id"].split(":")[-1][:12], _ago(img.get("created")),
                     human_size(img.get("size", 0))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@image.command(name="build")
@click.argument("name")
@click.pass_obj
def image_build(obj, name):
    """Build image NAME from its recipe in images/NAME."""
    img = obj.images.build(name, progress=progress)
    click.echo(f"{img['name']} {img['id']}")


def _pull(obj, ref, platform, tls_verify, fmt):
    import sys

    from ctr.images.reference import parse_platform

    img = obj.images.pull(ref, platform=parse_platform(platform) if platform else None,
                          tls_verify=tls_verify, progress=progress,
                          terminal=sys.stderr.isatty())
    if fmt == "json":
        click.echo(json.dumps(img, indent=2))
    else:
        click.echo(f"{img['name']} {img['id']}")


_PULL_OPTIONS = [
    click.option("--platform", metavar="OS/ARCH[/VARIANT]",
                 help="The platform to pull from a multi-platform image (default: the "
                      "host's)."),
    click.option("--tls-verify", "tls_verify", type=click.BOOL, default=True,
                 help="Require HTTPS and verify certificates (false: a plain-HTTP registry)."),
    click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text"),
    click.argument("ref"),
    click.pass_obj,
]


def _pull_command(f):
    for opt in reversed(_PULL_OPTIONS):
        f = opt(f)
    return f


@image.command(name="pull")
@_pull_command
def image_pull(obj, ref, platform, tls_verify, fmt):
    """Pull REF (alpine, host:5000/x/y:tag, name@sha256:...) from its registry."""
    _pull(obj, ref, platform, tls_verify, fmt)


@click.command(name="pull")
@_pull_command
def pull(obj, ref, platform, tls_verify, fmt):
    """Pull REF from its registry (ctr image pull)."""
    _pull(obj, ref, platform, tls_verify, fmt)


@image.command(name="inspect")
@click.option("-f", "--format", "fmt", metavar="TEMPLATE",
              help="A Go template over the fields, as docker's: '{{.Id}}'.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def image_inspect(obj, fmt, names):
    """Show images' records as JSON: ctr's own fields, and docker's (.Id, .RepoTags,
    .RepoDigests, .Config, .RootFS.Layers, .Size)."""
    from ctr.docker_view import image_view

    docs = []
    for name in names:
        meta = obj.images.get(name)
        docs.append({**image_view(meta), **meta})
    if fmt:
        from ctr.cli.template import render

        for doc in docs:
            click.echo(render(fmt, doc))
        return
    click.echo(json.dumps(docs, indent=2, sort_keys=True))


@image.command(name="tag")
@click.argument("src")
@click.argument("new")
@click.pass_obj
def image_tag(obj, src, new):
    """Give the image SRC the name NEW too."""
    click.echo(obj.images.tag(src, new)["name"])


@image.command(name="rm")
@click.option("-f", "--force", is_flag=True,
              help="Remove it even when stopped instances use it.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def image_rm(obj, force, names):
    """Remove images no instance uses (their layers go when no image has them)."""
    from ctr.query import image_users_running

    for name in names:
        click.echo(obj.images.remove(name, users_of=lambda n: image_users_running(obj.store, n),
                                     force=force))


@image.command(name="prune")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def image_prune(obj, fmt):
    """Remove layers and blobs no image has, the shifted copies of layers
    (--userns=auto) for blocks of ids no instance holds, and what killed pulls
    left."""
    got = obj.images.collect()
    if fmt == "json":
        click.echo(json.dumps(got))
        return
    for layer in got["layers"]:
        click.echo(f"deleted: {layer}")
    for copy in got["shifted"]:
        click.echo(f"deleted: {copy['layer']} (shifted copy {copy['block']})")
    click.echo(f"removed {len(got['layers'])} layer(s), {len(got['shifted'])} shifted "
               f"layer(s), {got['blobs']} blob(s)")
    click.echo(f"Total reclaimed space: {human_size(got['reclaimed'])}")
