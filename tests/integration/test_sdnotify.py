"""sd_notify: the tests play systemd's side of the protocol. A datagram socket
(bound in a temp dir, or in the abstract namespace) with SO_PASSCRED is given
to ctr as NOTIFY_SOCKET; every datagram comes with the sender's pid."""

import os
import signal
import socket
import struct
import subprocess
import time

import pytest
from helpers import CTR, compile_static

HERE = os.path.dirname(os.path.abspath(__file__))


class Systemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, where, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.name = f"@ctr-test-{os.getpid()}-{os.urandom(4).hex()}"
            self.sock.bind("\0" + self.name[1:])
        else:
            self.name = os.path.join(where, "notify")
            self.sock.bind(self.name)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout=10.0):
        """(sender pid, {key: value}, monotonic time), or None on timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return None
        pid = next(struct.unpack("iII", d)[0] for level, kind, d in anc
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        return pid, fields, time.monotonic()

    def close(self):
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def systemd(request, tmp_path):
    s = Systemd(str(tmp_path), abstract=request.param == "abstract")
    yield s
    s.close()


@pytest.fixture(scope="module")
def notify_tool(tmp_path_factory):
    """A static systemd-notify of our own (busybox has none), bound into containers."""
    return compile_static(os.path.join(HERE, "sdnotify", "notify.c"),
                          str(tmp_path_factory.mktemp("notify") / "notify"))


def start(ctr, systemd, *args, extra_env=None):
    env = ctr.env(NOTIFY_SOCKET=systemd.name, **(extra_env or {}))
    return subprocess.Popen([CTR, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def comm_of_child(ctr_pid):
    """The command name of the instance's init: the foreground ctr's child."""
    with open(f"/proc/{ctr_pid}/task/{ctr_pid}/children") as f:
        kids = f.read().split()
    with open(f"/proc/{kids[0]}/comm") as f:
        return f.read().strip()


def test_ready_and_mainpid_once_the_command_runs(ctr, systemd, tmp_path):
    """conmon mode: one datagram MAINPID + READY=1, from the foreground ctr,
    after the command was exec'd (the instance's init already is `sh`, and it
    has run: its marker is there); MAINPID is the process that then exits with
    the instance's status."""
    marks = tmp_path / "marks"
    marks.mkdir()
    os.mkfifo(marks / "go")
    t0 = time.monotonic()
    p = start(ctr, systemd, "run", "--rm", "--network", "none", "-v", f"{marks}:/m",
              "busybox", "--", "sh", "-c", "touch /m/ran; read x < /m/go; exit 7")
    got = systemd.receive()
    assert got, p.communicate()
    pid, fields, when = got
    assert fields == {"MAINPID": str(p.pid), "READY": "1"}
    assert pid == p.pid  # sent by ctr itself (SCM_CREDENTIALS)
    assert comm_of_child(p.pid) == "sh"  # exec'd: no longer ctr's child process
    assert (marks / "ran").exists() or _appears(marks / "ran")
    with open(marks / "go", "w") as f:
        f.write("go\n")
    assert p.wait(30) == 7  # the MAINPID process exits with the instance's status
    assert systemd.receive(0.3) is None  # nothing else (no STOPPING: it just ended)
    print(f"READY {when - t0:.3f}s after launch")


def _appears(path, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.01)
    return False


def test_no_ready_when_the_command_cannot_run(ctr, systemd):
    p = start(ctr, systemd, "run", "--rm", "--network", "none", "busybox", "--", "/nope")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 127, err
    assert systemd.receive(0.3) is None


def test_container_mode_the_application_says_ready(ctr, systemd, notify_tool, tmp_path):
    """--sd-notify=container: ctr sends MAINPID alone; READY=1 arrives only when
    the application sends it (through the socket ctr binds in, with the path
    translated), and what it says of MAINPID never reaches systemd."""
    marks = tmp_path / "marks"
    marks.mkdir()
    os.mkfifo(marks / "go")
    script = ('test "$NOTIFY_SOCKET" = /run/notify/notify.sock || exit 9; '
              "touch /m/before; read x < /m/go; "
              "notify READY=1 MAINPID=1 STATUS=serving || exit 8; exec sleep 1000")
    p = start(ctr, systemd, "run", "--rm", "--name", "app", "--network", "none",
              "--read-only", "--sd-notify", "container", "-v", f"{notify_tool}:/bin/notify:ro",
              "-v", f"{marks}:/m", "busybox", "--", "sh", "-c", script)
    got = systemd.receive()
    assert got, p.communicate()
    assert got[1] == {"MAINPID": str(p.pid)} and got[0] == p.pid
    assert systemd.receive(0.5) is None  # ctr itself never says READY here
    assert _appears(marks / "before")
    with open(marks / "go", "w") as f:
        f.write("go\n")
    got = systemd.receive()
    assert got and got[1] == {"READY": "1", "STATUS": "serving"}
    assert ctr("stop", "-t", "1", "app").returncode == 0
    assert p.wait(30) == 137  # sleep ignores nothing, but pid 1 ignores SIGTERM
    assert not os.path.exists(ctr.path("instances", "app"))


def test_stopping_from_ctr_stop_and_from_sigterm(ctr, systemd):
    """STOPPING=1 from `ctr stop` as ExecStop= runs it (NOTIFY_SOCKET and
    $MAINPID = the unit's main pid), not from a `ctr stop` of another unit; and
    from the foreground ctr on SIGTERM."""
    p = start(ctr, systemd, "run", "--name", "s", "--network", "none", "busybox", "--",
              "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    got = systemd.receive()
    assert got and got[1].get("READY") == "1"
    r = subprocess.run([CTR, "stop", "-t", "5", "s"], capture_output=True, text=True,
                       env=ctr.env(NOTIFY_SOCKET=systemd.name, MAINPID=str(p.pid)))
    assert r.returncode == 0, r.stderr
    got = systemd.receive()
    assert got and got[1] == {"STOPPING": "1"} and got[0] != p.pid  # from `ctr stop`
    assert p.wait(30) == 0
    # now the foreground ctr itself, told by systemd (KillMode=mixed: SIGTERM to it)
    p = start(ctr, systemd, "start", "-a", "s")
    assert systemd.receive()[1].get("READY") == "1"
    r = subprocess.run([CTR, "stop", "-t", "5", "s"], capture_output=True, text=True,
                       env=ctr.env(NOTIFY_SOCKET=systemd.name, MAINPID="1"))
    assert r.returncode == 0
    assert systemd.receive(0.3) is None  # MAINPID 1 is not this instance's ctr
    p.wait(30)
    p = start(ctr, systemd, "start", "-a", "s")
    assert systemd.receive()[1].get("READY") == "1"
    p.send_signal(signal.SIGTERM)
    got = systemd.receive()
    assert got and got[1] == {"STOPPING": "1"} and got[0] == p.pid
    assert p.wait(30) == 0  # forwarded to the instance, which trapped it


def test_no_socket_no_notify_and_ignore_mode(ctr, systemd):
    r = ctr("run", "--rm", "--network", "none", "busybox", "true")
    assert r.returncode == 0
    p = start(ctr, systemd, "run", "--rm", "--network", "none", "--sd-notify", "ignore",
              "busybox", "true")
    assert p.wait(30) == 0
    assert systemd.receive(0.3) is None


def test_bad_sd_notify_mode_is_refused(ctr):
    from helpers import assert_refused

    assert_refused(ctr, ctr("run", "--sd-notify", "sometimes", "busybox", "true"),
                   "invalid --sd-notify 'sometimes'")
    assert_refused(ctr, ctr("create", "--vm", "--sd-notify", "container", "busybox", "true"),
                   "--sd-notify=container is for containers")


def test_a_vm_is_ready_once_the_guest_runs_the_command(ctr, tmp_path, vm_kernels):
    """The same from the host side for --vm: READY=1 comes after the guest's
    agent reported the exec, and MAINPID is the ctr that exits with the status."""
    os.symlink(vm_kernels, ctr.path("kernels"))
    s = Systemd(str(tmp_path))
    try:
        t0 = time.monotonic()
        env = ctr.env(NOTIFY_SOCKET=s.name)
        p = subprocess.Popen([CTR, "run", "--rm", "--vm", "--network", "none", "busybox",
                              "--", "sh", "-c", "echo started; sleep 2; exit 5"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        got = s.receive(60)
        assert got, p.communicate()
        assert got[1] == {"MAINPID": str(p.pid), "READY": "1"} and got[0] == p.pid
        assert p.poll() is None  # the command is still running
        assert p.wait(60) == 5
        print(f"VM READY {got[2] - t0:.2f}s after launch")
    finally:
        s.close()
