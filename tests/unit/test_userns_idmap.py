"""--userns=auto's choice between idmapped layers and shifted copies: probed once
per kernel and recorded, overridable; and the host side of the idmapped mounts
through a recording fake of the syscall seam."""

import json
import os

import pytest

from ctr import userns
from ctr.errors import CtrError

IDS = {"uid": 1500000000, "gid": 1600000000, "size": 65536}


@pytest.fixture
def probes(monkeypatch):
    calls = []

    def probe(root, ids):
        calls.append(ids)
        return False, "mount_setattr: Invalid argument"

    monkeypatch.setattr(userns, "probe", probe)
    monkeypatch.delenv(userns.IDMAP_ENV, raising=False)
    return calls


def test_the_probe_runs_once_per_kernel_and_is_recorded(tmp_path, probes):
    assert userns.use_idmap(str(tmp_path), IDS) is False
    assert userns.use_idmap(str(tmp_path), IDS) is False
    assert len(probes) == 1
    with open(tmp_path / userns.IDMAP_RECORD) as f:
        assert json.load(f) == {"kernel": os.uname().release, "idmap": False,
                                "reason": "mount_setattr: Invalid argument"}
    # another kernel (a reboot into an older one): probed again
    (tmp_path / userns.IDMAP_RECORD).write_text(json.dumps(
        {"kernel": "5.10.0", "idmap": True, "reason": ""}))
    assert userns.use_idmap(str(tmp_path), IDS) is False and len(probes) == 2


def test_a_damaged_record_is_probed_again(tmp_path, probes):
    (tmp_path / userns.IDMAP_RECORD).write_text("{")
    assert userns.use_idmap(str(tmp_path), IDS) is False and len(probes) == 1


@pytest.mark.parametrize("value, expected", [("on", True), ("off", False)])
def test_the_override_needs_no_probe(tmp_path, probes, monkeypatch, value, expected):
    monkeypatch.setenv(userns.IDMAP_ENV, value)
    assert userns.use_idmap(str(tmp_path), IDS) is expected
    assert probes == [] and not (tmp_path / userns.IDMAP_RECORD).exists()


def test_a_bad_override_is_an_error(tmp_path, probes, monkeypatch):
    monkeypatch.setenv(userns.IDMAP_ENV, "yes")
    with pytest.raises(CtrError, match="expected auto, on or off"):
        userns.use_idmap(str(tmp_path), IDS)


class Seam:
    def __init__(self):
        self.calls = []

    def userns_fd(self, uid_map, gid_map):
        self.calls.append(("userns_fd", uid_map, gid_map))
        return os.open("/dev/null", os.O_RDONLY)

    def idmapped_tree(self, path, userns_fd):
        self.calls.append(("idmapped_tree", path))
        if path.endswith("bad"):
            raise OSError(22, "Invalid argument")
        return os.open("/dev/null", os.O_RDONLY)


def test_each_layer_is_idmapped_with_the_blocks_maps():
    sc = Seam()
    fds = userns.open_idmapped(["/l/top", "/l/bottom"], IDS, sc=sc)
    assert sc.calls == [("userns_fd", "0 1500000000 65536\n", "0 1600000000 65536\n"),
                        ("idmapped_tree", "/l/top"), ("idmapped_tree", "/l/bottom")]
    for fd in fds:
        os.close(fd)


def test_a_refused_layer_closes_what_was_opened():
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        userns.open_idmapped(["/l/top", "/l/bad"], IDS, sc=Seam())
    assert len(os.listdir("/proc/self/fd")) == before
