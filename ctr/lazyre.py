"""Regular expressions compiled on first use.

A module-level re.compile runs at every import, used or not: the start path
imports some twenty patterns (names, sizes, ports, hostnames, image
references...) and a plain `ctr run` uses a few. `compile` takes re.compile's
arguments and returns a stand-in with the compiled pattern's methods and
attributes (fullmatch, match, search, sub, pattern...), compiled at the first
use of any of them.
"""

import re


class LazyPattern:
    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern, flags=0):
        self._args = (pattern, flags)
        self._compiled = None

    def __getattr__(self, name):
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return getattr(self._compiled, name)

    def __repr__(self):
        return f"lazyre.compile({self._args[0]!r})"


def compile(pattern, flags=0):  # noqa: A001 - re.compile's name and arguments
    return LazyPattern(pattern, flags)
