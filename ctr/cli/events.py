"""`ctr events`: what happened to instances and images (ctr.events), as
docker events shows it: live by default, past ones with --since, up to --until."""

import json
import sys

import click

from ctr.cli.context import pass_ctx


@click.command()
@click.option("--since", metavar="TIME",
              help="Show events since TIME (2026-01-02T15:04:05Z, a Unix time, or 10m ago).")
@click.option("--until", metavar="TIME",
              help="Stop at TIME (same forms): past events up to it, then live ones until "
                   "it comes.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="container=NAME|ID, event=ACTION, type=container|image|volume, "
                   "label=KEY[=VALUE], image=NAME, volume=NAME (repeatable).")
@click.option("--format", "fmt", metavar="json|TEMPLATE",
              help="json (one object a line), or a Go template like "
                   "'{{.Action}} {{.Actor.Attributes.name}}'.")
@pass_ctx
def events(obj, since, until, filters, fmt):
    """Print events as they happen (create, start, die, oom, kill, stop, destroy,
    pause, unpause, rename, health_status; image pull, load, commit, tag, untag, delete;
    volume create, destroy).

    Without --since, only new ones; without --until, until interrupted."""
    from ctr import events as ev
    from ctr.logs import parse_time_ns

    wanted = ev.parse_filters(filters)
    since_ns = parse_time_ns(since, "--since") if since else None
    until_ns = parse_time_ns(until, "--until") if until else None
    if fmt and fmt != "json":
        from ctr.cli.template import render

        render(fmt, ev.go_view(ev.record("container", "check", "", {})))  # refused early
    if since_ns is None:
        import time

        since_ns = time.time_ns()
    out = sys.stdout
    for event in ev.read(obj.store.root, since=since_ns, until=until_ns, follow=True):
        if not ev.matches(event, wanted):
            continue
        if fmt == "json":
            line = json.dumps(event, separators=(",", ":"))
        elif fmt:
            line = render(fmt, ev.go_view(event))
        else:
            line = ev.text(event)
        out.write(line + "\n")
        out.flush()


def register(group):
    group.add_command(events)
