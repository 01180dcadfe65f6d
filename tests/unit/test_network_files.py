"""The networks' files without root: leases, the pool, port claims, the one
hosts file of a network and the copies of instances with --add-host lines.
Each operation touches its own lines only, and nothing stays after release."""

import os

import pytest

from ctr.errors import Conflict
from ctr.net.networks import Networks
from ctr.store import Store

NET = {"name": "bridge", "bridge": "ctr0", "subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}
PORT = {"host_ip": "0.0.0.0", "host_port": 8080, "port": 80, "proto": "tcp"}


@pytest.fixture
def networks(tmp_path):
    return Networks(Store(str(tmp_path)))


def owner(n):
    return {"id": f"{n}" * 64, "name": f"i{n}", "names": [f"i{n}", f"h{n}"]}


def hosts_lines(networks):
    with open(networks.hosts_path("bridge")) as f:
        return f.read().splitlines()[3:]


def leftovers(networks):
    found = []
    for top, _dirs, files in os.walk(networks.dir):
        found += [os.path.relpath(os.path.join(top, f), networks.dir) for f in files]
    return sorted(f for f in found if f not in ("lock", "leases/bridge/pool.json",
                                                 "hosts/bridge"))


def test_leases_hosts_lines_and_release(networks):
    ip1, _, _ = networks.allocate(NET, owner(1), ports=(PORT,))
    ip2, _, _ = networks.allocate(NET, owner(2))
    assert (ip1, ip2) == ("10.88.0.2", "10.88.0.3")
    assert hosts_lines(networks) == ["10.88.0.2\ti1 h1", "10.88.0.3\ti2 h2"]
    with pytest.raises(Conflict, match="already published by i1"):
        networks.allocate(NET, owner(3), ports=(PORT,))
    networks.release("bridge", ip1, owner(1)["id"])
    assert hosts_lines(networks) == ["10.88.0.3\ti2 h2"]
    # the lowest free address comes back first
    assert networks.allocate(NET, owner(3))[0] == "10.88.0.2"
    networks.release("bridge", "10.88.0.2", owner(3)["id"])
    networks.release("bridge", ip2, "not the owner")
    assert hosts_lines(networks) == ["10.88.0.3\ti2 h2"]
    networks.release("bridge", ip2, owner(2)["id"])
    assert hosts_lines(networks) == [] and leftovers(networks) == []


def test_an_add_host_copy_follows_the_network_and_goes_with_its_lease(networks, tmp_path):
    copy = tmp_path / "hosts-of-2"
    networks.allocate(NET, owner(1))
    ip2, _, _ = networks.allocate(NET, owner(2), hosts_copy=(str(copy), [("api", "10.9.9.9")]))
    assert copy.read_text().splitlines()[3:] == ["10.88.0.2\ti1 h1", "10.88.0.3\ti2 h2",
                                                 "10.9.9.9\tapi"]
    inode = copy.stat().st_ino
    ip3, _, _ = networks.allocate(NET, owner(3))
    assert "10.88.0.4\ti3 h3" in copy.read_text() and copy.stat().st_ino == inode
    assert "api" not in open(networks.hosts_path("bridge")).read()
    networks.release("bridge", ip2, owner(2)["id"])
    networks.release("bridge", ip3, owner(3)["id"])
    assert "i3" in copy.read_text()  # no longer kept: its instance is gone
    networks.release("bridge", "10.88.0.2", owner(1)["id"])
    assert leftovers(networks) == []


def test_rename_rewrites_its_line_only(networks):
    networks.allocate(NET, owner(1))
    ip2, _, _ = networks.allocate(NET, owner(2))
    networks.rename("bridge", ip2, owner(2)["id"], "new", ["h2", "new"])
    assert hosts_lines(networks) == ["10.88.0.2\ti1 h1", "10.88.0.3\th2 new"]
    assert networks.lease("bridge", ip2)["name"] == "new"
    networks.rename("bridge", ip2, "someone else", "x")
    assert networks.lease("bridge", ip2)["name"] == "new"
