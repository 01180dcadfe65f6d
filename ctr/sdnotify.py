"""systemd's notify protocol (sd_notify(3)), ctr's side of it.

Under a `Type=notify` unit systemd puts the address of its notify socket in
NOTIFY_SOCKET (a path, or "@name" for the abstract namespace) and waits for
"READY=1" datagrams. A foreground `ctr start -a` / `ctr run` is the unit's main
process: it is what reaps the instance, records its exit status and exits with
it, so MAINPID is ctr's own pid, and systemd's idea of the main process and the
process that carries the instance's status are the same one.

The modes (`--sd-notify`, kept in the instance's spec, podman's names):
  conmon     ctr sends MAINPID and READY=1 once the command has been exec'd (the
             container's init reported the exec, a VM's agent reported it from
             the guest).
  container  ctr sends MAINPID only; the application signals readiness itself
             through a socket ctr binds into the container (NOTIFY_SOCKET is set
             inside). ctr relays what arrives there to systemd, dropping MAINPID=
             lines: systemd's main process stays ctr, whatever the container
             claims, and the relay works for abstract sockets and any network
             namespace (a bind mount of the host's socket would do neither).
  ignore     ctr sends nothing and passes nothing.
STOPPING=1 goes out when the foreground ctr gets SIGTERM/SIGINT, and from
`ctr stop` run by the unit's ExecStop= (systemd gives control processes
NOTIFY_SOCKET with NotifyAccess=all, and $MAINPID: it is checked to be this
instance's foreground ctr, so a `ctr stop` run by some other unit never speaks
for it).
"""

import os
import signal

from ctr.spec.model import DEFAULT_SD_NOTIFY as DEFAULT_MODE  # checked: ctr.spec.validate

# Where an application in the container finds the socket (podman's place).
CONTAINER_SOCKET = "/run/notify/notify.sock"
RELAY_NAME = "notify.sock"


def address(value):
    """NOTIFY_SOCKET's value as a socket address: a path, or '@name' for the
    abstract namespace (a leading NUL); None when it is neither."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def send(message, notify_socket=None):
    """Send one datagram of KEY=VALUE lines. False when there is no socket or it
    cannot be reached (systemd then times the start out; ctr does not fail)."""
    addr = address(notify_socket if notify_socket is not None
                   else os.environ.get("NOTIFY_SOCKET"))
    if addr is None:
        return False
    import socket

    data = message.encode() if isinstance(message, str) else message
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(data, addr)
    except OSError:
        return False
    return True


def stopping_for(state):
    """`ctr stop` under a unit's ExecStop=: STOPPING=1, when the instance being
    stopped is the one whose foreground ctr is that unit's main process."""
    main = os.environ.get("MAINPID", "")
    if (os.environ.get("NOTIFY_SOCKET") and main.isdigit()
            and int(main) == state.get("reaper_pid")):
        send("STOPPING=1")


def filter_relayed(data):
    """What the container sent, minus MAINPID= (ctr is the main process)."""
    lines = [line for line in data.split(b"\n")
             if line and not line.startswith(b"MAINPID=")]
    return b"\n".join(lines)


class Session:
    """One foreground run's conversation with systemd. A no-op without
    NOTIFY_SOCKET (or with --sd-notify=ignore).

    Use: `with Session(rec) as notify:` start `notify.record` (the record as this
    run sees it: with the relay's bind and NOTIFY_SOCKET in the container's env,
    and a --cgroup-parent given to this start; the spec on disk is untouched),
    then `notify.started(proc)` once the command runs.
    """

    def __init__(self, rec, cgroup_parent=None):
        import dataclasses

        spec = rec.spec
        self.socket = os.environ.pop("NOTIFY_SOCKET", None)  # not for QEMU & co.
        self.mode = getattr(spec, "sd_notify", DEFAULT_MODE) or DEFAULT_MODE
        if address(self.socket) is None or self.mode == "ignore":
            self.socket = None
        self._relay = None
        self._thread = None
        self._stopping_sent = False
        changes = {}
        if cgroup_parent is not None:
            from ctr.spec import check_cgroup_parent

            changes["cgroup_parent"] = check_cgroup_parent(cgroup_parent)
        if self.socket and self.mode == "container" and spec.kind == "container":
            path = self._bind_relay(rec)
            changes["volumes"] = (*spec.volumes, {"source": path, "target": CONTAINER_SOCKET,
                                                  "readonly": False})
            changes["env"] = (*[e for e in spec.env if not e.startswith("NOTIFY_SOCKET=")],
                              f"NOTIFY_SOCKET={CONTAINER_SOCKET}")
        self.record = rec.with_spec(dataclasses.replace(spec, **changes)) if changes else rec
        if self.socket:
            self._chain_stop_signals()

    def _bind_relay(self, rec):
        """A datagram socket in the instance's folder, writable by the container's
        user whoever it is. Bound through the folder's fd: a deep state root would
        not fit in sun_path."""
        import socket

        path = os.path.join(rec.dir, RELAY_NAME)
        dirfd = os.open(rec.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                os.unlink(RELAY_NAME, dir_fd=dirfd)
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.bind(f"/proc/self/fd/{dirfd}/{RELAY_NAME}")
            os.chmod(RELAY_NAME, 0o666, dir_fd=dirfd)
        finally:
            os.close(dirfd)
        self._relay = sock
        self._relay_path = path
        return path

    def _chain_stop_signals(self):
        """STOPPING=1 before the signal reaches whoever handled it before (the
        forwarder that passes it to the instance)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def handler(signum, frame, previous=previous):
                self.stopping()
                if callable(previous):
                    previous(signum, frame)
                elif previous == signal.SIG_DFL:
                    signal.signal(signum, signal.SIG_DFL)
                    os.kill(os.getpid(), signum)

            signal.signal(sig, handler)

    def started(self, proc):
        """The command runs (the driver's start returned): tell systemd."""
        del proc  # the main process is ctr itself, which reaps it
        if not self.socket:
            return
        if self.mode == "conmon":
            send(f"MAINPID={os.getpid()}\nREADY=1", self.socket)
            return
        send(f"MAINPID={os.getpid()}", self.socket)
        if self._relay is not None:
            import threading

            # Started after MAINPID went out: what the container sent meanwhile
            # waits in the socket's queue, so systemd always learns MAINPID first.
            self._thread = threading.Thread(target=self._forward, name="sd-notify-relay",
                                            daemon=True)
            self._thread.start()

    def _forward(self):
        while True:
            try:
                data = self._relay.recv(65536)
            except OSError:
                return
            if not data:
                return
            data = filter_relayed(data)
            if data:
                send(data, self.socket)

    def stopping(self):
        if self.socket and not self._stopping_sent:
            self._stopping_sent = True
            send("STOPPING=1", self.socket)

    def close(self):
        if self._relay is None:
            return
        import socket

        try:
            self._relay.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(1.0)
        self._relay.close()
        self._relay = None
        try:
            os.unlink(self._relay_path)
        except OSError:
            pass  # removed with the record (--rm)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
