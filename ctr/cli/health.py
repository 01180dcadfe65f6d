"""Healthchecks on the command line: run/create's --health-* options and
`ctr healthcheck run NAME` (podman's verb: one check now). The checks
themselves are ctr.health's; the monitor runs `healthcheck run` on a timer."""

import click

from ctr.cli.context import pass_ctx, stacked


def health_options(f):
    """run/create's healthcheck options, over the image's HEALTHCHECK."""
    opts = [
        click.option("--health-cmd", metavar="CMD",
                     help="Command run in the instance to check its health (by /bin/sh -c; "
                          "exit 0: healthy)."),
        click.option("--health-interval", metavar="DURATION",
                     help="Time between checks (30s, 1m30s...; default 30s)."),
        click.option("--health-timeout", metavar="DURATION",
                     help="A check longer than this fails (default 30s)."),
        click.option("--health-retries", metavar="N",
                     help="Failures in a row that make it unhealthy (default 3)."),
        click.option("--health-start-period", metavar="DURATION",
                     help="Failures this soon after the start do not count (default 0s)."),
        click.option("--no-healthcheck", is_flag=True,
                     help="Disable the image's HEALTHCHECK."),
    ]
    return stacked(f, opts)


@click.group()
def healthcheck():
    """Healthchecks of instances (--health-cmd, or the image's HEALTHCHECK)."""


@healthcheck.command(name="run")
@click.argument("name")
@pass_ctx
def run_(obj, name):
    """Run NAME's healthcheck once, now, and record it (`inspect`'s
    .State.Health). Prints healthy and exits 0 when it passed, unhealthy and 1
    when it failed."""
    from ctr.health import run_check

    _, result = run_check(obj.store.record(name))
    if result["ExitCode"] != 0:
        click.echo("unhealthy")  # as podman's: this check failed (see inspect for the status)
        return 1
    click.echo("healthy")
    return 0

