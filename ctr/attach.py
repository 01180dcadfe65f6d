"""`ctr attach`: a detached instance's output from now on, and its stdin.

The output needs nothing of the monitor: the client follows the instance's log
(ctr.logs) from its end, as `ctr logs -f` would, until the instance stops for
good.

The stdin of an instance run with -i (docker's OpenStdin) is held by its
monitor: a pipe whose read end is the command's stdin (or, with -t, the pty's
master, whose slave is the command's terminal). The monitor's whole part is a
relay, `StdinRelay`, which a monitor written in C can do alike:

    - listen on a unix stream socket at instances/NAME/attach (bound through
      /proc/self/fd/DIRFD/attach, so a long state root never passes sun_path's
      108 bytes; mode 0600; an old socket file is unlinked first);
    - accept any number of clients; every byte a client sends is written, as it
      is, to the instance's stdin (the pipe's write end, or the pty master).
      Nothing is sent back: no framing, no handshake, no resize messages;
    - a client that closes is dropped; the instance's stdin stays open (the end
      of a client's input is not the end of the instance's: docker without
      --stdin-once);
    - between runs (while restarting) there is no stdin: bytes are dropped;
      each run gets a new pipe.

Detach keys (docker's ctrl-p,ctrl-q, --detach-keys) are the client's business:
it never sends them. A terminal's size is set by the client on the pty's slave,
which it opens as /proc/PID/fd/0 of the instance's main process.
"""

import contextlib
import os
import select
import socket
import threading

from ctr.errors import Conflict, InvalidSpec

SOCKET = "attach"
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def _sock_path(directory):
    """(an O_PATH fd of `directory`, the socket's path through it): sun_path
    holds 108 bytes, a state root's path may be longer."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return fd, f"/proc/self/fd/{fd}/{SOCKET}"


class StdinRelay:
    """The monitor's side: a listening socket in the instance's folder, and a
    thread copying what clients send to the stdin of the run of the moment."""

    def __init__(self, directory):
        dirfd, path = _sock_path(directory)
        try:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            old = os.umask(0o177)
            try:
                self.sock.bind(path)
            finally:
                os.umask(old)
            self.sock.listen(8)
        finally:
            os.close(dirfd)
        self._serve_in_thread()

    @classmethod
    def adopt(cls, fd):
        """The relay of a listening socket ctr-monitor handed on (an exec keeps it)."""
        self = cls.__new__(cls)
        self.sock = socket.socket(fileno=fd)
        self.sock.set_inheritable(False)
        self._serve_in_thread()
        return self

    def _serve_in_thread(self):
        self.lock = threading.Lock()
        self.fd = None
        threading.Thread(target=self._serve, daemon=True).start()

    def fileno(self):
        return self.sock.fileno()

    def target(self, fd):
        """The stdin of the run now (a fd the relay then owns), or None between runs."""
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
            self.fd = fd

    def _write(self, data):
        with self.lock:
            if self.fd is None:
                return
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError:
                pass  # the command closed its stdin, or the run ended

    def _serve(self):
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        clients = {}
        while True:
            for fd, _ in poller.poll():
                if fd == self.sock.fileno():
                    conn, _ = self.sock.accept()
                    clients[conn.fileno()] = conn
                    poller.register(conn.fileno(), select.POLLIN)
                    continue
                try:
                    data = clients[fd].recv(65536)
                except OSError:
                    data = b""
                if data:
                    self._write(data)
                else:
                    poller.unregister(fd)
                    clients.pop(fd).close()


def connect(directory):
    """The client's side: a socket whose bytes reach the instance's stdin."""
    dirfd, path = _sock_path(directory)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dirfd)
    return sock


def parse_detach_keys(value):
    """docker's --detach-keys: comma-separated keys, each a character or
    ctrl-X (X a letter or one of @ [ \\ ] ^ _). Returns the bytes."""
    text = DEFAULT_DETACH_KEYS if value is None or value == "" else value
    out = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in _CTRL:
                out.append(_CTRL[c])
            else:
                raise InvalidSpec(f"invalid --detach-keys {value!r}: unknown key {key!r}")
        else:
            raise InvalidSpec(f"invalid --detach-keys {value!r}: expected keys like "
                              "ctrl-p,ctrl-q or a single character")
    if any(b > 127 for b in out):
        raise InvalidSpec(f"invalid --detach-keys {value!r}: ASCII keys only")
    return bytes(out)


class DetachKeys:
    """Spots the detach sequence in what the user types; what could still be
    its beginning is held back until the next bytes tell."""

    def __init__(self, keys):
        self.keys = keys
        self.held = b""

    def feed(self, data):
        """(bytes to send, whether the sequence was typed)."""
        out = bytearray()
        for b in data:
            self.held += bytes([b])
            while self.held and not self.keys.startswith(self.held):
                out.append(self.held[0])
                self.held = self.held[1:]
            if self.held == self.keys:
                return bytes(out), True
        return bytes(out), False


def _winsize_target(state):
    """The pty's slave, opened through the instance's main process (its fd 0),
    to set the terminal's size on; None when it cannot be."""
    import stat

    try:
        fd = os.open(f"/proc/{state['pid']}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, KeyError, TypeError):
        return None
    if not stat.S_ISCHR(os.fstat(fd).st_mode) or not os.isatty(fd):
        os.close(fd)
        return None
    return fd


def _log_end(rec):
    """The log opened at its end (None while there is none): taken before any
    stdin is sent, so that the output it causes is never missed."""
    try:
        f = open(rec.log_path, "rb")
    except FileNotFoundError:
        return None
    f.seek(0, os.SEEK_END)
    return f


def _output(rec, f, out, err, tty, done):
    """Copy the log's new lines (from `f`, the log at the point to start) to
    out/err until the instance stops for good."""
    from ctr import logs
    from ctr import store as st
    from ctr.errors import NotFound, StateError

    def running():
        try:
            return rec.state()["status"] in (st.RUNNING, st.PAUSED, st.RESTARTING)
        except (NotFound, StateError):
            return False

    try:
        for line in logs.follow(rec.log_path, (f, logs.Reader()), running, poll=0.05):
            fd = out if tty or line.stream == b"stdout" else err
            data = line.data.replace(b"\n", b"\r\n") if tty and os.isatty(out) else line.data
            while data:
                data = data[os.write(fd, data):]
    except OSError:
        pass  # our own output went away
    finally:
        done.set()


def session(rec, state, *, stdin=0, out=1, err=2, send_stdin=True, detach_keys=b"\x10\x11"):
    """Attach to a running instance: its output from now on to out/err, and
    (send_stdin) what comes on stdin to its stdin through its monitor's relay.
    Returns None when the instance stopped (its exit status is in its state),
    "detached" when the user typed the detach keys."""
    from ctr.tty import copy_winsize, raw_mode

    spec = rec.spec
    done = threading.Event()
    try:
        sock = connect(rec.dir) if send_stdin else None
    except OSError as err:
        raise Conflict(f"cannot attach to the stdin of {rec.name}: its monitor does not "
                       f"relay it ({err.strerror}); try --no-stdin") from None
    threading.Thread(target=_output, args=(rec, _log_end(rec), out, err, spec.tty, done),
                     daemon=True).start()
    pty = _winsize_target(state) if spec.tty and os.isatty(out) else None
    if pty is not None:
        copy_winsize(out, pty)
    keys = DetachKeys(detach_keys)
    try:
        with raw_mode(stdin) if sock is not None and spec.tty else contextlib.nullcontext():
            while not done.is_set():
                if sock is None:
                    done.wait(0.1)
                    continue
                ready, _, _ = select.select([stdin], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(stdin, 65536)
                if not data:  # our input ended; the instance's stays open
                    sock.close()
                    sock = None
                    continue
                data, detached = keys.feed(data)
                if data:
                    sock.sendall(data)
                if detached:
                    return "detached"
    finally:
        if sock is not None:
            sock.close()
        if pty is not None:
            os.close(pty)
    return None

