"""The host's side of the VM's agent (agent.c is the guest's): the sockets
QEMU serves in the VM's run directory, next to its QMP socket (qmp.py).

    ctl.sock    "K <signal>\\n": a signal for the instance's command
    agent.sock  framed exec sessions:
                  frame = type (1 byte), length (4 bytes, big endian), payload
                host -> guest  E exec (a config: initramfs.command_config),
                               I stdin data, C stdin closed, K signal (decimal)
                guest -> host  O stdout data, R stderr data, X exit status
                               (decimal; 126/127 and a message after a space
                               when the command could not be run)

Sockets are reached through an fd of the run directory, so their paths stay
short (a Unix socket's path is at most 107 bytes) whatever the state root.
"""

import os
import socket
import struct

from ctr.errors import CtrError, StartError

HEADER = 5  # type, length


def connect(run, name, timeout=5.0):
    """A connected socket to `name` in the run directory `run`. OSError when
    nobody listens there."""
    dirfd = os.open(run, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(f"/proc/self/fd/{dirfd}/{name}")
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dirfd)
    return sock


def qmp(run):
    """A QMP session (ctr.vm.qmp.Qmp) with the QEMU of run directory `run`."""
    from ctr.vm.qmp import Qmp

    dirfd = os.open(run, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return Qmp(f"/proc/self/fd/{dirfd}/qmp.sock")
    finally:
        os.close(dirfd)


def signal_command(run, sig):
    """`sig` for the instance's command, through ctl.sock. CtrError when the
    agent cannot be reached."""
    try:
        with connect(run, "ctl.sock", timeout=2.0) as sock:
            sock.sendall(f"K {int(sig)}\n".encode())
    except OSError as err:
        raise CtrError(f"cannot signal the VM's command: {err.strerror or err}") from None


def frame(kind, payload=b""):
    return kind + struct.pack(">I", len(payload)) + payload


def split_frame(buf):
    """(kind, payload, rest) when `buf` starts with a whole frame, else None."""
    if len(buf) < HEADER:
        return None
    size = struct.unpack(">I", buf[1:HEADER])[0]
    if len(buf) < HEADER + size:
        return None
    return buf[:1], buf[HEADER:HEADER + size], buf[HEADER + size:]


class AgentSession:
    """One exec in the guest (a ctr.drivers.ProcessHandle): the config sent
    at once, stdin relayed as frames, output frames written out, the exit
    status returned by wait()."""

    pid = None  # the process lives in the guest
    master = None

    def __init__(self, sock, config, name):
        self.sock, self.name = sock, name
        self.sock.sendall(frame(b"E", config))

    def send_signal(self, sig):
        try:
            self.sock.sendall(frame(b"K", str(int(sig)).encode()))
        except OSError:
            pass

    def _gone(self):
        return StartError(f"exec in {self.name}: the VM went away")

    def wait(self, stdin=0, stdout=1, stderr=2):
        """Relay until the X frame; its status, or StartError when the command
        could not be run or the VM went away. Closes the session."""
        import select

        buf = b""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if stdin is not None:
            try:
                poller.register(stdin, select.POLLIN)
            except (OSError, ValueError):
                stdin = None
        try:
            while True:
                whole = split_frame(buf)
                if whole is not None:
                    kind, payload, buf = whole
                    if kind == b"O":
                        _write_all(stdout, payload)
                    elif kind == b"R":
                        _write_all(stderr, payload)
                    elif kind == b"X":
                        code, _, message = payload.decode(errors="replace").partition(" ")
                        if message:
                            raise StartError(f"exec in {self.name}: {message}", int(code))
                        return int(code)
                    continue
                for fd, _ in poller.poll():
                    if fd == stdin:
                        data = os.read(stdin, 65536)
                        if data:
                            self.sock.sendall(frame(b"I", data))
                        else:
                            poller.unregister(stdin)
                            self.sock.sendall(frame(b"C"))
                    else:
                        chunk = self.sock.recv(65536)
                        if not chunk:
                            raise self._gone()
                        buf += chunk
        finally:
            self.sock.close()


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]
