"""`ctr stats`: CPU, memory, pids and block I/O of running instances, from their
cgroups' own counters. A table redrawn every interval on a terminal (like
`docker stats`), one table or JSON document per interval when piped, a single
one with --no-stream."""

import json
import sys
import time

import click

from ctr.cli.context import pass_ctx

INTERVAL = 1.0


def human(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _sample(store, names):
    from ctr.query import stats

    return {rec.name: (rec, time.monotonic_ns(), c) for rec, c in stats(store, names)}


def rows(before, after):
    """Counters of two samples -> one row per instance, CPU % from the difference."""
    out = []
    for name, (rec, t1, c1) in after.items():
        _, t0, c0 = before.get(name, (rec, t1, c1))
        cpu = None
        if c1["cpu_usage_ns"] is not None and c0["cpu_usage_ns"] is not None and t1 > t0:
            cpu = round(100.0 * (c1["cpu_usage_ns"] - c0["cpu_usage_ns"]) / (t1 - t0), 2)
        mem, limit = c1["memory_usage"], c1["memory_limit"]
        out.append({
            "name": name, "id": rec.spec.id, "cpu_percent": cpu,
            "memory_percent": round(100.0 * mem / limit, 2) if mem is not None and limit else None,
            **c1,
        })
    return out


def table(data):
    lines = [("NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "BLOCK I/O")]
    for r in data:
        lines.append((
            r["name"],
            "-" if r["cpu_percent"] is None else f"{r['cpu_percent']:.2f}%",
            f"{human(r['memory_usage'])} / {human(r['memory_limit'])}",
            "-" if r["memory_percent"] is None else f"{r['memory_percent']:.2f}%",
            str(r["pids"]) + (f" / {r['pids_limit']}" if r["pids_limit"] else ""),
            f"{human(r['blkio_read'])} / {human(r['blkio_write'])}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--interval", type=click.FloatRange(min=0.1), default=INTERVAL, show_default=True,
              help="Seconds between samples (CPU % is the average over one).")
@click.argument("names", nargs=-1)
@pass_ctx
def stats(obj, no_stream, fmt, interval, names):
    """Show CPU %, memory, pids and block I/O of running instances (all when no NAME)."""
    store = obj.store
    live = sys.stdout.isatty() and fmt == "table"
    before = _sample(store, names)
    while True:
        time.sleep(interval)
        after = _sample(store, names)
        data = rows(before, after)
        if fmt == "json":
            click.echo(json.dumps(data, indent=2 if no_stream else None))
        else:
            click.echo(("\033[H\033[J" if live else "") + table(data))
        if no_stream:
            return 0
        before = after
