"""`ctr ps`: the instances as `docker ps` shows them (CONTAINER ID, IMAGE, COMMAND,
CREATED, STATUS, PORTS, NAMES), with its -a, -q, --no-trunc, --filter and --format
(json, or a Go template such as '{{.Names}} {{.Status}}'; 'table TEMPLATE' adds a
header). `ctr ls` keeps ctr's own columns."""

import json

import click

from ctr.cli.context import pass_ctx
from ctr.errors import InvalidSpec

FILTER_KEYS = ("name", "label", "status", "ancestor", "id", "health", "volume")
HEALTH = ("starting", "healthy", "unhealthy", "none")
STATUSES = ("created", "restarting", "running", "paused", "exited", "dead")
COLUMNS = (("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"),
           ("CREATED", "RunningFor"), ("STATUS", "Status"), ("PORTS", "Ports"),
           ("NAMES", "Names"))


def parse_filters(items):
    """docker's --filter KEY=VALUE: the same key ORs, different keys AND."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise InvalidSpec(f"invalid --filter {item!r}: expected one of "
                              f"{', '.join(k + '=' for k in FILTER_KEYS)}")
        if key == "status" and value not in STATUSES:
            raise InvalidSpec(f"invalid --filter {item!r}: a status is one of "
                              f"{', '.join(STATUSES)}")
        if key == "health" and value not in HEALTH:
            raise InvalidSpec(f"invalid --filter {item!r}: a health is one of "
                              f"{', '.join(HEALTH)}")
        out.setdefault(key, []).append(value)
    return out


def _label_matches(labels, want):
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def matches(row, filters):
    tests = {
        "name": lambda v: v in row["Names"],
        "id": lambda v: row["ID"].startswith(v),
        "label": lambda v: _label_matches(row["label_map"], v),
        "status": lambda v: row["State"] == v,
        "ancestor": lambda v: row["Image"] == v or row["Image"].split(":")[0] == v,
        "health": lambda v: row["Health"] == v,
        # docker's: a volume's name, or a mount's source or destination path
        "volume": lambda v: v in row["mount_keys"],
    }
    return all(any(tests[key](v) for v in values) for key, values in filters.items())


def _trunc(row, no_trunc):
    if no_trunc:
        return row
    command = row["Command"]
    if len(command) > 20:
        command = command[:19] + "…"
    return {**row, "ID": row["ID"][:12], "Command": f'"{command}"'}


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Also instances that are not running.")
@click.option("-q", "--quiet", is_flag=True, help="Only the IDs.")
@click.option("--no-trunc", is_flag=True, help="Full IDs and commands.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="name=, id=, label=KEY[=VALUE], status=, ancestor=IMAGE, "
                   "health=starting|healthy|unhealthy|none, volume=NAME|PATH "
                   "(repeatable).")
@click.option("--format", "fmt", metavar="json|TEMPLATE",
              help="json, or a Go template like '{{.Names}} {{.Status}}' ('table ...' "
                   "adds a header).")
@pass_ctx
def ps(obj, show_all, quiet, no_trunc, filters, fmt):
    """List instances as docker ps does (running ones unless -a)."""
    from ctr.docker_view import ps_row

    wanted = parse_filters(filters)
    if "status" in wanted:
        show_all = True
    rows = []
    for rec, spec, state in obj.store.listing():
        row = ps_row(rec, spec, state)
        if (show_all or row["State"] in ("running", "paused", "restarting")) \
                and matches(row, wanted):
            rows.append(_trunc(row, no_trunc))
    rows.sort(key=lambda r: r["CreatedAt"], reverse=True)  # newest first, as docker
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps({k: v for k, v in row.items()
                                   if k not in ("label_map", "mount_keys")}))
        return
    if fmt and fmt.strip() != "table":
        _print_template(fmt, rows)
        return
    table = [tuple(title for title, _ in COLUMNS)]
    table += [tuple(str(row[field]) for _, field in COLUMNS) for row in rows]
    _print_columns(table)


def _print_columns(table):
    widths = [max(len(r[i]) if i < len(r) else 0 for r in table)
              for i in range(max(map(len, table)))]
    for r in table:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())


def _print_template(fmt, rows):
    """docker's --format: \\t and \\n are a tab and a newline; 'table TEMPLATE'
    prints a header of the fields' column names and aligns the tab-separated cells."""
    import re

    from ctr.cli.template import render

    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    header = fmt.startswith("table")
    template = fmt.removeprefix("table").strip() if header else fmt
    lines = [render(template, row) for row in rows]
    if not header:
        for line in lines:
            click.echo(line)
        return
    titles = dict((field, title) for title, field in COLUMNS)
    head = re.sub(r"{{\s*\.(\w+)\s*}}",
                  lambda m: titles.get(m.group(1), m.group(1).upper()), template)
    _print_columns([line.split("\t") for line in [head, *lines]])


def register(group):
    group.add_command(ps)
