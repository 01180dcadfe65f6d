"""The errors ctr raises. Library code raises; only the CLI prints them.

Exit codes (docker's table):
  125  ctr itself failed, or the input was refused (EXIT_CTR)
  126  the command cannot be invoked (not executable, permission denied)
  127  the command was not found
  else the instance's own exit status (128+N when killed by signal N)
"""

EXIT_CTR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class CtrError(Exception):
    """An error with a one-line message for the user and an exit code."""

    exit_code = EXIT_CTR

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InvalidSpec(CtrError):
    """A user input was refused (bad name, bad -e, bad -w, unknown image...)."""


class NotFound(CtrError):
    """No such instance or image."""


class Conflict(CtrError):
    """The request conflicts with the current state (name in use, already running...)."""


class StateError(CtrError):
    """The state root is unusable or a record is corrupt."""


class StartError(CtrError):
    """The instance could not be started; carries the errno the init reported."""

    def __init__(self, message, exit_code=None, errno=0):
        super().__init__(message, exit_code)
        self.errno = errno


class CgroupError(CtrError):
    """A cgroup file could not be read or written, or a cgroup folder made or
    removed: the message names the operation, the file and the value. `errno`
    is the kernel's (0 when none), for the callers that retry on EBUSY."""

    def __init__(self, message, *, op=None, path=None, value=None, errno=0):
        super().__init__(message)
        self.op = op
        self.path = path
        self.value = value
        self.errno = errno
