"""The state root: instance records, locks, atomic writes, listing, reconciling.

Layout under the root (default /var/lib/ctr, --root or CTR_ROOT to override):

    images/NAME/{image.json, rootfs/}     a local image (recipe, import); a pulled
    images/r-<hash>/image.json           one's layers are in layers/ (ctr.images)
    layers/sha256/<diff id>/  blobs/  locks/
    instances/NAME/{spec.json, state.json, lock, log, upper/, work/, rootfs/, lower/}

A record is written atomically (temp file, fsync, rename), so a crash leaves
either the old or the new file. A record whose process died
without anyone noticing (kill -9 of ctr, of the monitor, a host crash) is
reconciled to `stopped` the next time anyone reads it.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os

from ctr.errors import Conflict, NotFound, StateError
from ctr.revert import Reverter

DEFAULT_ROOT = "/var/lib/ctr"

CREATED, RUNNING, PAUSED, STOPPED = "created", "running", "paused", "stopped"
RESTARTING = "restarting"  # exited; its monitor starts it again after a backoff
CORRUPT = "corrupt"


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def atomic_write_json(path, data):
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_json(path, what):
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise StateError(f"{what} is corrupt ({path}): {err}") from err
    if not isinstance(data, dict):
        raise StateError(f"{what} is corrupt ({path}): not a JSON object")
    return data


def proc_starttime(pid):
    """The start time of a process in clock ticks since boot, or None if it is gone.

    Together with the pid it names one process for good: a recycled pid has a
    different start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain anything: split after it.
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def alive(pid, starttime):
    return bool(pid) and proc_starttime(pid) == starttime


def running_record(store, name, what):
    """(record, state) of instance `name`, which `what` (an option such as
    --network container:NAME) needs running: NotFound or Conflict otherwise."""
    try:
        target = store.record(name)
        state = target.read_state()
    except NotFound:
        raise NotFound(f"{what}: no such instance") from None
    if state["status"] not in (RUNNING, PAUSED) or not alive(state.get("pid"),
                                                             state.get("starttime")):
        raise Conflict(f"{what}: {name} is not running")
    return target, state


def _lost(state):
    """Whether nobody will ever record how this instance ended. One whose process
    just exited is not lost while its reaper (monitor, or ctr in the foreground)
    lives: it is recording the exit status right now."""
    if state["status"] in (RUNNING, PAUSED):
        return not alive(state.get("pid"), state.get("starttime")) and not alive(
            state.get("reaper_pid"), state.get("reaper_starttime"))
    if state["status"] == RESTARTING:
        return not alive(state.get("reaper_pid"), state.get("reaper_starttime"))
    return False


class Store:
    def __init__(self, root=None):
        self.root = os.path.abspath(root or os.environ.get("CTR_ROOT") or DEFAULT_ROOT)
        self.instances_dir = os.path.join(self.root, "instances")
        self.images_dir = os.path.join(self.root, "images")

    def ensure(self):
        """Create the state root if needed and check that it is writable."""
        try:
            os.makedirs(self.instances_dir, 0o711, exist_ok=True)
            os.makedirs(self.images_dir, 0o711, exist_ok=True)
            probe = os.path.join(self.instances_dir, f".probe.{os.getpid()}")
            os.mkdir(probe)
            os.rmdir(probe)
        except OSError as err:
            raise StateError(
                f"state root {self.root} is not usable: {err.strerror or err}"
            ) from err
        return self

    # -- instances -------------------------------------------------------------

    def create_record(self, spec):
        """Make the record of a new instance; the name must be free."""
        self.ensure()
        path = os.path.join(self.instances_dir, spec.name)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise Conflict(f"the name {spec.name!r} is already in use") from None
        rec = Record(self, spec.name)
        with Reverter() as revert:
            revert.add(rec.remove)
            for sub in ("upper", "work", "rootfs"):
                os.mkdir(os.path.join(path, sub), 0o755)
            atomic_write_json(rec.spec_path, spec.to_dict())
            atomic_write_json(rec.state_path, {"status": CREATED, "created": now(),
                                               "id": spec.id})
            revert.success()
        return rec

    def record(self, name):
        path = os.path.join(self.instances_dir, name)
        if "/" in name or name.startswith(".") or not os.path.isdir(path):
            raise NotFound(f"no such instance: {name}")
        return Record(self, name)

    def records(self):
        try:
            names = os.listdir(self.instances_dir)
        except FileNotFoundError:
            return []
        return [Record(self, n) for n in sorted(names) if not n.startswith(".")]

    def listing(self):
        """[(record, spec or None, state)], each state reconciled; a corrupt
        record is listed, not fatal."""
        out = []
        for rec in self.records():
            try:
                out.append((rec, rec.spec, rec.state()))
            except StateError as err:
                out.append((rec, None, {"status": CORRUPT, "error": str(err)}))
            except NotFound:
                continue  # removed while we listed
        return out


class Record:
    """One instance on disk. Reads are lazy; writes go through `update_state`."""

    def __init__(self, store, name):
        self.store = store
        self.name = name
        self.dir = os.path.join(store.instances_dir, name)
        self.spec_path = os.path.join(self.dir, "spec.json")
        self.state_path = os.path.join(self.dir, "state.json")
        self.lock_path = os.path.join(self.dir, "lock")
        self.log_path = os.path.join(self.dir, "log")
        self.upper = os.path.join(self.dir, "upper")
        self.work = os.path.join(self.dir, "work")
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.lower = os.path.join(self.dir, "lower")  # --userns=auto: the shifted image
        self._spec = None

    @property
    def spec(self):
        if self._spec is None:
            from ctr.spec import InstanceSpec

            data = self._read(self.spec_path, "spec")
            try:
                self._spec = InstanceSpec.from_dict(data)
            except (KeyError, TypeError, ValueError) as err:
                raise StateError(f"the spec of {self.name} is corrupt: {err}") from err
        return self._spec

    def with_spec(self, spec):
        """The same record as one run sees it: `spec` instead of the one on disk
        (run-time additions such as the notify relay's bind); nothing is written."""
        import copy

        other = copy.copy(self)
        other._spec = spec
        return other

    def write_spec(self, spec):
        """Replace the spec (ctr update); the caller holds the lock."""
        atomic_write_json(self.spec_path, spec.to_dict())
        self._spec = spec

    def _read(self, path, what):
        try:
            return read_json(path, f"the {what} of {self.name}")
        except FileNotFoundError:
            raise StateError(f"the {what} of {self.name} is missing ({path})") from None

    def read_state(self):
        state = self._read(self.state_path, "state")
        if not isinstance(state.get("status"), str):
            raise StateError(f"the state of {self.name} is corrupt: no status")
        return state

    @contextlib.contextmanager
    def lock(self):
        """The per-instance lock, held only for state transitions, never while running."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise NotFound(f"no such instance: {self.name}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def update_state(self, **changes):
        """Read-modify-write the state under the lock; returns the new state."""
        with self.lock():
            state = self.read_state()
            state.update(changes)
            self.write_state(state)
        return state

    def write_state(self, state):
        try:
            atomic_write_json(self.state_path, state)
        except FileNotFoundError:
            raise NotFound(f"no such instance: {self.name}") from None

    def state(self):
        """The state, reconciled with the kernel: a dead process is never `running`,
        and an instance whose monitor died is not `restarting`."""
        state = self.read_state()
        if _lost(state):
            with self.lock():
                state = self.read_state()
                if _lost(state):
                    if state["status"] == RESTARTING:
                        why = "its monitor died while it waited to restart"
                    elif state.get("stop_requested"):
                        why = "stopped, but its monitor was gone: the exit status is unknown"
                    else:
                        why = "the instance died while nobody watched it"
                    reaped = self._reaped(state)
                    state.update(status=STOPPED, exit_code=state.get("exit_code") if
                                 state["status"] == RESTARTING else None,
                                 reason=f"lost: {why}", finished=state.get("finished") or now())
                    if reaped:  # its native monitor recorded the end, then died
                        ended = "signalled" if reaped["exit_code"] > 128 else "exited"
                        state.update(exit_code=reaped["exit_code"], finished=reaped["finished"],
                                     reason=f"{ended} (recorded by its monitor, which died "
                                            "before releasing what the run held)")
                    if reaped:
                        from ctr import events

                        events.container(self, "die", exitCode=reaped["exit_code"])
                    elif state.get("exit_code") is None:
                        from ctr import events

                        events.container(self, "die", reason="lost")
                    self.write_state(state)
        return state

    def _reaped(self, state):
        """The end of the run `state` describes as ctr-monitor recorded it
        (instances/NAME/exit.json: pid, exit_code, finished), or None."""
        if state["status"] not in (RUNNING, PAUSED) or not state.get("pid"):
            return None
        try:
            reaped = read_json(os.path.join(self.dir, "exit.json"), "exit record")
        except (OSError, StateError):
            return None
        if reaped.get("pid") != state["pid"] or not isinstance(reaped.get("exit_code"), int) \
                or reaped["exit_code"] < 0:
            return None
        return reaped

    def remove(self):
        import shutil

        try:
            shutil.rmtree(self.dir)
        except FileNotFoundError:
            pass
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise StateError(f"cannot remove {self.dir}: {err.strerror}") from err
