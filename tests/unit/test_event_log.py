"""ctr.events: one write per event, whole lines under concurrent writers,
rotation, filters."""

import json
import os

import pytest

from ctr import events
from ctr.errors import InvalidSpec


def _lines(root):
    out = []
    for name in events.files(root):
        if os.path.exists(name):
            with open(name, "rb") as f:
                out += [json.loads(line) for line in f]
    return out


def test_concurrent_writers_never_interleave(tmp_path):
    root = str(tmp_path)
    pids = []
    for w in range(4):
        pid = os.fork()
        if pid == 0:
            for i in range(200):
                events.append(root, events.record("container", "start", f"{w}-{i}",
                                                  {"name": "x" * (i % 300)}),
                              max_size=64 << 10)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    got = _lines(root)  # every line parses: no torn or mixed records
    assert os.path.exists(events.path(root) + ".1")  # rotated on the way
    assert len({e["Actor"]["ID"] for e in got}) == len(got) <= 800
    assert os.path.getsize(events.path(root)) <= (64 << 10) + 1024


def test_read_bounds_and_torn_lines(tmp_path):
    root = str(tmp_path)
    for t in (10, 20, 30):
        events.append(root, events.record("container", "start", str(t), {}, now_ns=t))
    with open(events.path(root), "ab") as f:
        f.write(b'{"half": ')
    assert [e["timeNano"] for e in events.read(root, since=15, until=30)] == [20, 30]
    assert [e["timeNano"] for e in events.read(root)] == [10, 20, 30]


def test_filters():
    die = events.record("container", "die", "abc123", {"name": "web", "image": "busybox",
                                                       "exitCode": 3, "team": "a"})
    health = events.record("container", "health_status: healthy", "abc123", {"name": "web"})
    pull = events.record("image", "pull", "sha256:1", {"name": "alpine"})
    f = events.parse_filters
    assert events.matches(die, f(["container=web"])) and events.matches(die, f(["container=abc"]))
    assert not events.matches(pull, f(["container=alpine"]))
    assert events.matches(die, f(["event=start", "event=die"]))
    assert not events.matches(die, f(["event=die", "type=image"]))
    assert events.matches(health, f(["event=health_status"]))
    assert events.matches(die, f(["label=team=a"])) and not events.matches(die, f(["label=team=b"]))
    assert events.matches(pull, f(["image=alpine"])) and events.matches(die, f(["image=busybox"]))
    assert die["Actor"]["Attributes"]["exitCode"] == "3" and die["from"] == "busybox"
    assert events.text(die).endswith(
        "container die abc123 (exitCode=3, image=busybox, name=web, team=a)")
    for bad in ("colour=red", "type=network", "event", "container="):
        with pytest.raises(InvalidSpec):
            f([bad])
