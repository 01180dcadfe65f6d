"""The child-to-parent report: how a process ctr started tells its parent that
a step failed (runc's nsexec sync messages, reduced to the failure).

The channel is a pipe whose write end the child holds close-on-exec:

    EOF, nothing written   the child exec'd its program (the pipe closed with the exec)
    one JSON object        {"step": S, "errno": N, "message": M, "code": C}

    step     one of the names below: what the child was doing
    errno    the failed call's errno, 0 when there is none
    message  one line for the user, complete (the step is already in it where it helps)
    code     the exit status ctr gives: 125 ctr, 126 cannot invoke, 127 not found

Writers: the container's init and `exec`'s join (ctr.namespaces), the exec stub
(ctr/native/execstub.c: the same schema built in C, step "exec"), the VM's
launcher (ctr.drivers.vm), and a detached instance's monitor (ctr.monitor),
which reports to the CLI. The monitor does not exec, so an EOF from it proves
nothing: once the instance runs it says so, step STARTED with code 0 and one
more field, "pid": the instance's. Reader: `read`.
"""

import json
import os

from ctr.errors import EXIT_CTR, StartError
from ctr.process import InitFailure

# -- steps: what the child was doing; the text prefixes an unexpected error's message
WAIT = "wait"
CGROUP = "cgroup"  # the init moving itself into its v1 cgroups (ctr.cgroups: join_self)
CGROUP_NS = "cgroupns"
SECCOMP = "seccomp"
NETNS = "netns"
JOIN = "join"
ROOTFS = "rootfs"
NETWORK = "network"
HOSTNAME = "hostname"
HOOKS = "hooks"  # an OCI bundle's createContainer and startContainer hooks
PIVOT_ROOT = "pivot_root"
PROCESS = "process"
ULIMITS = "ulimits"
PRIVILEGES = "privileges"
EXEC = "exec"  # the command's execve, in ctr-exec (execstub.c) or just before it
QEMU = "qemu"  # the VM's launcher, until QEMU's execve
MONITOR = "monitor"  # a detached start, as its monitor saw it
STARTED = "started"  # the monitor's word that the instance runs: code 0

DOING = {
    WAIT: "waiting for the parent",
    CGROUP: "joining the cgroup",
    CGROUP_NS: "entering the cgroup namespace",
    SECCOMP: "building the seccomp filter",
    NETNS: "joining the network namespace",
    JOIN: "joining the namespaces",
    ROOTFS: "preparing the root filesystem",
    NETWORK: "setting up the network",
    HOSTNAME: "setting the hostname",
    HOOKS: "running the hooks",
    PIVOT_ROOT: "pivot_root",
    PROCESS: "setting up the process",
    ULIMITS: "setting the ulimits",
    PRIVILEGES: "dropping privileges",
    EXEC: "executing the command",
    QEMU: "launching QEMU",
    MONITOR: "monitor",
    STARTED: "started",
}


class Report:
    """What a child reported: a failed step, or the monitor's STARTED."""

    __slots__ = ("step", "errno", "message", "code", "pid")

    def __init__(self, step, message, errno=0, code=EXIT_CTR, pid=None):
        self.step, self.message, self.errno, self.code = step, message, errno, code
        self.pid = pid  # STARTED only

    def error(self, what=None):
        """The StartError the parent raises: "WHAT: MESSAGE"."""
        return StartError(f"{what}: {self.message}" if what else self.message, self.code,
                          self.errno)

    def __repr__(self):
        return (f"Report(step={self.step!r}, message={self.message!r}, errno={self.errno}, "
                f"code={self.code})")


def encode(step, message, errno=0, code=EXIT_CTR, pid=None):
    msg = {"step": step, "errno": errno, "message": message, "code": code}
    if pid is not None:
        msg["pid"] = pid
    return json.dumps(msg).encode()


def write(fd, step, message, errno=0, code=EXIT_CTR, pid=None):
    """The one writer. A parent that went away is not an error of the child's."""
    try:
        os.write(fd, encode(step, message, errno, code, pid))
    except OSError:
        pass


def write_failure(fd, err, step):
    """The child's report of the exception that ended `step`. An InitFailure
    speaks for itself; anything else is prefixed with what the step was doing."""
    doing = DOING.get(step, step)
    if isinstance(err, InitFailure):
        write(fd, step, str(err), err.errno, err.code)
    elif isinstance(err, OSError):
        where = f": {err.filename}" if err.filename else ""
        write(fd, step, f"{doing}: {err.strerror}{where}", err.errno or 0)
    else:
        write(fd, step, f"{doing}: {type(err).__name__}: {err}")


def read(fd):
    """The one reader, in the parent: None at EOF with nothing written (the
    child exec'd), else the Report. Reads until EOF; does not close `fd`."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    if not chunks:
        return None
    try:
        msg = json.loads(b"".join(chunks).decode(errors="replace"))
        return Report(msg.get("step"), msg.get("message", "unknown error"),
                      msg.get("errno", 0), msg.get("code", EXIT_CTR), msg.get("pid"))
    except (ValueError, AttributeError):
        return Report(None, "the child process sent a garbled report")
