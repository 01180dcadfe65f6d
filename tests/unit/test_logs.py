"""The log format and its rotation (ctr.logs), on files in a temp dir."""

import os
import time

import pytest

from ctr import logs
from ctr.errors import InvalidSpec
from ctr.instance import wants_restart


def read(path, **kw):
    lines, _ = logs.backlog(str(path), **kw)
    return lines


def test_records_give_back_the_bytes_per_stream(tmp_path):
    w = logs.LogWriter(str(tmp_path / "log"))
    w.write(b"stdout", b"one\ntw")
    w.write(b"stderr", b"E\r\x0b\n")
    w.write(b"stdout", b"o\n\nthree")
    w.close()
    lines = read(tmp_path / "log")
    assert [(x.stream, x.data) for x in lines] == [
        (b"stdout", b"one\n"), (b"stderr", b"E\r\x0b\n"), (b"stdout", b"two\n"),
        (b"stdout", b"\n"), (b"stdout", b"three")]
    assert all(len(x.ts) == 30 and x.ts.endswith(b"Z") for x in lines)


def test_long_lines_are_split_and_joined(tmp_path):
    w = logs.LogWriter(str(tmp_path / "log"))
    w.write(b"stdout", b"x" * 20000 + b"\n")
    w.close()
    assert (tmp_path / "log").read_bytes().count(b"\n") == 3  # P, P, F
    assert [x.data for x in read(tmp_path / "log")] == [b"x" * 20000 + b"\n"]


def test_rotation_bounds_each_file_and_the_count(tmp_path):
    path = str(tmp_path / "log")
    w = logs.LogWriter(path, max_size=4096, max_files=3)
    for i in range(2000):
        w.write(b"stdout", b"line %d\n" % i)
    w.close()
    assert sorted(os.listdir(tmp_path)) == ["log", "log.1", "log.2"]
    assert all(os.path.getsize(tmp_path / n) <= 4096 for n in os.listdir(tmp_path))
    data = [x.data for x in read(tmp_path / "log")]
    first = int(data[0].split()[1])
    assert data == [b"line %d\n" % i for i in range(first, 2000)]


def test_a_line_split_across_a_rotation_is_whole_again(tmp_path):
    path = str(tmp_path / "log")
    w = logs.LogWriter(path, max_size=4096, max_files=2)
    w.write(b"stdout", b"a" * 4000)
    w.write(b"stdout", b"b" * 100 + b"\n")
    w.close()
    assert os.path.exists(path + ".1")
    assert [x.data for x in read(tmp_path / "log")] == [b"a" * 4000 + b"b" * 100 + b"\n"]


def test_raw_lines_of_an_older_log_still_print(tmp_path):
    (tmp_path / "log").write_bytes(b"plain output\n")
    assert [x.data for x in read(tmp_path / "log")] == [b"plain output\n"]


def test_parse_time_forms():
    now = logs.timestamp().encode()
    assert logs.parse_time("10m", "--since") < now
    assert logs.parse_time("1h30m", "--since") < logs.parse_time("1h", "--since")
    assert logs.parse_time("0", "--since") == b"1970-01-01T00:00:00.000000000Z"
    assert logs.parse_time("2026-01-02T15:04:05Z", "--since") == b"2026-01-02T15:04:05.000000000Z"
    assert logs.parse_time("2026-01-02T15:04:05+01:00", "--since").startswith(b"2026-01-02T14")
    with pytest.raises(InvalidSpec, match="invalid --until 'soon'"):
        logs.parse_time("soon", "--until")


def test_follow_reads_on_across_a_rotation(tmp_path):
    path = str(tmp_path / "log")
    w = logs.LogWriter(path, max_size=4096, max_files=2)
    w.write(b"stdout", b"before\n")
    lines, current = logs.backlog(path, keep_open=True)
    assert [x.data for x in lines] == [b"before\n"]
    for i in range(200):
        w.write(b"stdout", b"after %03d\n" % i)
    w.close()
    deadline = time.monotonic() + 5
    got = [x.data for x in logs.follow(path, current, lambda: time.monotonic() < deadline and
                                       False, poll=0.01)]
    assert got[-1] == b"after 199\n"


@pytest.mark.parametrize("policy,restarts,code,want", [
    ({"policy": "no"}, 0, 1, False),
    ({"policy": "on-failure", "max_retries": 0}, 50, 1, True),
    ({"policy": "on-failure", "max_retries": 2}, 1, 1, True),
    ({"policy": "on-failure", "max_retries": 2}, 2, 1, False),
    ({"policy": "on-failure", "max_retries": 0}, 0, 0, False),
    ({"policy": "always"}, 9, 0, True),
    ({"policy": "unless-stopped"}, 0, 137, True),
])
def test_restart_decisions(policy, restarts, code, want):
    assert wants_restart(policy, restarts, code) is want
    assert wants_restart(policy, restarts, code, stop_requested=True) is False
