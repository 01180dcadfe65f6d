"""Instance drivers: one per kind, behind one protocol, chosen by `load`
(Incus's Instance interface and its load()).

    "container"  ctr.drivers.container: namespaces, cgroup, overlay root, the C clone
    "vm"         ctr.drivers.vm: the same image booted under QEMU (ctr/vm/)

A driver does the kernel's work and nothing else: it writes no state (the
caller, ctr.instance, records what `start` returned and reaps the process),
never prints, and raises ctr's errors (ctr.errors). The steps both kinds take
alike are in ctr.drivers.common. A driver never imports another driver's
module, and `load` imports only the one asked for: a container's start never
loads QEMU's code, nor a VM's the container init's.

`rec` is the instance's record (ctr.store.Record: its spec, its folders) and
`state` the state it recorded at start (pid, starttime, cgroups, net...).
"""

from __future__ import annotations

import importlib
import signal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ctr.errors import StateError

if TYPE_CHECKING:
    from ctr.cgroups import Cgroup

DRIVERS = {"container": ("ctr.drivers.container", "ContainerDriver"),
           "vm": ("ctr.drivers.vm", "VmDriver")}


def load(kind: str) -> Driver:
    """The driver for instances of `kind`. StateError for a kind ctr does not
    know (a record another version wrote)."""
    try:
        module, cls = DRIVERS[kind]
    except KeyError:
        raise StateError(f"unknown instance kind {kind!r}") from None
    return getattr(importlib.import_module(module), cls)()


@runtime_checkable
class ProcessHandle(Protocol):
    """A process ctr runs and waits for: what `Driver.exec` returns (a process
    in the container's namespaces, a session with a VM's agent), and the base
    of what `Driver.start` returns."""

    pid: int | None  # the host's pid; None when the process lives in a guest
    master: int | None  # with -t, the pty's master, which wait() relays and closes

    def send_signal(self, sig: int) -> None:
        """Deliver `sig` to the command. ProcessLookupError when it is gone;
        CtrError when it cannot be reached."""

    def wait(self, stdin: int | None = 0, stdout: int = 1, stderr: int = 2) -> int:
        """Relay what the handle holds (a pty's master, an agent's frames) from
        `stdin` (None: nothing to send) to `stdout` and `stderr`, until the
        command ends; reap it; return its exit status (128+N when killed by
        signal N). StartError when it turns out the command never ran (a VM's
        agent says so only here). Call it once."""


@runtime_checkable
class InstanceProcess(ProcessHandle, Protocol):
    """The instance's main process, what `Driver.start` returns. The caller
    records pid, starttime, cgroup.paths and net, and once the process ended
    destroys the cgroup and detaches the network."""

    pid: int
    starttime: int  # /proc/PID/stat's start time: tells a reused pid from ours
    cgroup: Cgroup  # made by start, with the spec's limits
    net: dict  # the network as attached ({"network": mode, "ip"...}; ctr.net.attach)


@runtime_checkable
class Driver(Protocol):
    kind: str  # the spec's kind this driver runs

    def start(self, rec, lower: str | tuple | None, *, stdio=(None, None, None),
              tty: bool = False, pdeathsig: int | None = None,
              gate: str | None = None, on_root=None) -> InstanceProcess:
        """Start the instance of `rec` on the image root `lower` (its layers as
        ctr.rootfs.mount_overlay takes them; None: an OCI bundle's root, used as
        it is): its network
        planned (an address leased), its cgroup made with the spec's limits, its
        process created and put in both, the network attached. Returns once the
        command runs (exec'd in the container; started by a VM's agent).

        stdio: the (in, out, err) fds the command gets, None for ctr's own;
        tty: a pty for the command (-t); pdeathsig: the signal the process
        gets when its starter dies.
        gate: an OCI runtime's create (containers only): the path of a fifo
        the process opens for writing, after every step but the exec, and
        waits there until someone opens it for reading (runc's exec fifo);
        start then returns once the process waits at the gate.
        on_root: an OCI runtime's create (containers only): called with the
        process's pid once its root is mounted, before its pivot_root, while it
        waits (ctr-oci's prestart and createRuntime hooks); what it raises
        fails the start.

        Raises StartError with the failed step's message, exit code and errno
        (or another CtrError). A failed start leaves nothing behind: no
        process, cgroup, lease, link, rule, mount or open fd."""

    def exec(self, rec, state: dict, *, command: list, env: list, workdir: str,
             user: str | None, tty: bool = False,
             stdio=(None, None, None),
             pdeathsig: int | None = signal.SIGKILL) -> ProcessHandle:
        """Run `command` in the running instance as `user` (-u; None: the spec's)
        in `workdir` with `env` (["K=V", ...]); returns its handle once started.
        pdeathsig: the signal it gets when its starter dies (None: none, for a
        detached exec that outlives its starter: ctr-oci exec -d).
        StartError when it cannot be started (from wait() for a VM, whose agent
        tells it there); nothing is left."""

    def pause(self, rec, state: dict, cgroup: Cgroup) -> None:
        """Stop the instance's processes from running (a container's cgroup is
        frozen; a VM's vCPUs halt). CtrError when it cannot."""

    def resume(self, rec, state: dict, cgroup: Cgroup) -> None:
        """Undo pause. CtrError when it cannot."""

    def describe(self, rec, state: dict) -> dict | None:
        """What the driver knows of the running instance beyond its state, for
        inspect (None: nothing). Never raises for an instance that went away."""

    def signal(self, rec, state: dict, sig: int) -> None:
        """Deliver `sig` to the instance's command (SIGKILL to a VM kills QEMU).
        ProcessLookupError when its process is gone; CtrError when it cannot be
        reached (a VM's agent)."""
