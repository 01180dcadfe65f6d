"""The child-to-parent report: one schema from every writer, the Python ones
and the exec stub (execstub.c, run here for real: a failing execve needs no
root), one reader."""

import errno
import json
import os
import subprocess

import pytest

from ctr import report
from ctr.errors import EXIT_CANNOT_INVOKE, EXIT_CTR, EXIT_NOT_FOUND, StartError
from ctr.native import EXEC_STUB
from ctr.process import InitFailure

FIELDS = {"step", "errno", "message", "code"}


def drain(r):
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_back(raw):
    """What ctr.report.read makes of `raw` on the pipe."""
    r, w = os.pipe()
    os.write(w, raw)
    os.close(w)
    try:
        return report.read(r)
    finally:
        os.close(r)


def written(write):
    """What write(fd) puts on the pipe: (the bytes, the Report read back)."""
    r, w = os.pipe()
    try:
        write(w)
    finally:
        os.close(w)
    try:
        raw = drain(r)
    finally:
        os.close(r)
    return raw, read_back(raw)


def test_eof_means_the_child_execd():
    r, w = os.pipe()
    os.close(w)
    assert report.read(r) is None
    os.close(r)


def test_an_init_failure_speaks_for_itself():
    err = InitFailure("sh: executable file not found in $PATH", errno.ENOENT, EXIT_NOT_FOUND)
    raw, got = written(lambda fd: report.write_failure(fd, err, report.EXEC))
    assert set(json.loads(raw)) == FIELDS
    assert (got.step, got.errno, got.code) == (report.EXEC, errno.ENOENT, EXIT_NOT_FOUND)
    assert got.message == "sh: executable file not found in $PATH"


def test_other_errors_name_the_step():
    err = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")
    _, got = written(lambda fd: report.write_failure(fd, err, report.ROOTFS))
    assert got.message == "preparing the root filesystem: No such file or directory: /x"
    assert (got.step, got.errno, got.code) == (report.ROOTFS, errno.ENOENT, EXIT_CTR)
    _, got = written(lambda fd: report.write_failure(fd, ValueError("bad"), report.SECCOMP))
    assert got.message == "building the seccomp filter: ValueError: bad"
    assert (got.errno, got.code) == (0, EXIT_CTR)


def test_every_step_has_words():
    steps = {v for k, v in vars(report).items() if k.isupper() and isinstance(v, str)}
    assert steps == set(report.DOING)


def test_the_parent_raises_a_start_error():
    err = report.Report(report.EXEC, "x: permission denied", errno.EACCES, EXIT_CANNOT_INVOKE)
    e = err.error("starting box")
    assert isinstance(e, StartError)
    assert (str(e), e.exit_code, e.errno) == ("starting box: x: permission denied", 126, 13)
    assert str(err.error()) == "x: permission denied"


def test_a_garbled_report_is_an_error_not_a_crash():
    _, got = written(lambda fd: os.write(fd, b'{"step": "ro'))
    assert got.code == EXIT_CTR and "garbled" in got.message


def run_stub(path):
    """The built ctr-exec, asked to exec `path`: (its exit status, its report)."""
    r, w = os.pipe()
    try:
        proc = subprocess.run(["ctr-exec", str(w), path, "argv0"], executable=EXEC_STUB,
                              pass_fds=(w,), capture_output=True)
    finally:
        os.close(w)
    try:
        return proc.returncode, drain(r)
    finally:
        os.close(r)


@pytest.mark.parametrize("path,code,err,message", [
    ("/nonexistent/cmd", EXIT_NOT_FOUND, errno.ENOENT,
     "/nonexistent/cmd: no such file or directory"),
    ("/", EXIT_CANNOT_INVOKE, errno.EACCES, "/: permission denied"),
    ("/dev/null", EXIT_CANNOT_INVOKE, errno.EACCES, "/dev/null: permission denied"),
])
def test_the_exec_stub_writes_the_same_schema(path, code, err, message):
    status, raw = run_stub(path)
    assert status == code
    assert set(json.loads(raw)) == FIELDS
    got = read_back(raw)
    assert (got.step, got.errno, got.code, got.message) == (report.EXEC, err, code, message)


def test_the_exec_stub_escapes_the_path():
    path = '/no/such/"quoted"\\back\tslash\x01'
    _, raw = run_stub(path)
    assert read_back(raw).message == f"{path}: no such file or directory"


def test_the_reader_reads_what_the_exec_stub_formats():
    """The bytes execstub.c's format makes, for an errno it has no words for."""
    raw = (b'{"step": "exec", "errno": 8, "code": 126, '
           b'"message": "/bin/x: cannot execute: Exec format error"}')
    got = read_back(raw)
    assert (got.step, got.errno, got.code) == (report.EXEC, 8, 126)
    assert got.message == "/bin/x: cannot execute: Exec format error"


def test_the_exec_stub_names_other_errors(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01 not a program")
    junk.chmod(0o755)
    status, raw = run_stub(str(junk))
    got = read_back(raw)
    assert status == EXIT_CANNOT_INVOKE
    assert (got.step, got.errno, got.code) == (report.EXEC, errno.ENOEXEC, EXIT_CANNOT_INVOKE)
    assert got.message == f"{junk}: cannot execute: {os.strerror(errno.ENOEXEC)}"


def test_the_monitor_says_started_with_the_pid():
    raw, got = written(lambda fd: report.write(fd, report.STARTED, "box runs", code=0, pid=42))
    assert set(json.loads(raw)) == FIELDS | {"pid"}
    assert (got.step, got.code, got.pid) == (report.STARTED, 0, 42)
