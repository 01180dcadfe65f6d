"""What every verb shares: the context object (the state root, the store, the
image store and the instances, each made on first use) and progress output."""

import sys

import click


class Context:
    def __init__(self, root, debug):
        self.root = root
        self.debug = debug
        self._store = self._images = self._instances = None

    @property
    def store(self):
        if self._store is None:
            from ctr.store import Store

            self._store = Store(self.root)
        return self._store

    @property
    def images(self):
        if self._images is None:
            from ctr.images.store import ImageStore

            self._images = ImageStore(self.store)
        return self._images

    @property
    def instances(self):
        if self._instances is None:
            from ctr.instance import Instances

            self._instances = Instances(self.store, self.images)
        return self._instances


pass_ctx = click.pass_obj


def progress(message):
    """Progress for people: shown on a terminal, quiet when piped."""
    if sys.stderr.isatty():
        click.echo(f"ctr: {message}...", err=True)


def human_size(size):
    """Bytes as people read them: 512B, 1.5kB, 12.3MB (powers of 1000, as docker)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return str(size)


def stacked(f, options):
    """`f` under click decorators given top first, as if written above it."""
    for opt in reversed(options):
        f = opt(f)
    return f
