"""ctr-oci's state root (default /run/ctr-oci): one folder per container.

    ROOT/ID/spec.json    the InstanceSpec made from the bundle's config.json
    ROOT/ID/state.json   pid, starttime, bundle, rootfs, created, annotations,
                         cgroups (one folder per hierarchy), paused
    ROOT/ID/exec.fifo    while the container is created: the gate its process
                         waits at (ctr.namespaces); `start` opens it and removes it
    ROOT/ID/lock         flock'ed for every change

The status is read from the kernel, never stored: a process that is gone (or a
zombie) is stopped; a fifo still there is created; then paused or running.
A container is a record for the container driver too (its `spec`, `dir` and
`rootfs`: the bundle's root, used as it is).
"""

import contextlib
import datetime
import fcntl
import json
import os

from ctr.errors import Conflict, NotFound, StateError
from ctr.store import atomic_write_json, read_json

OCI_VERSION = "1.0.2"
DEFAULT_ROOT = "/run/ctr-oci"


def now():
    """RFC 3339 with nanoseconds, as runc writes `created`."""
    t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class Container:
    upper = work = None  # no overlay: the bundle's root is used as it is

    def __init__(self, root, cid):
        self.root = root
        self.id = cid
        self.dir = os.path.join(root, cid)
        self.spec_path = os.path.join(self.dir, "spec.json")
        self.state_path = os.path.join(self.dir, "state.json")
        self.fifo = os.path.join(self.dir, "exec.fifo")
        self._spec = None
        self._state = None

    # -- making and removing --------------------------------------------------------

    def mkdir(self):
        """The folder of a new container; Conflict if the id is taken."""
        os.makedirs(self.root, 0o700, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            raise Conflict(f"container with id {self.id} already exists") from None

    def make(self, spec):
        """spec.json and the exec fifo, in the folder mkdir made."""
        atomic_write_json(self.spec_path, spec.to_dict())
        self._spec = spec
        os.mkfifo(self.fifo, 0o622)
        os.chmod(self.fifo, 0o622)  # writable by the container's user, whoever it is

    def write_spec(self, spec):
        atomic_write_json(self.spec_path, spec.to_dict())
        self._spec = spec

    def remove(self):
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    # -- reading ----------------------------------------------------------------------

    @property
    def spec(self):
        if self._spec is None:
            from ctr.spec import InstanceSpec

            try:
                self._spec = InstanceSpec.from_dict(read_json(self.spec_path, "the spec"))
            except FileNotFoundError:
                raise NotFound("container does not exist") from None
            except (KeyError, TypeError, ValueError) as err:
                raise StateError(f"the spec of {self.id} is corrupt: {err}") from err
        return self._spec

    def with_spec(self, spec):
        """This container as seen with `spec` in place of its own (an exec
        whose process has capabilities of its own); nothing is written."""
        import copy

        view = copy.copy(self)
        view._spec = spec
        return view

    @property
    def rootfs(self):
        return self.spec.oci["root"]

    def state(self):
        """state.json; NotFound (`container does not exist`) when there is none."""
        if self._state is None:
            try:
                self._state = read_json(self.state_path, f"the state of {self.id}")
            except FileNotFoundError:
                raise NotFound("container does not exist") from None
        return self._state

    def write_state(self, state):
        atomic_write_json(self.state_path, state)
        self._state = state

    def status(self):
        from ctr.store import alive

        state = self.state()
        if not alive(state.get("pid"), state.get("starttime")):
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        return "paused" if state.get("paused") else "running"

    def oci_state(self):
        """The runtime-spec's state of the container."""
        state = self.state()
        status = self.status()
        return {"ociVersion": OCI_VERSION, "id": self.id, "status": status,
                "pid": state["pid"] if status != "stopped" else 0,
                "bundle": state["bundle"], "rootfs": state["rootfs"],
                "created": state["created"], "annotations": state.get("annotations") or {},
                "owner": state.get("owner", "")}

    @contextlib.contextmanager
    def lock(self):
        try:
            fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
        except FileNotFoundError:
            raise NotFound("container does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._state = None
            yield
        finally:
            os.close(fd)


def containers(root):
    """Every container under `root`, by id."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [Container(root, n) for n in names if os.path.isdir(os.path.join(root, n))]


def write_pid_file(path, pid):
    """The host pid, digits only, no newline, written atomically (containerd
    parses it with Atoi)."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def dumps(data):
    return json.dumps(data)
