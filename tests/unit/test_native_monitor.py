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
import os, sys
native, d, log, max_size, max_files, child = sys.argv[1:7]
out_r, out_w = os.pipe()
err_r, err_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.execv(sys.executable, [sys.executable, "-c", child])
os.close(out_w)
os.close(err_w)
os.set_inheritable(out_r, True)
os.set_inheritable(err_r, True)
os.execv(native, ["ctr-monitor", "t", d, str(pid), "--out", str(out_r), "--err", str(err_r),
                  "--log", log, "--max-size", max_size, "--max-files", max_files, "--",
                  "/bin/sh", "-c", 'echo "$@" > "$0/resumed"', d])
"""


def monitor(tmp_path, child, max_size=-1, max_files=1):
    """Run `child` (Python source) under ctr-monitor; (resume's args, exit.json)."""
    log = tmp_path / "log"
    subprocess.run([sys.executable, "-c", DRIVER, NATIVE, str(tmp_path), str(log),
                    str(max_size), str(max_files), child], check=True, timeout=30)
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
