"""ctr's command line: parse, call the layer below, print. No logic here.

Every error reaches the user as one line, `ctr: error: ...`, with an exit code
from ctr.errors (125 for ctr's own failures and refused input); --debug shows
the traceback.
"""

import os
import sys

import click

from ctr.cli.context import Context
from ctr.errors import EXIT_CTR, CtrError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="CTR_ROOT", default=None, metavar="DIR",
              help="State root (default /var/lib/ctr; env CTR_ROOT).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="ctr", prog_name="ctr")
@click.pass_context
def cli(ctx, root, debug):
    """Run images as containers or VMs: one CLI, one state store."""
    ctx.obj = Context(root, debug)


def _register():
    from ctr.cli import (
        archives,
        attach,
        bench,
        completion,
        cp,
        events,
        generate,
        habits,
        health,
        images,
        instances,
        kernels,
        networks,
        ps,
        rename,
        system,
        volumes,
    )

    instances.register(cli)
    ps.register(cli)
    habits.register(cli)
    images.register(cli)
    archives.register(cli)
    networks.register(cli)
    kernels.register(cli)
    bench.register(cli)
    generate.register(cli)
    system.register(cli)
    events.register(cli)
    health.register(cli)
    attach.register(cli)
    cp.register(cli)
    rename.register(cli)
    volumes.register(cli)
    completion.register(cli)
    completion.attach(cli)


_register()


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
    sys.exit(rv if isinstance(rv, int) else 0)
