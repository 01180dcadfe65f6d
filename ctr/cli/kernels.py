"""Guest kernel verbs: ctr kernel fetch|ls."""

import json
import os

import click

from ctr.cli.context import progress


@click.group()
def kernel():
    """The kernel VMs boot (fetched once from the distribution)."""


@kernel.command(name="fetch")
@click.pass_obj
def kernel_fetch(obj):
    """Download the distribution's kernel and keep what VMs need."""
    from ctr.vm import kernel as kernels

    obj.store.ensure()
    k = kernels.fetch(obj.store, progress=progress)
    click.echo(k.version)


@kernel.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def kernel_ls(obj, fmt):
    """Show the cached kernel."""
    from ctr.vm import kernel as kernels

    k = kernels.cached(obj.store)
    rows = [] if k is None else [{"version": k.version, "path": k.path,
                                  "size": os.path.getsize(k.path),
                                  "modules": [os.path.basename(m) for m in k.modules]}]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo("VERSION  PATH")
    for r in rows:
        click.echo(f"{r['version']}  {r['path']}")
