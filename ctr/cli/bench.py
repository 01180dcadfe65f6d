"""`ctr bench`: the same workload as a container and as a VM, side by side:
startup per phase, CPU time, memory, and an isolation matrix (ctr.bench)."""

import json
import sys

import click

from ctr.cli.context import pass_ctx


def _progress_bar():
    """[k/n] and a bar on stderr, redrawn in place; only on a terminal."""
    if not sys.stderr.isatty():
        return None, lambda: None

    def show(step, total, what):
        width = 24
        done = width * (step - 1) // max(total, 1)
        bar = "#" * done + "." * (width - done)
        click.echo(f"\r\033[K[{step}/{total}] [{bar}] {what}", err=True, nl=False)

    return show, lambda: click.echo("\r\033[K", err=True, nl=False)


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("--image", default="busybox", show_default=True, help="The image both kinds run.")
@click.option("--kinds", default="container,vm", show_default=True,
              help="Which kinds to compare (container, vm).")
@click.option("--runs", type=int, default=5, show_default=True,
              help="Cold runs per kind (create, start, command, rm).")
@click.option("--warmup", type=int, default=1, show_default=True,
              help="Runs per kind before the measured ones, not recorded.")
@click.option("-m", "--memory", default="128m", show_default=True,
              help="Memory limit of each instance (a VM's RAM).")
@click.option("--network", default="none", show_default=True,
              help="Network of each instance (none: startup is the kind's, not the bridge's).")
@click.option("--cgroup-parent", metavar="PATH",
              help="Cgroup the instances nest in (default /ctr; 'self': ctr's own).")
@click.option("--max-start-ms", multiple=True, metavar="KIND=MS",
              help="Fail (exit 1) when KIND's median start-to-first-output exceeds MS.")
@click.option("--json", "json_path", metavar="FILE", help="Write the results as JSON.")
@click.option("--junit", "junit_path", metavar="FILE",
              help="Write JUnit XML: a testcase per probe per kind and per threshold.")
@click.option("--plot", "plot_path", metavar="FILE.png|FILE.svg",
              help="Draw the startup time distribution per kind and phase.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              help="What goes to stdout.")
@click.option("--probe", "only_probes", multiple=True, metavar="NAME",
              help="Run only this probe (repeatable).")
@click.option("--no-probes", is_flag=True, help="Skip the isolation probes.")
@click.option("--no-memory", is_flag=True, help="Skip the memory measurement.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def bench(obj, fmt, no_probes, no_memory, command, **opts):
    """Compare startup, memory and isolation of containers and VMs.

    Runs `-- CMD...` (default: echo ready) as each kind; exits 1 when a
    threshold is missed or a probe finds the instance exposed where it should
    be isolated."""
    from ctr import __version__
    from ctr.bench import harness, report
    from ctr.cli.context import progress

    config = harness.configure(command=command[1:] if command[:1] == ("--",) else command,
                               probes=not no_probes, measure_memory=not no_memory, **opts)
    json_path, junit_path, plot_path = (config.outputs.get(k) for k in ("json", "junit", "plot"))
    if plot_path:
        report.check_plot_available()
    harness.prepare(config, obj.root, progress=progress)
    show, clear = _progress_bar()
    try:
        raw = harness.Bench(config, obj.root, progress=show).run()
    finally:
        clear()
    doc = report.document(config, raw, version=__version__,
                          host=harness.host_facts(config.kinds))
    text = json.dumps(doc, indent=2) + "\n"
    if json_path:
        with open(json_path, "w") as f:
            f.write(text)
    if junit_path:
        with open(junit_path, "w") as f:
            f.write(report.junit(doc))
    if plot_path:
        report.plot(doc, plot_path)
    click.echo(text if fmt == "json" else report.table(doc), nl=fmt != "json")
    for line in doc["failures"]:
        click.echo(f"ctr: bench: {line}", err=True)
    return 0 if doc["ok"] else 1
