"""The event log of a state root: what happened to instances and images, as
`ctr events` shows it (docker's events: create, start, die, oom, kill, stop,
destroy, pause, unpause, rename, health_status; image pull, load, commit, tag, untag,
delete; volume create, destroy).

Every writer (the CLI, monitors, `ctr healthcheck run`) appends one JSON object
per line to ROOT/events, in docker's shape:

    {"Type": "container", "Action": "die", "Actor": {"ID": ID, "Attributes":
     {"name": "web", "image": "busybox", "exitCode": "0", ...labels}},
     "scope": "local", "time": 1764583200, "timeNano": 1764583200123456789,
     "status": "die", "id": ID, "from": "busybox"}

A record is appended with one write(2) on a descriptor opened with O_APPEND,
so records of concurrent processes never interleave, and it costs a start one
open, write, fstat and close (this module imports nothing but os, json and
time). When the file passes MAX_SIZE after a write, the writer that holds its
flock renames it to events.1 (the previous events.1 goes): the log holds at
most about twice MAX_SIZE. A writer that still has the old file open appends
to events.1, which readers read first.
"""

import json
import os
import time

FILE = "events"
MAX_SIZE = 1 << 20


def path(root):
    return os.path.join(root, FILE)


def files(root):
    """The event files, oldest first."""
    current = path(root)
    return [current + ".1", current]


def record(type_, action, actor_id, attributes, now_ns=None):
    """One event as docker writes it (attribute values are strings)."""
    ns = time.time_ns() if now_ns is None else now_ns
    attrs = {k: str(v) for k, v in attributes.items() if v is not None}
    event = {"Type": type_, "Action": action,
             "Actor": {"ID": actor_id, "Attributes": attrs},
             "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns}
    if type_ == "container":  # docker's older fields, which scripts still read
        event.update(status=action, id=actor_id, **{"from": attrs.get("image", "")})
    return event


def append(root, event, max_size=MAX_SIZE):
    """Append one event to ROOT/events (one write), rotating past max_size.
    Never raises: an event that cannot be written is dropped (a full disk must
    not fail a stop)."""
    line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
    try:
        fd = os.open(path(root), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line)
        if os.fstat(fd).st_size > max_size:
            _rotate(root, fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rotate(root, fd):
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another writer is rotating it
    current = path(root)
    try:
        if os.stat(current).st_ino == os.fstat(fd).st_ino:  # not rotated meanwhile
            os.rename(current, current + ".1")
    except FileNotFoundError:
        pass


def container(rec, action, spec=None, **attributes):
    """An event of instance `rec`: its name, image and labels as attributes
    (docker's), then `attributes` (exitCode, signal...). Never raises."""
    try:
        spec = spec or rec.spec
        attrs = {**dict(spec.labels or {}), "image": spec.image, "name": rec.name}
        actor = spec.id
    except Exception:  # noqa: BLE001 - a corrupt spec still gets its event
        attrs, actor = {"name": rec.name}, rec.name
    attrs.update(attributes)
    append(rec.store.root, record("container", action, actor, attrs))


def image(root, action, name, image_id=""):
    append(root, record("image", action, image_id or name, {"name": name}))


def volume(root, action, name):
    """docker's volume events (create, destroy): the volume's name is its ID."""
    append(root, record("volume", action, name, {"driver": "local"}))


# -- reading (ctr events) ----------------------------------------------------------

FILTER_KEYS = ("container", "event", "type", "label", "image", "volume")
TYPES = ("container", "image", "volume")


def parse_filters(items):
    """docker's --filter KEY=VALUE: the same key ORs, different keys AND."""
    from ctr.errors import InvalidSpec

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS or not value:
            raise InvalidSpec(f"invalid --filter {item!r}: expected one of "
                              f"{', '.join(k + '=' for k in FILTER_KEYS)}")
        if key == "type" and value not in TYPES:
            raise InvalidSpec(f"invalid --filter {item!r}: a type is one of {', '.join(TYPES)}")
        out.setdefault(key, []).append(value)
    return out


def _label(attrs, want):
    key, sep, value = want.partition("=")
    return key in attrs and (not sep or attrs[key] == value)


def matches(event, filters):
    attrs = event.get("Actor", {}).get("Attributes", {})
    actor = event.get("Actor", {}).get("ID", "")
    kind = event.get("Type")
    action = event.get("Action", "")
    tests = {
        # health_status: healthy is an event=health_status, as docker's exec_start: ...
        "event": lambda v: v in (action, action.split(":", 1)[0]),
        "type": lambda v: kind == v,
        "container": lambda v: kind == "container" and (
            attrs.get("name") == v or actor.startswith(v)),
        "image": lambda v: attrs.get("image") == v or (kind == "image" and
                                                       attrs.get("name") == v),
        "label": lambda v: _label(attrs, v),
        "volume": lambda v: kind == "volume" and actor == v,
    }
    return all(any(tests[key](v) for v in values) for key, values in filters.items())


class _Lines:
    """Whole JSON lines out of bytes read (a line is one event)."""

    def __init__(self):
        self.rest = b""

    def feed(self, data):
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn or foreign line: skipped, as a reader of a log would
            if isinstance(event, dict) and isinstance(event.get("timeNano"), int):
                yield event


def read(root, *, since=None, until=None, follow=False, poll=0.05):
    """The events of ROOT, oldest first, those with since <= time <= until
    (nanoseconds; None: no bound); with follow, then those written from now
    on, until the clock passes `until` (None: forever)."""
    current = path(root)

    def wanted(event):
        t = event["timeNano"]
        return (since is None or t >= since) and (until is None or t <= until)

    f, lines = None, _Lines()
    for name in files(root):
        try:
            fh = open(name, "rb")
        except FileNotFoundError:
            continue
        lines = _Lines()
        yield from filter(wanted, lines.feed(fh.read()))
        if name == current and follow:
            f = fh
        else:
            fh.close()
    if not follow:
        return
    try:
        while until is None or time.time_ns() <= until:
            data = f.read(65536) if f else b""
            if data:
                yield from filter(wanted, lines.feed(data))
                continue
            try:
                inode = os.stat(current).st_ino
            except FileNotFoundError:
                inode = None
            if inode is not None and (f is None or inode != os.fstat(f.fileno()).st_ino):
                if f:  # rotated: what the old file still got is read above
                    f.close()
                f, lines = open(current, "rb"), _Lines()
                continue
            time.sleep(poll)
    finally:
        if f:
            f.close()


def go_view(event):
    """The event under the names of docker's Go struct, as --format templates
    read them (.Type, .Action, .Actor.ID, .Actor.Attributes.name, .TimeNano...)."""
    actor = event.get("Actor", {})
    return {"Type": event.get("Type"), "Action": event.get("Action"),
            "Actor": {"ID": actor.get("ID"), "Attributes": actor.get("Attributes", {})},
            "Scope": event.get("scope", "local"), "Time": event.get("time"),
            "TimeNano": event.get("timeNano"), "Status": event.get("status", ""),
            "ID": event.get("id", ""), "From": event.get("from", "")}


def text(event):
    """docker's default line: TIME TYPE ACTION ID (k=v, ...)."""
    secs, frac = divmod(event["timeNano"], 1_000_000_000)
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
    actor = event.get("Actor", {})
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(actor.get("Attributes", {}).items()))
    return (f"{when} {event.get('Type')} {event.get('Action')} "
            f"{actor.get('ID', '')} ({attrs})")
