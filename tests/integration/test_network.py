"""Networking, as users check it, in network namespaces the test makes: "host"
(where ctr runs, so its bridge, addresses and nft rules live and die there) and
"outside", joined to the host by a veth (192.0.2.1 on the host, 192.0.2.2
outside). Nothing here touches the machine's own network."""

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import wait_for

BUSYBOX = "/bin/busybox"
# The outside's server: answers each connection with the address it came from.
ECHO_PEER = ("import socket; s = socket.socket(); "
             "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
             "s.bind(('0.0.0.0', 9000)); s.listen()\n"
             "while True:\n c, a = s.accept(); c.sendall(a[0].encode()); c.close()")


class Lab:
    def __init__(self):
        self.procs = [subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
                      for _ in range(2)]
        self.host_pid, self.out_pid = (p.pid for p in self.procs)
        assert wait_for(lambda: all(os.readlink(f"/proc/{p}/ns/net") !=
                                    os.readlink("/proc/self/ns/net") for p in
                                    (self.host_pid, self.out_pid)))
        subprocess.run(["ip", "link", "add", "h0", "netns", str(self.host_pid), "type", "veth",
                        "peer", "name", "o0", "netns", str(self.out_pid)], check=True)
        for who, ifname, addr in ((self.host, "h0", "192.0.2.1/24"),
                                  (self.out, "o0", "192.0.2.2/24")):
            who("ip", "link", "set", "lo", "up", check=True)
            who("ip", "addr", "add", addr, "dev", ifname, check=True)
            who("ip", "link", "set", ifname, "up", check=True)

    def _in(self, pid, *cmd, check=False, **kw):
        kw.setdefault("capture_output", True)
        return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", *cmd], text=True,
                              check=check, timeout=60, **kw)

    def host(self, *cmd, **kw):
        return self._in(self.host_pid, *cmd, **kw)

    def out(self, *cmd, **kw):
        return self._in(self.out_pid, *cmd, **kw)

    def out_server(self):
        p = subprocess.Popen(["nsenter", f"--net=/proc/{self.out_pid}/ns/net", "python3", "-c",
                              ECHO_PEER])
        self.procs.append(p)
        assert wait_for(lambda: "9000" in self.out("ss", "-ltn").stdout)

    def links(self):
        return json.loads(self.host("ip", "-j", "link").stdout)

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def lab(ctr):
    lab = Lab()
    ctr.prefix = ["nsenter", f"--net=/proc/{lab.host_pid}/ns/net"]
    yield lab
    for name in os.listdir(ctr.path("instances")) if os.path.isdir(ctr.path("instances")) else []:
        ctr("rm", "-f", name)
    # nothing of any instance is left: no veth, no published-port rule, no lease
    left = [link["ifname"] for link in lab.links() if link["ifname"].startswith(("veth", "tap"))]
    left += [line for line in lab.host("nft", "list", "ruleset").stdout.splitlines()
             if 'comment "ctr:' in line]
    left += network_files_left(ctr)
    lab.close()
    assert not left, f"left behind: {left}"


def network_files_left(ctr):
    """What an instance leaves in the networks' files: leases, port claims,
    lines of a network's hosts file, hosts copies (--add-host)."""
    left = []
    for folder, keep in (("leases", {"pool.json"}), ("ports", set())):
        for top, _dirs, files in os.walk(ctr.path("networks", folder)):
            left += [os.path.join(top, f) for f in files if f not in keep]
    hosts = ctr.path("networks", "hosts")
    for entry in os.listdir(hosts) if os.path.isdir(hosts) else []:
        path = os.path.join(hosts, entry)
        if os.path.isdir(path):
            left += [os.path.join(path, f) for f in os.listdir(path)]
            continue
        with open(path) as f:
            left += [ln for ln in f.read().splitlines()[3:] if ln]  # past loopback's lines
    return left


def run_d(ctr, name, *args):
    ctr("run", "-d", "--name", name, *args, check=True)
    return ctr.state(name)["net"]


def httpd(ctr, name, *opts):
    return run_d(ctr, name, *opts, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")


def test_bridge_address_route_and_etc_files(ctr, lab):
    r = ctr("run", "--rm", "--name", "one", "--hostname", "box", "busybox", "sh", "-c",
            "ip -4 -o addr show eth0; ip route; cat /etc/hostname; grep box /etc/hosts")
    assert r.returncode == 0, r.stderr
    assert "inet 10.88.0.2/16" in r.stdout
    assert "default via 10.88.0.1 dev eth0" in r.stdout
    assert "box\n" in r.stdout and "10.88.0.2\tbox one" in r.stdout


def test_container_to_container_by_ip_and_by_name(ctr, lab):
    a = httpd(ctr, "a", "--hostname", "alpha")
    assert a["ip"] == "10.88.0.2" and a["mac"] == "02:42:0a:58:00:02"
    for target in (a["ip"], "a", "alpha"):
        r = ctr("run", "--rm", "busybox", "wget", "-q", "-O", "-", f"http://{target}/hostname")
        assert r.stdout == "alpha\n", (target, r.stderr)
    # and a's /etc/hosts learns of b while b lives
    run_d(ctr, "b", "busybox", "sleep", "1000")
    r = ctr("exec", "a", "cat", "/etc/hosts")
    assert "10.88.0.3\tb" in r.stdout
    ctr("rm", "-f", "b", check=True)
    assert "\tb" not in ctr("exec", "a", "cat", "/etc/hosts").stdout


def test_peers_resolve_through_one_hosts_file_their_add_hosts_through_a_copy(ctr, lab):
    run_d(ctr, "a", "busybox", "sleep", "1000")
    run_d(ctr, "c", "--add-host", "api:10.9.9.9", "busybox", "sleep", "1000")
    r = ctr("exec", "a", "sh", "-c", "echo 10.1.1.1 x >> /etc/hosts")
    assert r.returncode != 0 and "Read-only file system" in r.stderr  # shared: nobody writes
    run_d(ctr, "b", "--hostname", "bee", "busybox", "sleep", "1000")
    for who in ("a", "c"):
        hosts = ctr("exec", who, "cat", "/etc/hosts", check=True).stdout
        assert "10.88.0.4	bee b\n" in hosts, (who, hosts)
        r = ctr("exec", who, "ping", "-c", "1", "-W", "5", "bee")
        assert r.returncode == 0 and "10.88.0.4" in r.stdout, (who, r.stdout, r.stderr)
    hosts = ctr("exec", "c", "cat", "/etc/hosts", check=True).stdout
    assert hosts.endswith("10.9.9.9\tapi\n") and "\ta " in hosts
    assert "10.9.9.9" not in ctr("exec", "a", "cat", "/etc/hosts", check=True).stdout
    # container:NAME sees its target's file
    r = ctr("run", "--rm", "--network", "container:c", "busybox", "cat", "/etc/hosts",
            check=True)
    assert r.stdout == hosts
    ctr("rm", "-f", "b", check=True)
    for who in ("a", "c"):
        assert "bee" not in ctr("exec", who, "cat", "/etc/hosts", check=True).stdout
    ctr("rm", "-f", "a", "c", check=True)
    assert network_files_left(ctr) == []


def test_outbound_nat_shows_the_hosts_address(ctr, lab):
    lab.out_server()
    r = ctr("run", "--rm", "busybox", "nc", "192.0.2.2", "9000")
    assert r.stdout == "192.0.2.1", r.stderr  # masqueraded: the outside never sees 10.88/16


def test_published_port_from_outside_and_from_the_host(ctr, lab):
    net = httpd(ctr, "web", "--hostname", "webhost", "-p", "8080:80")
    assert net["ports"] == [{"host_ip": "0.0.0.0", "host_port": 8080, "port": 80,
                             "proto": "tcp"}]
    r = lab.out(BUSYBOX, "wget", "-q", "-O", "-", "http://192.0.2.1:8080/hostname")
    assert r.stdout == "webhost\n", r.stderr
    for addr in ("192.0.2.1", "127.0.0.1"):
        r = lab.host(BUSYBOX, "wget", "-q", "-O", "-", f"http://{addr}:8080/hostname")
        assert r.stdout == "webhost\n", (addr, r.stderr)
    # the same host port again: refused, nothing left
    r = ctr("run", "--name", "web2", "-p", "8080:81", "busybox", "true")
    assert r.returncode == 125
    assert r.stderr == "ctr: error: port 8080/tcp is already published by web\n"
    assert not os.path.exists(ctr.path("instances", "web2"))
    ctr("rm", "-f", "web", check=True)
    r = lab.out(BUSYBOX, "wget", "-q", "-T", "2", "-O", "-", "http://192.0.2.1:8080/hostname")
    assert r.returncode != 0  # unpublished with its instance


def test_network_modes_none_host_and_container(ctr, lab):
    r = ctr("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert r.stdout.split() == ["lo"]
    r = ctr("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    assert " h0@" in r.stdout  # the host's own links
    a = run_d(ctr, "main", "busybox", "httpd", "-f", "-p", "127.0.0.1:80", "-h", "/etc")
    r = ctr("run", "--rm", "--network", "container:main", "busybox", "sh", "-c",
            "ip -4 -o addr show eth0; wget -q -O - http://127.0.0.1/hostname")
    assert f"inet {a['ip']}/16" in r.stdout
    assert r.stdout.endswith(ctr.state("main")["net"]["ip"] and
                             ctr.inspect("main")["spec"]["hostname"] + "\n")
    r = ctr("run", "--rm", "--network", "container:nope", "busybox", "true")
    assert r.returncode == 125 and "no such instance" in r.stderr


def test_named_networks(ctr, lab):
    assert ctr("network", "create", "--subnet", "10.77.0.0/24", "back").returncode == 0
    r = ctr("network", "ls", "--format", "json")
    nets = {n["name"]: n for n in json.loads(r.stdout)}
    assert nets["back"]["subnet"] == "10.77.0.0/24" and nets["back"]["bridge"] == "ctr-back"
    assert "bridge" in nets
    db = httpd(ctr, "db", "--network", "back", "--hostname", "dbhost")
    assert db["ip"] == "10.77.0.2" and db["network"] == "back"
    r = ctr("run", "--rm", "--network", "back", "busybox", "wget", "-q", "-O", "-",
            "http://db/hostname")
    assert r.stdout == "dbhost\n"
    # another network does not know the name
    r = ctr("run", "--rm", "busybox", "wget", "-q", "-T", "2", "-O", "-", "http://db/hostname")
    assert r.returncode != 0
    r = ctr("network", "rm", "back")
    assert r.returncode == 125 and "in use by db" in r.stderr
    ctr("rm", "-f", "db", check=True)
    assert ctr("network", "rm", "back").returncode == 0
    assert "ctr-back" not in [link["ifname"] for link in lab.links()]
    assert "ctr-net:back" not in lab.host("nft", "list", "ruleset").stdout


@pytest.mark.parametrize("args,msg", [
    (["network", "create", "--subnet", "192.0.2.0/25", "x"], "overlaps the host's route"),
    (["network", "create", "--subnet", "10.88.5.0/24", "x"], "overlaps network bridge"),
    (["network", "create", "--subnet", "10.1.2.3/24", "x"], "invalid subnet"),
    (["network", "create", "bridge"], "reserved"),
    (["network", "rm", "bridge"], "cannot be removed"),
    (["network", "rm", "nope"], "no such network: nope"),
    (["run", "--network", "nope", "busybox", "true"], "no such network: nope"),
    (["run", "-p", "80", "busybox", "true"], "invalid port"),
    (["run", "-p", "1.2.3:80:80", "busybox", "true"], "invalid port"),
    (["run", "--network", "none", "-p", "80:80", "busybox", "true"], "need a bridge network"),
    (["run", "--ip", "10.99.0.5", "busybox", "true"], "not a free host address"),
    (["run", "--ip", "10.88.0.1", "busybox", "true"], "not a free host address"),
    (["run", "--ip", "banana", "busybox", "true"], "invalid --ip"),
])
def test_bad_network_input(ctr, lab, args, msg):
    r = ctr(*args)
    assert r.returncode == 125 and r.stderr.startswith("ctr: error: ") and msg in r.stderr, \
        r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert not os.path.isdir(ctr.path("instances")) or not os.listdir(ctr.path("instances"))
    assert not [n for n in json.loads(ctr("network", "ls", "--format", "json").stdout)
                if n["name"] == "x"]


def test_fixed_address_conflict_and_exhaustion(ctr, lab):
    ctr("network", "create", "--subnet", "10.66.0.0/30", "tiny", check=True)  # one address
    assert run_d(ctr, "t1", "--network", "tiny", "busybox", "sleep", "1000")["ip"] == "10.66.0.2"
    r = ctr("run", "--name", "t2", "--network", "tiny", "busybox", "true")
    assert r.returncode == 125 and "no free address left in network tiny" in r.stderr
    assert run_d(ctr, "f1", "--ip", "10.88.3.4", "busybox", "sleep", "1000")["ip"] == "10.88.3.4"
    r = ctr("run", "--name", "f2", "--ip", "10.88.3.4", "busybox", "true")
    assert r.returncode == 125 and "address 10.88.3.4 is in use by f1" in r.stderr
    ctr("rm", "-f", "t1", "f1", check=True)
    ctr("network", "rm", "tiny", check=True)


def test_the_lease_of_an_instance_that_died_unwatched_is_reclaimed(ctr, lab):
    run_d(ctr, "lost", "--ip", "10.88.9.9", "-p", "9090:80", "busybox", "sleep", "1000")
    state = ctr.state("lost")
    os.kill(state["reaper_pid"], signal.SIGKILL)
    os.kill(state["pid"], signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{state['pid']}"))
    # the address and the port are free again, the dead one's rules are gone
    net = run_d(ctr, "heir", "--ip", "10.88.9.9", "-p", "9090:80", "busybox", "sleep", "1000")
    assert net["ip"] == "10.88.9.9"
    rules = lab.host("nft", "list", "ruleset").stdout
    assert f"ctr:{ctr.inspect('lost')['id']}" not in rules
    ctr("rm", "-f", "lost", "heir", check=True)


def test_parallel_starts_get_different_addresses(ctr, lab):
    names = [f"p{i}" for i in range(50)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: ctr("run", "-d", "--name", n, "busybox", "sleep",
                                              "1000"), names))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    ips = [ctr.state(n)["net"]["ip"] for n in names]
    assert len(set(ips)) == 50
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: ctr("rm", "-f", n), names))
    # every address went back to the pool
    assert run_d(ctr, "after", "busybox", "sleep", "1000")["ip"] == "10.88.0.2"


@pytest.fixture
def vm_ctr(ctr, vm_kernels):
    os.symlink(vm_kernels, ctr.path("kernels"))
    return ctr


def test_a_vm_and_a_container_on_one_bridge(vm_ctr, lab):
    ctr = vm_ctr
    httpd(ctr, "web")
    net = run_d(ctr, "vm", "--vm", "-p", "8080:80", "busybox", "httpd", "-f", "-p", "80",
                "-h", "/etc")
    assert net["tap"].startswith("tap") and net["ip"] == "10.88.0.3"
    # VM -> container, by name; container -> VM, by name
    r = ctr("exec", "vm", "wget", "-q", "-O-", "http://web/hostname")
    assert r.returncode == 0 and r.stdout.strip() == ctr.inspect("web")["spec"]["hostname"]
    r = ctr("exec", "web", "wget", "-q", "-O-", "http://vm/hostname")
    assert r.returncode == 0 and r.stdout.strip() == ctr.inspect("vm")["spec"]["hostname"]
    # the VM's published port answers from outside, like a container's
    r = lab.out("wget", "-q", "-O-", "http://192.0.2.1:8080/hostname")
    assert r.stdout.strip() == ctr.inspect("vm")["spec"]["hostname"], r.stderr
    ctr("stop", "vm", check=True)
    assert not [li for li in lab.links() if li["ifname"].startswith("tap")]
