"""ctr-oci with a user namespace from config.json (linux.namespaces "user",
uidMappings/gidMappings as podman's --uidmap or CRI's userns give them): the
container's root is a host id of the mapping, files it makes are owned so on
the host, and bad maps are one error that leaves nothing."""

import os
import shutil
import subprocess
import tempfile

import pytest
import test_oci_runtime
from helpers import wait_for
from oci_helpers import make_rootfs
from test_oci_runtime import _error

env = test_oci_runtime.env  # the fixture: a state root, a busybox root, leftovers checked

BASE = 200000
MAPS = {"uidMappings": [{"containerID": 0, "hostID": BASE, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": BASE, "size": 1000},
                        {"containerID": 1000, "hostID": BASE + 5000, "size": 10}]}


@pytest.fixture
def mapped_root(env):
    """A root owned by the mapped ids, on a path their root can walk (pytest's
    own folders are 0700, which the container's root, a host nobody, cannot
    pass: runc asks the same of a bundle)."""
    top = tempfile.mkdtemp(prefix="ctr-oci-userns-")
    os.chmod(top, 0o755)
    env.rootfs = make_rootfs(os.path.join(top, "rootfs"))
    subprocess.run(["chown", "-R", f"{BASE}:{BASE}", env.rootfs], check=True)
    yield env.rootfs
    shutil.rmtree(top)


def _userns(maps=MAPS):
    def edit(config):
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"].update(maps)
        for caps in config["process"]["capabilities"].values():
            caps.append("CAP_CHOWN")  # runc's default set lacks it
    return edit


def test_the_container_runs_as_mapped_ids(env, mapped_root):
    b = env.bundle("u1", "sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map;"
                   " touch /made-inside; chown 1000:1000 /made-inside 2>&1 || echo refused",
                   edit=_userns())
    r = env("run", "-b", b, "u1")
    assert r.returncode == 0, r.stderr
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert lines[:2] == ["0", "0"]
    assert lines[2:5] == [f"0 {BASE} 65536", f"0 {BASE} 1000", f"1000 {BASE + 5000} 10"]
    st = os.stat(os.path.join(env.rootfs, "made-inside"))
    assert (st.st_uid, st.st_gid) == (BASE + 1000, BASE + 5000)  # through both maps
    os.unlink(os.path.join(env.rootfs, "made-inside"))
    assert env.leftovers() == []


def test_the_host_sees_the_mapped_uid(env, mapped_root):
    b = env.bundle("u2", "sleep", "100", edit=_userns())
    env("create", "-b", b, "u2", check=True)
    env("start", "u2", check=True)
    pid = env.state("u2")["pid"]
    assert wait_for(lambda: "sleep" in open(f"/proc/{pid}/cmdline").read())
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == [str(BASE)] * 4
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    env("delete", "-f", "u2", check=True)
    assert env.leftovers() == []


def test_bad_maps_are_one_error_and_leave_nothing(env):
    cases = [
        ({"uidMappings": [{"containerID": 1, "hostID": BASE, "size": 10}],
          "gidMappings": MAPS["gidMappings"]}, "id 0 must be mapped"),
        ({"uidMappings": MAPS["uidMappings"]}, "gidMappings: a user namespace needs"),
        ({"uidMappings": [{"containerID": 0, "hostID": -1, "size": 10}],
          "gidMappings": MAPS["gidMappings"]}, "uidMappings[0].hostID"),
        # Two ranges over the same host ids: the kernel refuses the map.
        ({"uidMappings": [{"containerID": 0, "hostID": BASE, "size": 10},
                          {"containerID": 0, "hostID": BASE, "size": 10}],
          "gidMappings": MAPS["gidMappings"]}, "cannot write the uid map"),
    ]
    for i, (maps, why) in enumerate(cases):
        b = env.bundle(f"bad{i}", "true", edit=_userns(maps))
        _error(env("create", "-b", b, f"bad{i}"), why)
    assert env.leftovers() == []


def test_a_device_in_a_user_namespace_is_the_hosts_node_bound(env, mapped_root):
    def edit(config):
        _userns()(config)
        config["linux"]["devices"] = [{"path": "/dev/full", "type": "c", "major": 1,
                                       "minor": 7}]
        config["linux"]["resources"]["devices"] = [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"}]
    r = env("run", "-b", env.bundle("ud1", "sh", "-c", "echo x > /dev/full; ls -l /dev/full",
                                    edit=edit), "ud1")
    assert "No space left on device" in r.stderr and r.stdout.startswith("crw"), r
    bad = env.bundle("ud2", "true", edit=lambda c: (edit(c), c["linux"]["devices"].append(
        {"path": "/dev/no-such-node", "type": "c", "major": 1, "minor": 3})))
    _error(env("create", "-b", bad, "ud2"), "linux.devices[1]: in a user namespace")
    assert env.leftovers() == []
