"""`ctr attach NAME`: a detached instance's output from now on, and its stdin
when it was run with -i (ctr.attach)."""

import os
import signal

import click

from ctr.cli.context import pass_ctx

PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2)


@click.command()
@click.option("--no-stdin", is_flag=True, help="Do not send stdin.")
@click.option("--detach-keys", metavar="KEYS",
              help="The keys that detach, leaving the instance running (default "
                   "ctrl-p,ctrl-q).")
@click.option("--sig-proxy", type=click.BOOL, default=True, show_default=True,
              help="Pass the signals ctr gets (SIGINT, SIGTERM...) to the instance; not "
                   "with -t, where Ctrl-C is a key the instance reads.")
@click.argument("name")
@pass_ctx
def attach(obj, no_stdin, detach_keys, sig_proxy, name):
    """Attach to a running instance: its output from now on (as logs -f), and
    with -i (run -d -i) its stdin. Returns with its exit status when it stops;
    the detach keys leave it running."""
    from ctr import attach as at
    from ctr.errors import Conflict

    keys = at.parse_detach_keys(detach_keys)
    rec = obj.store.record(name)
    state = rec.state()
    if state["status"] not in ("running", "paused", "restarting"):
        raise Conflict(f"instance {name} is {state['status']}: start it first "
                       "(only a running instance can be attached)")
    spec = rec.spec
    if sig_proxy and not spec.tty:
        def proxy(sig, _frame):
            try:
                obj.instances.kill(name, sig)
            except Exception:  # noqa: BLE001 - gone meanwhile: nothing to pass it to
                pass
        for sig in PROXIED:
            signal.signal(sig, proxy)
    how = at.session(rec, state, send_stdin=spec.interactive and not no_stdin,
                     detach_keys=keys)
    if how == "detached":
        return 0
    final = rec.state() if os.path.isdir(rec.dir) else {}
    code = final.get("exit_code")
    return code if code is not None else 0

