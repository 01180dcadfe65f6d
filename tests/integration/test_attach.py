"""ctr attach (issue 19): a detached instance's output from now on, its stdin
through its monitor's relay (run -d -i), a pty (-it), detach keys, signals
passed on, and the instance's exit status. Real containers."""

import queue
import signal
import subprocess
import threading
import time

from helpers import CTR, wait_for


def _refused(r, message):
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("ctr: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


class Attached:
    """`ctr attach` with pipes: what it prints, as it comes."""

    def __init__(self, ctr, *args):
        self.proc = subprocess.Popen([CTR, "attach", *args], env=ctr.env(), bufsize=0,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = queue.Queue()
        self.seen = b""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while data := self.proc.stdout.read(1):
            self.out.put(data)

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def expect(self, text, timeout=15):
        deadline = time.monotonic() + timeout
        while text not in self.seen and time.monotonic() < deadline:
            try:
                self.seen += self.out.get(timeout=0.2)
            except queue.Empty:
                pass
        return text in self.seen

    def wait(self, timeout=15):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def _running(ctr, name):
    return ctr.state(name)["status"] == "running"


def test_attach_sends_stdin_to_cat_and_detaches_with_ctrl_p_ctrl_q(ctr):
    ctr("run", "-d", "-i", "--name", "cat", "busybox", "cat", check=True)
    a = Attached(ctr, "cat")
    try:
        a.send(b"hello through the monitor\n")
        assert a.expect(b"hello through the monitor\n")
        a.send(b"\x10\x11")  # ctrl-p ctrl-q: detach, leave it running
        assert a.wait() == 0
    finally:
        a.wait(0)
    assert b"\x10" not in a.seen and _running(ctr, "cat")
    assert ctr("logs", "cat", check=True).stdout == "hello through the monitor\n"
    # a second client, after the first left: the stdin stayed open
    b = Attached(ctr, "--detach-keys", "ctrl-a,x", "cat")
    try:
        b.send(b"again\n")
        assert b.expect(b"again\n")
        b.send(b"\x01x")
        assert b.wait() == 0
    finally:
        b.wait(0)
    assert _running(ctr, "cat")


def test_attach_streams_output_from_now_and_returns_the_exit_status(ctr):
    ctr("run", "-d", "--name", "job", "busybox", "sh", "-c",
        "echo before; sleep 2; echo after; echo oops >&2; exit 5", check=True)
    assert wait_for(lambda: "before" in ctr("logs", "job").stdout)
    r = ctr("attach", "job", timeout=20)
    assert (r.returncode, r.stdout, r.stderr) == (5, "after\n", "oops\n")


def test_attach_to_a_terminal(ctr):
    ctr("run", "-d", "-it", "--name", "sh", "busybox", "sh", check=True)
    a = Attached(ctr, "sh")
    try:
        a.send(b"echo $((6*7))\n")
        assert a.expect(b"42")
        a.send(b"exit 3\n")
        assert a.wait() == 3
    finally:
        a.wait(0)
    assert ctr.state("sh")["exit_code"] == 3


def test_no_stdin_and_signals_passed_on(ctr):
    ctr("run", "-d", "-i", "--name", "trap", "busybox", "sh", "-c",
        "trap 'echo got TERM; exit 7' TERM; while :; do sleep 0.1; done", check=True)
    a = Attached(ctr, "--no-stdin", "trap")
    try:
        time.sleep(1)  # following
        a.send(b"ignored\n")
        a.proc.send_signal(signal.SIGTERM)  # --sig-proxy (default): to the instance
        assert a.wait() == 7
    finally:
        a.wait(0)
    assert a.expect(b"got TERM\n")
    assert ctr.state("trap")["exit_code"] == 7
    # without the proxy, a signal ends the attach only
    ctr("run", "-d", "--name", "keep", "busybox", "sleep", "100", check=True)
    b = Attached(ctr, "--sig-proxy=false", "keep")
    time.sleep(1)
    b.proc.send_signal(signal.SIGTERM)
    assert b.wait() != 0
    assert _running(ctr, "keep")


def test_attach_refuses(ctr):
    ctr("create", "--name", "idle", "busybox", "true", check=True)
    _refused(ctr("attach", "idle"), "start it first")
    _refused(ctr("attach", "ghost"), "no such instance")
    ctr("run", "-d", "--name", "up", "busybox", "sleep", "100", check=True)
    _refused(ctr("attach", "--detach-keys", "ctrl-ä", "up"), "invalid --detach-keys")
    _refused(ctr("attach", "--detach-keys", "ctrl-p,meta-q", "up"), "invalid --detach-keys")
