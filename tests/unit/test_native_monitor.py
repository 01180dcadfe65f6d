"""ctr-monitor (ctr/native/monitor.c) on its own, against ctr.logs: the same
records (streams, F/P, pieces of long lines), the same rotation and file names
as the Python LogWriter, the exit status in exit.json and handed to the
program it execs. No container: its child is a plain Python process."""

import json
import os
import subprocess
import sys

import pytest

from ctr import logs
from ctr.monitor import NATIVE

pytestmark = pytest.mark.skipif(not os.access(NATIVE, os.X_OK),
                                reason=f"ctr-monitor is not built ({NATIVE}): pip install .")

# Forks the child (stdout/stderr on pipes), then execs ctr-monitor with it:
# the monitor must be the child's parent to reap it.
DRIVER = r"""
import os, socket, sys
native, d, log, max_size, max_files, child, *extra = sys.argv[1:]
out_r, out_w = os.pipe()
err_r, err_w = os.pipe()
in_r, in_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.dup2(in_r, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.execv(sys.executable, [sys.executable, "-c", child])
for fd in (out_w, err_w, in_r):
    os.close(fd)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(os.path.join(d, "attach"))
listener.listen(8)
for fd in (out_r, err_r, in_w, listener.fileno()):
    os.set_inheritable(fd, True)
os.execv(native, ["ctr-monitor", "t", d, str(pid), "--out", str(out_r), "--err", str(err_r),
                  "--stdin", str(in_w), "--attach", str(listener.fileno()),
                  "--log", log, "--max-size", max_size, "--max-files", max_files, *extra, "--",
                  "/bin/sh", "-c", 'echo "$@" > "$0/resumed"', d])
"""


def monitor(tmp_path, child, max_size=-1, max_files=1, extra=(), while_running=None):
    """Run `child` (Python source) under ctr-monitor, with `while_running()`
    called meanwhile; (resume's args, exit.json)."""
    log = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, NATIVE, str(tmp_path), str(log),
                             str(max_size), str(max_files), child, *extra])
    try:
        if while_running:
            while_running()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    resumed = (tmp_path / "resumed").read_text().split()
    return resumed, json.loads((tmp_path / "exit.json").read_text())


def records(path):
    """(stream, tag, body) of each record: what is left once timestamps go."""
    out = []
    for line in path.read_bytes().splitlines():
        ts, stream, tag, *body = line.split(b" ", 3)
        assert len(ts) == len(b"2026-11-22T10:00:00.123456789Z") and ts.endswith(b"Z")
        out.append((stream, tag, body[0] if body else b""))
    return out


def python_records(tmp_path, chunks, max_size=-1, max_files=1):
    """What ctr.logs.LogWriter writes for the same reads, file by file."""
    d = tmp_path / "py"
    d.mkdir()
    w = logs.LogWriter(str(d / "log"), max_size, max_files)
    for stream, data in chunks:
        w.write(stream, data)
    w.close()
    return {p.name: records(p) for p in d.iterdir()}


def test_records_as_the_python_writer_makes_them(tmp_path):
    long = b"x" * 20000
    child = ("import os, time\n"
             "os.write(1, b'one\\ntwo\\n\\nthree')\n"
             "time.sleep(0.2)\n"
             "os.write(2, b'err\\n')\n"
             "time.sleep(0.2)\n"
             f"os.write(1, b'x' * {len(long)} + b'\\n')\n")
    resumed, record = monitor(tmp_path, child)
    assert resumed[0] == "0" and int(resumed[1]) >= 0  # code, the run's ms
    assert record["exit_code"] == 0 and record["pid"] > 0 and record["finished"].endswith("Z")
    got = records(tmp_path / "log")
    # the long line came in one write, but a pipe may hand it over in two reads
    joined = b"".join(body for stream, _, body in got if body.startswith(b"x"))
    assert joined == long
    want = python_records(tmp_path, [(b"stdout", b"one\ntwo\n\nthree"), (b"stderr", b"err\n")])
    assert got[:5] == want["log"]
    assert got[-1][:2] == (b"stdout", b"F")
    assert all(tag == b"P" for _, tag, _ in got[5:-1])


def test_rotation_keeps_the_python_writers_files(tmp_path):
    lines = [b"line %03d %s\n" % (i, b"y" * (i % 37)) for i in range(120)]
    child = ("import os, time\n"
             f"for line in {lines!r}:\n"
             "    os.write(1, line)\n")
    monitor(tmp_path, child, max_size=1000, max_files=3)
    mine = {p.name: records(p) for p in tmp_path.iterdir() if p.name.startswith("log")}
    # each write ends a line: however reads group them, the records are the same
    assert mine == python_records(tmp_path, [(b"stdout", line) for line in lines], 1000, 3)
    assert sorted(mine) == ["log", "log.1", "log.2"]
    assert all(os.path.getsize(tmp_path / n) <= 1000 for n in mine)


def test_a_killed_child_is_recorded_as_128_plus_the_signal(tmp_path):
    resumed, record = monitor(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert resumed[0] == "137" and record["exit_code"] == 137
    assert not [p for p in os.listdir(tmp_path) if ".tmp." in p]


def test_output_left_after_the_exit_is_drained(tmp_path):
    # a grandchild holds the pipe a moment after the child exited
    child = ("import os, time\n"
             "if os.fork() == 0:\n"
             "    time.sleep(0.3); os.write(1, b'late\\n'); os._exit(0)\n"
             "os._exit(5)\n")
    resumed, _ = monitor(tmp_path, child)
    assert resumed[0] == "5"
    assert records(tmp_path / "log") == [(b"stdout", b"F", b"late")]


def test_attached_clients_reach_the_stdin_and_healthchecks_run_on_a_timer(tmp_path):
    import socket
    import time

    checks = tmp_path / "checks"
    # reads its stdin until "bye", echoing it; runs ~1 s at least
    child = ("import sys, time\n"
             "for line in sys.stdin:\n"
             "    print('got', line.strip(), flush=True)\n"
             "    if line.strip() == 'bye': break\n"
             "time.sleep(0.5)\n")

    def attach():
        sock_path = tmp_path / "attach"
        deadline = time.monotonic() + 10
        while True:  # bound, then listening
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                try:
                    c.connect(str(sock_path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
        for words in (b"hello\n", b"big " + b"z" * 200000 + b"\n", b"bye\n"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(str(sock_path))
                c.sendall(words)
            time.sleep(0.3)

    extra = ("--health-ms", "100", "--health", "/bin/sh", "--health", "-c",
             "--health", f"echo x >> {checks}")
    resumed, record = monitor(tmp_path, child, extra=extra, while_running=attach)
    assert resumed[0] == "0"
    out = logs.backlog(str(tmp_path / "log"))[0]
    text = [line.data for line in out]
    assert text[0] == b"got hello\n" and text[-1] == b"got bye\n"
    assert text[1] == b"got big " + b"z" * 200000 + b"\n"  # larger than a pipe holds
    assert len(checks.read_text().split()) >= 3  # every 100 ms over a run of ~1.4 s
