import os
import shutil
import subprocess

import pytest
from helpers import Ctr, cgroup_parents, leftovers

if os.geteuid() != 0:
    pytest.skip("integration tests need root (they run real containers)",
                allow_module_level=True)


@pytest.fixture
def ctr(tmp_path, busybox_image, cgroup_parents_before):
    """A state root of this test's own, with the session's busybox image, and a
    check afterwards that the test left nothing behind."""
    root = str(tmp_path / "root")
    os.makedirs(os.path.join(root, "images"))
    subprocess.run(["cp", "-al", busybox_image, os.path.join(root, "images", "busybox")],
                   check=True)
    c = Ctr(root)
    yield c
    # Remove what the test kept on purpose (stopped instances), then insist
    # that nothing else remains: no mount, cgroup or process.
    for name in os.listdir(c.path("instances")) if os.path.isdir(c.path("instances")) else []:
        c("rm", "-f", name)
    left = leftovers(root)
    left += sorted(set(cgroup_parents()) - cgroup_parents_before)
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"the test left things behind: {left}"


@pytest.fixture
def subids(tmp_path):
    """A subordinate range of the test's own, so the host's /etc/subuid is not
    needed nor touched."""
    for p in (tmp_path, *tmp_path.parents):  # pytest makes its folders 0700
        if str(p) in ("/", "/tmp"):
            break
        p.chmod(p.stat().st_mode | 0o001)
    path = tmp_path / "subid"
    path.write_text("someone:100000:65536\nctr:1500000000:200000\n")
    return {"CTR_SUBUID": str(path), "CTR_SUBGID": str(path)}
