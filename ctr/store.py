"""The state root: instance records, locks, atomic writes, listing, reconciling.

Layout under the root (default /var/lib/ctr, --root or CTR_ROOT to override):

    images/NAME/{image.json, rootfs/}     a local image (recipe, import); a pulled
    images/r-<hash>/image.json           one's layers are in layers/ (ctr.images)
    layers/sha256/<diff id>/  layers/shifted/  blobs/  locks/
    instances/NAME/{spec.json, state.json, lock, log, upper/, work/, rootfs/, layers/}

A record is written atomically (temp file, fsync, rename), so a crash leaves
either the old or the new file (not synced for an instance run with --rm,
whose record goes when its run ends). A record whose process died
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
RENAMED = "renames"  # ROOT/renames/ID: the new name of a renamed instance


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def atomic_write_json(path, data, durable=True):
    """Replace `path` by a temp file and a rename: a reader sees the old or the
    new file. `durable`: synced first, so a host crash leaves one of them too
    (what only lives as long as processes do, like a lease, needs no sync)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def du(path):
    """Bytes on disk under `path` (st_blocks, each inode once, never following
    links): what `system df` shows and a prune frees."""
    total, seen = 0, set()
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


@contextlib.contextmanager
def flocked(path):
    """An exclusive flock on the file `path` (made if missing) while inside."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
        self._ensured = False

    def ensure(self):
        """Create the state root if needed and check that it is writable (once
        per Store: a run calls it from several layers)."""
        if self._ensured:
            return self
        try:
            os.makedirs(self.instances_dir, 0o711, exist_ok=True)
            os.makedirs(self.images_dir, 0o711, exist_ok=True)
            # access(2) answers for permissions and a read-only filesystem
            # without making a folder; when it says no, the probe says why.
            if not os.access(self.instances_dir, os.W_OK | os.X_OK):
                probe = os.path.join(self.instances_dir, f".probe.{os.getpid()}")
                os.mkdir(probe)
                os.rmdir(probe)
        except OSError as err:
            raise StateError(
                f"state root {self.root} is not usable: {err.strerror or err}"
            ) from err
        self._ensured = True
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
            durable = not spec.remove  # see Record.write_state
            atomic_write_json(rec.spec_path, spec.to_dict(), durable)
            atomic_write_json(rec.state_path, {"status": CREATED, "created": now(),
                                               "id": spec.id}, durable)
            revert.success()
        return rec

    def rename_record(self, rec, new):
        """Move a record to the name `new` (the caller holds its lock and has
        checked the name): refused if it is taken. A note by id says where it
        went, for whoever holds a Record of the old name (its reaper, a health
        check, a CLI waiting for its lock: Record._follow)."""
        path = os.path.join(self.instances_dir, new)
        try:
            os.mkdir(path, 0o700)  # claimed: a create of the same name fails now
        except FileExistsError:
            raise Conflict(f"the name {new!r} is already in use") from None
        try:
            self._note_rename(rec.spec.id, new)
            os.rename(rec.dir, path)  # onto the empty folder: one step
        except BaseException:
            os.rmdir(path)
            with contextlib.suppress(OSError):
                self._note_rename(rec.spec.id, rec.name)  # it is where it was
            raise
        return Record(self, new)

    def _note_rename(self, instance_id, name):
        notes = os.path.join(self.root, RENAMED)
        os.makedirs(notes, 0o700, exist_ok=True)
        note = os.path.join(notes, instance_id)
        with open(note + ".tmp", "w") as f:
            f.write(name + "\n")
        os.rename(note + ".tmp", note)

    def record(self, name, by_id=True):
        """The record named `name`, else (as docker, unless not `by_id`) the one
        whose id is or starts with it."""
        path = os.path.join(self.instances_dir, name)
        if "/" in name or name.startswith(".") or not os.path.isdir(path):
            rec = self._by_id(name) if by_id else None
            if rec is None:
                raise NotFound(f"no such instance: {name}")
            return rec
        return Record(self, name)

    def _by_id(self, prefix):
        """The record whose id starts with `prefix` (hex): only when no name
        matched, so naming an instance never reads the others."""
        if not 0 < len(prefix) <= 64 or prefix.strip("0123456789abcdef"):
            return None
        found = []
        for rec in self.records():
            try:
                with open(rec.spec_path, "rb") as f:
                    ident = json.load(f).get("id") or ""
            except (OSError, ValueError, AttributeError):
                continue
            if ident.startswith(prefix):
                found.append(rec)
        if len(found) > 1:
            raise Conflict(f"{prefix} is the start of {len(found)} instances' ids: "
                           "give more of it, or a name")
        return found[0] if found else None

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
        self._at(name)
        self._spec = None
        self._id = self._ino = None  # what _follow knows it by, once its spec was read

    def _at(self, name):
        self.name = name
        self.dir = os.path.join(self.store.instances_dir, name)
        self.spec_path = os.path.join(self.dir, "spec.json")
        self.state_path = os.path.join(self.dir, "state.json")
        self.lock_path = os.path.join(self.dir, "lock")
        self.log_path = os.path.join(self.dir, "log")
        self.upper = os.path.join(self.dir, "upper")
        self.work = os.path.join(self.dir, "work")
        self.rootfs = os.path.join(self.dir, "rootfs")
        # --userns=auto without idmapped mounts, in a record made before the
        # shared copies (ctr.userns): its own shifted copy of a one-layer image
        self.lower = os.path.join(self.dir, "lower")

    def _follow(self):
        """After `ctr rename`: a record whose spec was read moves to its new
        name. Its folder is known by inode (a folder of the old name made since
        is another instance's), the new name by the note rename_record left
        under its id. True if it moved."""
        if self._ino is None:
            return False
        try:
            if os.stat(self.dir).st_ino == self._ino:
                return False
        except OSError:
            pass
        try:
            with open(os.path.join(self.store.root, RENAMED, self._id)) as f:
                new = f.read().strip()
        except OSError:
            return False
        if not new or new == self.name or "/" in new or new.startswith("."):
            return False
        self._at(new)
        self._spec = None  # read again: its name changed
        return True

    def current_name(self):
        """The instance's name now (it follows a rename, see _follow)."""
        self._follow()
        return self.name

    def forget_rename(self):
        """The instance is gone: its rename note (if any) goes too."""
        if self._id is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.store.root, RENAMED, self._id))

    @property
    def spec(self):
        if self._spec is None:
            from ctr.spec import InstanceSpec

            ino = None
            with contextlib.suppress(OSError):
                ino = os.stat(self.dir).st_ino
            data = self._read(self.spec_path, "spec")
            try:
                self._spec = InstanceSpec.from_dict(data)
            except (KeyError, TypeError, ValueError) as err:
                raise StateError(f"the spec of {self.name} is corrupt: {err}") from err
            if self._id is None:
                self._id, self._ino = self._spec.id, ino
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
        fd = self._lock_fd()
        try:
            yield
        finally:
            os.close(fd)

    def _lock_fd(self):
        """The lock taken; after a rename (before or while waiting) the one of
        the instance's folder at its new name, never another's."""
        for _ in range(100):
            self._follow()
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                if self._follow():
                    continue
                raise NotFound(f"no such instance: {self.name}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._follow()  # renamed while we waited: the same lock, moved
                if self._ino is None or self._mine(fd):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise NotFound(f"no such instance: {self.name}")

    def _mine(self, fd):
        """Whether the lock `fd` is the one in this instance's folder."""
        try:
            return (os.stat(self.dir).st_ino == self._ino
                    and os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino)
        except FileNotFoundError:
            return True  # removed meanwhile: the caller finds out as before

    def update_state(self, **changes):
        """Read-modify-write the state under the lock; returns the new state."""
        with self.lock():
            state = self.read_state()
            state.update(changes)
            self.write_state(state)
        return state

    def write_state(self, state):
        """Atomic, and synced, but for an instance run with --rm: its record goes
        when its run ends, and a host crash that left a torn one has it listed
        as corrupt, which `ctr rm` removes."""
        durable = self._spec is None or not self._spec.remove
        try:
            atomic_write_json(self.state_path, state, durable)
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
        self.forget_rename()
        try:
            remove_tree(self.dir)
        except OSError as err:
            raise StateError(f"cannot remove {self.dir}: {err.strerror}") from err


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path):
    """rm -rf of a folder of the state root (an instance's record, with what its
    container wrote in upper/): each folder is opened relative to its parent
    and never through a symbolic link, so nothing outside is followed. An
    entry already gone is skipped, not an error: a container's overlay may
    still be tidying its work folder while its record goes. (shutil.rmtree,
    with its archive modules, is a start's dearest import.)"""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        _empty_folder(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)


def _empty_folder(fd):
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        if is_dir:
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                is_dir = False  # replaced meanwhile by a link or a file
            else:
                try:
                    _empty_folder(sub)
                finally:
                    os.close(sub)
        try:
            if is_dir:
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
