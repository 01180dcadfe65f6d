import pytest

from ctr import userns
from ctr.errors import CtrError


def test_allocate_takes_the_first_free_block_of_ctrs_ranges(tmp_path, monkeypatch):
    path = tmp_path / "subid"
    path.write_text("ctr:1000:100\nalice:100000:65536\nctr:200000:140000\n")
    monkeypatch.setenv("CTR_SUBUID", str(path))
    monkeypatch.setenv("CTR_SUBGID", str(path))
    assert userns.allocate([]) == {"uid": 200000, "gid": 200000, "size": 65536}
    taken = [{}, {"uid": 200000, "gid": 200000, "size": 65536}]
    assert userns.allocate(taken)["uid"] == 265536
    taken.append({"uid": 265536, "gid": 265536, "size": 65536})
    with pytest.raises(CtrError, match="every block"):
        userns.allocate(taken)  # 140000 ids hold two blocks, not three
