"""Session fixtures: the busybox image built once, the /ctr cgroup parents removed
at the end when this session made them."""

import os
import subprocess

import pytest
from helpers import CTR, cgroup_parents, instance_cgroups, processes


@pytest.fixture(scope="session")
def cgroup_parents_before():
    """At the end of the session: fail the run if any instance cgroup or monitor
    is left, and remove the /ctr parents if this session made them."""
    before = set(cgroup_parents())
    yield before
    left = instance_cgroups() + processes("ctr-monitor", ours_only=True)
    assert not left, f"the test session left things behind: {left}"
    for parent in set(cgroup_parents()) - before:
        try:
            os.rmdir(parent)
        except OSError:
            pass


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory):
    """One busybox image built per session; tests hard-link it into their roots."""
    root = str(tmp_path_factory.mktemp("image-root"))
    subprocess.run([CTR, "--root", root, "image", "build", "busybox"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(root, "images", "busybox")




SHARED_KERNELS = "/var/lib/ctr/kernels"  # where `make install` fetched the guest kernel


@pytest.fixture(scope="session")
def vm_kernels(tmp_path_factory):
    """The guest kernel VM tests boot: the one `make install` fetched, else one
    fetched now for this session."""
    if os.path.isfile(os.path.join(SHARED_KERNELS, "default", "vmlinux")):
        return SHARED_KERNELS
    root = str(tmp_path_factory.mktemp("kernel-root"))
    subprocess.run([CTR, "--root", root, "kernel", "fetch"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(root, "kernels")
