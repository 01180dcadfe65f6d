"""ctr's command line: parse, call the layer below, print. No logic here.

Every error reaches the user as one line, `ctr: error: ...`, with an exit code
from ctr.errors (125 for ctr's own failures and refused input); --debug shows
the traceback.
"""

import gc
import os
import sys

# The garbage collector walked click's objects again and again as they were made
# (~6 ms of a start): it waits until the import is done, and what was imported,
# alive as long as the process, is then frozen (gc.freeze), out of its walks.
_GC_ENABLED = gc.isenabled()
gc.disable()

import click  # noqa: E402

from ctr.cli.context import Context  # noqa: E402
from ctr.errors import EXIT_CTR, CtrError  # noqa: E402

if _GC_ENABLED:
    gc.freeze()
    gc.enable()

# Every verb: its name, and where it is defined (a module of ctr.cli and the
# click command's attribute in it). A verb's module is imported only when that
# verb runs (`ctr run` imports ctr.cli.run and nothing of the others), or
# when help or completion lists them all. A new verb is one line here.
COMMANDS = {
    "run": "run:run", "create": "instances:create", "start": "instances:start",
    "stop": "instances:stop", "kill": "instances:kill", "rm": "instances:rm",
    "ls": "instances:ls", "inspect": "instances:inspect", "logs": "instances:logs",
    "exec": "instances:exec_", "update": "instances:update", "pause": "instances:pause",
    "unpause": "instances:unpause", "gc": "instances:gc",
    "stats": "stats:stats",
    "ps": "ps:ps",
    "wait": "habits:wait", "restart": "habits:restart", "top": "habits:top",
    "port": "habits:port", "diff": "habits:diff", "version": "habits:version",
    "info": "habits:info",
    "events": "events:events",
    "healthcheck": "health:healthcheck",
    "attach": "attach:attach",
    "image": "archives:image", "pull": "images:pull",
    "load": "archives:load", "save": "archives:save", "commit": "archives:commit",
    "export": "archives:export",
    "volume": "volumes:volume", "cp": "cp:cp", "rename": "rename:rename",
    "network": "networks:network",
    "kernel": "kernels:kernel",
    "bench": "bench:bench",
    "generate": "generate:generate",
    "system": "system:system",
    "completion": "completion:completion",
}


class LazyGroup(click.Group):
    """click's documented lazy-loading group: a verb's command is imported from
    COMMANDS when it is asked for."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, cmd_name):
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        import importlib

        module, attr = where.split(":")
        cmd = getattr(importlib.import_module(f"ctr.cli.{module}"), attr)
        if "_CTR_COMPLETE" in os.environ:  # the shell asks: names for its arguments
            from ctr.cli.completion import attach

            attach(cmd, cmd_name)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="CTR_ROOT", default=None, metavar="DIR",
              help="State root (default /var/lib/ctr; env CTR_ROOT).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="ctr", prog_name="ctr")
@click.pass_context
def cli(ctx, root, debug):
    """Run images as containers or VMs: one CLI, one state store."""
    ctx.obj = Context(root, debug)


def _fail(message, code=EXIT_CTR):
    message = " ".join(str(message).split()) or "unknown error"
    click.echo(f"ctr: error: {message}", err=True)
    return code


def _verb_given(args):
    rest = list(args)
    while rest and rest[0].startswith("-"):
        opt = rest.pop(0)
        if opt == "--root" and rest:
            rest.pop(0)
        elif opt not in ("--debug",) and not opt.startswith("--root="):
            return True  # an option of ctr's own (--help, --version) or a mistake
    return bool(rest)


def _exit(code):
    """For ctr's own process: sys.exit(code), without the interpreter's teardown
    when nothing needs it: freeing every module and object costs a short command
    like `ctr run --rm` ~10 ms. The streams are flushed first; the normal exit is
    kept when a flush fails (it reports that), when a thread that is not a daemon
    still runs (the exit waits for it), or when an atexit function was registered."""
    import atexit
    import threading

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if atexit._ncallbacks() or any(not t.daemon for t in others):
        sys.exit(code)
    os._exit(code)


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if "_CTR_COMPLETE" in os.environ:  # the shell asks for completions
        cli.main(args=argv, prog_name="ctr")
    if not _verb_given(args):
        click.echo(cli.get_help(click.Context(cli, info_name="ctr")))
        sys.exit(0)
    try:
        rv = cli.main(args=argv, prog_name="ctr", standalone_mode=False)
    except CtrError as err:
        if debug:
            raise
        sys.exit(_fail(err, err.exit_code))
    except click.ClickException as err:
        if type(err).__name__.startswith("NoArgsIsHelp"):  # `ctr` alone: help, not an error
            click.echo(err.ctx.get_help() if getattr(err, "ctx", None) else str(err))
            sys.exit(0)
        message = err.format_message()
        sys.exit(_fail(message[:1].lower() + message[1:]))
    except click.exceptions.Abort:
        sys.exit(_fail("aborted", 130))
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (ctr ls | head): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as err:
        if debug:
            raise
        where = f" ({err.filename})" if err.filename else ""
        sys.exit(_fail(f"{err.strerror or err}{where}"))
    code = rv if isinstance(rv, int) else 0
    if argv is None:  # ctr's own process (its console script), not a caller's
        _exit(code)
    sys.exit(code)
