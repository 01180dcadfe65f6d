"""Shell completion for bash, zsh and fish (click's own), with instance, image,
network and volume names completed from the state root. `ctr completion SHELL` prints
the script; `make install` puts it where each shell looks."""

import os

import click

SHELLS = ("bash", "zsh", "fish")
# Which names an argument takes: by the group it is in, else an instance's.
FOLDERS = {"network": ("networks", ".json"), "volume": ("volumes", ""), "kernel": (None, "")}


def _state_root(ctx):
    from ctr.store import DEFAULT_ROOT

    return ctx.find_root().params.get("root") or os.environ.get("CTR_ROOT") or DEFAULT_ROOT


def names_in(folder, suffix=""):
    """A click shell_complete function listing the entries of STATE_ROOT/folder."""

    def complete(ctx, _param, incomplete):
        try:
            entries = os.listdir(os.path.join(_state_root(ctx), folder))
        except OSError:
            return []
        names = (e.removesuffix(suffix) for e in entries
                 if not e.startswith(".") and e.endswith(suffix))
        return sorted(n for n in names if n.startswith(incomplete) and n != "leases")

    return complete


def image_names(ctx, _param, incomplete):
    """The images' names as `ctr image ls` shows them (references too)."""
    from ctr.images.store import ImageStore
    from ctr.store import Store

    try:
        names = [img.get("name", "") for img in ImageStore(Store(_state_root(ctx))).list()]
    except Exception:  # noqa: BLE001 - completion never fails the shell
        return []
    return sorted(n for n in names if n.startswith(incomplete))


def attach(group, folder=("instances", "")):
    """Give every NAME/NAMES argument below `group` its names; an IMAGE argument
    the images'."""
    for name, cmd in getattr(group, "commands", {}).items():
        if isinstance(cmd, click.Group):
            attach(cmd, "image" if name == "image" else FOLDERS.get(name, folder))
            continue
        for param in cmd.params:
            if not isinstance(param, click.Argument) or param._custom_shell_complete:
                continue
            if param.name in ("name", "names", "src") and folder == "image":
                param._custom_shell_complete = image_names
            elif param.name in ("name", "names", "src") and folder[0]:
                param._custom_shell_complete = names_in(*folder)
            elif param.name == "image":
                param._custom_shell_complete = image_names


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx, shell):
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash: ctr completion bash > /etc/bash_completion.d/ctr
    zsh:  ctr completion zsh > /usr/share/zsh/vendor-completions/_ctr
    fish: ctr completion fish > /usr/share/fish/vendor_completions.d/ctr.fish
    """
    from click.shell_completion import get_completion_class

    comp = get_completion_class(shell)(ctx.find_root().command, {}, "ctr", "_CTR_COMPLETE")
    click.echo(comp.source())


def register(group):
    group.add_command(completion)
