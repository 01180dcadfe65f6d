import json
import os

import pytest

from ctr.errors import Conflict, NotFound, StateError
from ctr.spec import build_spec
from ctr.store import Store, atomic_write_json, proc_starttime

IMAGE = {"name": "busybox", "id": "sha256:abc", "cmd": ["sh"]}


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "root")).ensure()


def spec(name="a"):
    return build_spec(image=IMAGE, command=["true"], name=name)


def test_create_and_read(store):
    rec = store.create_record(spec())
    assert rec.read_state()["status"] == "created"
    assert rec.spec.name == "a"
    assert [r.name for r in store.records()] == ["a"]
    for sub in ("upper", "work", "rootfs"):
        assert os.path.isdir(os.path.join(rec.dir, sub))


def test_duplicate_name(store):
    store.create_record(spec())
    with pytest.raises(Conflict, match="already in use"):
        store.create_record(spec())


def test_unknown(store):
    for name in ("nope", "../x", ".hidden"):
        with pytest.raises(NotFound):
            store.record(name)


def test_atomic_write_leaves_no_temp(tmp_path):
    path = str(tmp_path / "s.json")
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.load(open(path)) == {"a": 2}
    assert os.listdir(tmp_path) == ["s.json"]


def test_dead_process_is_reconciled_to_stopped(store):
    rec = store.create_record(spec())
    rec.update_state(status="running", pid=os.getpid(), starttime=proc_starttime(os.getpid()))
    assert rec.state()["status"] == "running"  # we are alive
    rec.update_state(starttime=1)  # same pid, another process: a recycled pid
    state = rec.state()
    assert state["status"] == "stopped"
    assert state["exit_code"] is None and state["reason"].startswith("lost")


def test_corrupt_state(store):
    rec = store.create_record(spec())
    with open(rec.state_path, "w") as f:
        f.write("[1, 2")
    with pytest.raises(StateError, match="corrupt"):
        rec.state()
    with open(rec.state_path, "w") as f:
        f.write("[]")
    with pytest.raises(StateError, match="corrupt"):
        rec.state()


def test_unusable_root(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(StateError, match="not usable"):
        Store(str(tmp_path / "f" / "root")).ensure()


def test_proc_starttime():
    assert proc_starttime(os.getpid()) > 0
    assert proc_starttime(2**22 + 1) is None


def test_remove_takes_the_record_and_never_follows_links(store, tmp_path):
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("x")
    rec = store.create_record(spec())
    deep = os.path.join(rec.upper, "etc", "a", "b")
    os.makedirs(deep)
    with open(os.path.join(deep, "f"), "w") as f:
        f.write("y")
    os.symlink(str(outside), os.path.join(rec.upper, "link-to-dir"))
    os.symlink(str(outside / "keep" / "file"), os.path.join(deep, "link-to-file"))
    os.mkfifo(os.path.join(rec.upper, "fifo"))
    rec.remove()
    assert not os.path.exists(rec.dir)
    assert (outside / "keep" / "file").read_text() == "x"
    rec.remove()  # already gone: nothing to do

