"""The command's process, as a child of ctr prepares it before exec, in a
container (ctr.namespaces) or for a VM's guest (ctr.drivers.vm): the error a
step raises to be reported as is, HOME in the environment, the search of PATH.

Plain Python with no import of ctr's heavier modules: the container's init
still calls these after pivot_root, where ctr's own files are out of reach.
"""

import errno
import os

from ctr.errors import EXIT_CANNOT_INVOKE, EXIT_CTR, EXIT_NOT_FOUND


class InitFailure(Exception):
    """A step's failure with a message for the user as it stands, the errno of
    the call that failed and the exit code ctr gives (see ctr.report)."""

    def __init__(self, message, errno=0, code=EXIT_CTR):
        super().__init__(message)
        self.errno = errno
        self.code = code


def env_home(env, home):
    """HOME from the user's entry, unless the environment sets it."""
    if any(e.startswith("HOME=") for e in env):
        return env
    return [*env, f"HOME={home}"]


def find_command(name, env):
    """execvpe's search of PATH (from `env`, a dict): the first executable
    file; EACCES when only files that are not executable were found."""
    if "/" in name:
        return name  # what is wrong with it, the stub's execve tells
    denied = False
    for d in (env.get("PATH") or os.defpath).split(":"):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return path
            denied = True
    if denied:
        raise InitFailure(f"{name}: permission denied", errno.EACCES, EXIT_CANNOT_INVOKE)
    raise InitFailure(f"{name}: executable file not found in $PATH", errno.ENOENT,
                      EXIT_NOT_FOUND)
