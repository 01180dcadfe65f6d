"""`ctr cp`: files between an instance and the host (docker's verb)."""

import sys

import click

from ctr.cli.context import pass_ctx


@click.command()
@click.option("-a", "--archive", is_flag=True,
              help="Keep the files' owners (default: the receiving side's root, or you).")
@click.option("-L", "--follow-link", "follow", is_flag=True,
              help="Follow the source if it is a symlink (default: copy the link).")
@click.option("-q", "--quiet", is_flag=True, help="Accepted for docker compatibility.")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@pass_ctx
def cp(obj, archive, follow, quiet, src, dst):
    """Copy files between an instance and the host: NAME:PATH to a host path,
    or the other way; '-' is a tar stream on stdin or stdout.

    \b
    ctr cp web:/etc/nginx ./nginx       a folder out (./nginx made if missing)
    ctr cp ./site/. web:/srv/www        a folder's content into one
    ctr cp web:/var/log - | tar t       a tar of it on stdout
    tar c . | ctr cp - web:/srv         a tar unpacked into a folder

    Paths in the instance resolve inside its root, symlinks included, never
    out of it; running or stopped alike (volumes included)."""
    del quiet
    from ctr.cp import copy

    copy(obj.instances, src, dst, follow=follow, archive=archive,
         stdin=sys.stdin.buffer, stdout=sys.stdout.buffer)


def register(group):
    group.add_command(cp)
