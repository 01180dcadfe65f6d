"""The log of a detached instance: written by its monitor, read by `ctr logs`.

The format is the one conmon writes for Kubernetes (CRI), one record per line:

    2026-11-22T10:00:00.123456789Z stdout F a whole line
    2026-11-22T10:00:00.123456789Z stderr P a piece of a line that had no newline yet

F ends a line, P is a piece of one (a read that ended mid-line, or a line longer
than a record). Reading the F/P pieces back gives the output byte for byte, each
stream apart, each line with the time it was written. Timestamps are UTC with
nanoseconds and fixed width, so they compare as strings.

Rotation is by size: when the next record would make `log` bigger than
max_size, log.N-1 ... log.1 shift up (the oldest goes) and log starts anew, so
an instance never holds more than max_size * max_files bytes of log.
"""

import os
import re
import time

from ctr.errors import InvalidSpec

STREAMS = (b"stdout", b"stderr")
RECORD_BODY = 8192  # the longest piece of a line in one record


def timestamp(ns=None):
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class LogWriter:
    """Appends the records of one instance's streams, rotating by size."""

    def __init__(self, path, max_size=-1, max_files=1):
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self.body = RECORD_BODY if max_size < 0 else max(64, min(RECORD_BODY, max_size // 4))
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size

    def _open(self):
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, stream, data):
        """Record `data` read from `stream` (b"stdout" or b"stderr")."""
        ts = timestamp().encode()
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: a piece of a line, or nothing
        for line in lines:
            self._line(ts, stream, line, True)
        if tail:
            self._line(ts, stream, tail, False)

    def _line(self, ts, stream, line, whole):
        pieces = [line[i:i + self.body] for i in range(0, len(line), self.body)] or [b""]
        for i, piece in enumerate(pieces):
            tag = b"F" if whole and i == len(pieces) - 1 else b"P"
            self._append(b"%s %s %s %s\n" % (ts, stream, tag, piece))

    def _append(self, record):
        if self.max_size >= 0 and self.size and self.size + len(record) > self.max_size:
            self._rotate()
        while record:
            n = os.write(self.fd, record)
            record = record[n:]
            self.size += n

    def _rotate(self):
        os.close(self.fd)
        if self.max_files > 1:
            for n in range(self.max_files - 1, 1, -1):
                older = f"{self.path}.{n - 1}"
                if os.path.exists(older):
                    os.rename(older, f"{self.path}.{n}")
            os.rename(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self.fd = self._open()
        self.size = 0

    def close(self):
        os.close(self.fd)


def files(path):
    """The log's files, oldest first."""
    rotated = []
    directory, base = os.path.split(path)
    for name in os.listdir(directory):
        suffix = name[len(base) + 1:]
        if name.startswith(base + ".") and suffix.isdigit():
            rotated.append((int(suffix), os.path.join(directory, name)))
    return [p for _, p in sorted(rotated, reverse=True)] + [path]


def parse_record(line):
    """(timestamp, stream, whole, body) of one record line (without its newline),
    or None for a line that is not one (a log written by an older ctr: raw output)."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in STREAMS or parts[2] not in (b"F", b"P"):
        return None
    return parts[0], parts[1], parts[2] == b"F", parts[3] if len(parts) == 4 else b""


class Line:
    __slots__ = ("ts", "stream", "data")

    def __init__(self, ts, stream, data):
        self.ts, self.stream, self.data = ts, stream, data


class Reader:
    """Joins records back into lines: `feed` bytes of the files, get Lines."""

    def __init__(self):
        self.rest = b""
        self.partial = {}  # stream -> (timestamp of the first piece, pieces so far)

    def feed(self, data):
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        out = []
        for raw in lines:
            rec = parse_record(raw)
            if rec is None:
                out.append(Line(b"", b"stdout", raw + b"\n"))
                continue
            ts, stream, whole, body = rec
            first, pieces = self.partial.pop(stream, (ts, []))
            pieces.append(body)
            if whole:
                out.append(Line(first, stream, b"".join(pieces) + b"\n"))
            else:
                self.partial[stream] = (first, pieces)
        return out

    def flush(self):
        """The pieces of lines that never ended (the instance stopped mid-line)."""
        out = [Line(first, stream, b"".join(pieces))
               for stream, (first, pieces) in self.partial.items()]
        self.partial.clear()
        return out


def backlog(path, keep_open=False):
    """The lines of every file of the log, oldest first, and, with keep_open,
    (the current file, positioned at its end, with its Reader) to follow on."""
    lines, current, reader = [], None, Reader()  # a line's pieces may span two files
    for name in files(path) if os.path.isdir(os.path.dirname(path)) else []:
        try:
            f = open(name, "rb")
        except FileNotFoundError:
            continue  # rotated away meanwhile
        lines += reader.feed(f.read())
        if name == path and keep_open:
            current = f
        else:
            f.close()
    if not keep_open:
        return lines + reader.flush(), None
    return lines, (current, reader)


def follow(path, current, running, poll=0.1):
    """Lines as the monitor writes them, from where `backlog` left off, across
    rotations, until running() says the instance has stopped for good."""
    f, reader = current
    try:
        while True:
            data = f.read(65536) if f else b""
            if data:
                yield from reader.feed(data)
                continue
            try:
                inode = os.stat(path).st_ino
            except FileNotFoundError:
                inode = None
            if inode is not None and (f is None or inode != os.fstat(f.fileno()).st_ino):
                # Rotated (what was left of the old file has been read): the new one.
                if f:
                    f.close()
                f = open(path, "rb")
                continue
            if not running():
                if f:
                    yield from reader.feed(f.read())
                yield from reader.flush()
                return
            time.sleep(poll)
    finally:
        if f:
            f.close()


def read(rec, *, follow=False, tail=None, since=None, until=None, poll=0.1):
    """The output of a detached instance, as Line objects (every file of the
    rotated log, oldest first): the last `tail` lines, those written within
    [since, until] (timestamps from parse_time), then with `follow` what comes
    until the instance stops for good."""
    from ctr import store as st
    from ctr.errors import NotFound, StateError

    def running():
        try:
            return rec.state()["status"] in (st.RUNNING, st.PAUSED, st.RESTARTING)
        except (NotFound, StateError):
            return False

    def wanted(line):
        return (since is None or line.ts >= since) and (until is None or line.ts <= until)

    old, current = backlog(rec.log_path, follow and running())
    old = [line for line in old if wanted(line)]
    if tail is not None:
        old = old[-tail:] if tail else []
    yield from old
    if current is None:
        return
    for line in _follow(rec.log_path, current, running, poll):
        if until is not None and line.ts > until:
            return
        if wanted(line):
            yield line


_follow = follow  # read() has a parameter of that name

DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|h|m|s))+")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
DURATION_UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}


def parse_time(value, what):
    """docker's --since/--until: an RFC 3339 time (no zone: local time), a Unix
    time (1700000000[.5]), or a duration back from now (10m, 1h30m, 45s).
    Returns a timestamp comparable with the records' (bytes)."""
    return timestamp(parse_time_ns(value, what)).encode()


def parse_time_ns(value, what):
    """parse_time's forms, as nanoseconds since the epoch."""
    text = str(value).strip()
    if DURATION_RE.fullmatch(text):
        seconds = sum(float(n) * DURATION_UNITS[u] for n, u in DURATION_PART.findall(text))
        return time.time_ns() - int(seconds * 1e9)
    try:
        return int(float(text) * 1e9)
    except (ValueError, OverflowError):  # not a number; inf, nan
        pass
    import datetime

    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSpec(f"invalid {what} {value!r}: expected a time like "
                          "2026-01-02T15:04:05Z, a Unix time, or a duration like 10m") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1e9)
