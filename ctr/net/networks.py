"""Network definitions and the IPAM, on disk under the state root:

    networks/NAME.json     {name, bridge, subnet, gateway, created}
    networks/leases.json   {network: {ip: {id, name, pid, starttime, ports}}}
    networks/lock          flock: every allocation and release holds it

A lease is taken when an instance starts and given back when it ends or is
removed; a lease whose process is gone (the instance died unwatched) is
reclaimed by the next allocation. The default network `bridge` (ctr0,
10.88.0.0/16) always exists.
"""

import contextlib
import fcntl
import ipaddress
import json
import os

from ctr.errors import Conflict, CtrError, InvalidSpec, NotFound
from ctr.spec import check_name
from ctr.store import alive, atomic_write_json, now

DEFAULT = {"name": "bridge", "bridge": "ctr0", "subnet": "10.88.0.0/16",
           "gateway": "10.88.0.1", "created": None}


def bridge_name(name):
    """Interface names have at most 15 characters."""
    if len(name) <= 11:
        return f"ctr-{name}"
    import hashlib

    return "ctr-" + hashlib.sha256(name.encode()).hexdigest()[:11]


def parse_subnet(subnet, gateway=None):
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as err:
        raise InvalidSpec(f"invalid subnet {subnet!r}: {err}") from None
    if net.prefixlen > 30:
        raise InvalidSpec(f"invalid subnet {subnet}: too small (at most /30)")
    if gateway is None:
        gw = net.network_address + 1
    else:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise InvalidSpec(f"invalid gateway {gateway!r}") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidSpec(f"invalid gateway {gateway}: not a host address of {subnet}")
    return net, gw


class Networks:
    def __init__(self, store):
        self.store = store
        self.dir = os.path.join(store.root, "networks")
        self.leases_path = os.path.join(self.dir, "leases.json")

    @contextlib.contextmanager
    def lock(self):
        os.makedirs(self.dir, 0o700, exist_ok=True)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- definitions --------------------------------------------------------------

    def _path(self, name):
        return os.path.join(self.dir, f"{name}.json")

    def get(self, name):
        if name == "bridge":
            return dict(DEFAULT)
        check_name(name, "network name")
        try:
            with open(self._path(name)) as f:
                return json.load(f)
        except FileNotFoundError:
            raise NotFound(f"no such network: {name}") from None
        except ValueError as err:
            raise CtrError(f"the definition of network {name} is corrupt: {err}") from None

    def list(self):
        out = [dict(DEFAULT)]
        try:
            names = sorted(f[:-5] for f in os.listdir(self.dir) if f.endswith(".json")
                           and f != "leases.json")
        except FileNotFoundError:
            names = []
        for name in names:
            try:
                out.append(self.get(name))
            except CtrError:
                continue
        return out

    def create(self, name, subnet, gateway=None, host_routes=None):
        """Define a network. `host_routes`: the host's routes (CIDRs), to refuse a
        subnet that overlaps one (the caller reads them with pyroute2)."""
        check_name(name, "network name")
        if name in ("bridge", "none", "host") or name.startswith("container"):
            raise InvalidSpec(f"invalid network name {name!r}: reserved")
        net, gw = parse_subnet(subnet, gateway)
        with self.lock():
            if os.path.exists(self._path(name)):
                raise Conflict(f"network {name} already exists")
            for other in self.list():
                if net.overlaps(ipaddress.IPv4Network(other["subnet"])):
                    raise Conflict(f"subnet {net} overlaps network {other['name']} "
                                   f"({other['subnet']})")
            for route in host_routes or ():
                if net.overlaps(ipaddress.IPv4Network(route, strict=False)):
                    raise Conflict(f"subnet {net} overlaps the host's route to {route}")
            spec = {"name": name, "bridge": bridge_name(name), "subnet": str(net),
                    "gateway": str(gw), "created": now()}
            atomic_write_json(self._path(name), spec)
        return spec

    def remove(self, name, users):
        if name == "bridge":
            raise InvalidSpec("the default network bridge cannot be removed")
        netdef = self.get(name)
        if users:
            raise Conflict(f"network {name} is in use by {', '.join(sorted(users))}")
        with self.lock():
            os.unlink(self._path(name))
        return netdef

    # -- leases -------------------------------------------------------------------

    def _leases(self):
        try:
            with open(self.leases_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}  # a torn file: every live instance re-registers on its next start

    def reclaim(self, leases):
        """Drop leases whose process is gone; returns them (their nft rules go too)."""
        dead = []
        for table in leases.values():
            for ip, lease in list(table.items()):
                if not alive(lease.get("pid"), lease.get("starttime")):
                    dead.append(table.pop(ip))
        return dead

    def allocate(self, netdef, owner, want_ip=None, ports=(), any_ports=()):
        """Lease an address of `netdef` for `owner` ({id, name}); the lease is held
        by the calling process until bind() names the instance's own. `any_ports`
        (-P) are published on free host ports chosen here. Returns (ip, dead
        leases reclaimed, the ports published: `ports` and those chosen)."""
        net, gw = parse_subnet(netdef["subnet"], netdef["gateway"])
        with self.lock():
            leases = self._leases()
            dead = self.reclaim(leases)
            table = leases.setdefault(netdef["name"], {})
            self._check_ports(leases, ports)
            ports = (*ports, *self._choose_ports(leases, ports, any_ports))
            if want_ip is not None:
                ip = ipaddress.IPv4Address(want_ip)
                if ip not in net or ip in (net.network_address, net.broadcast_address, gw):
                    raise InvalidSpec(f"invalid --ip {ip}: not a free host address of "
                                      f"{netdef['name']} ({net})")
                if str(ip) in table:
                    raise Conflict(f"address {ip} is in use by {table[str(ip)]['name']}")
            else:
                ip = next((h for h in net.hosts() if h != gw and str(h) not in table), None)
                if ip is None:
                    raise Conflict(f"no free address left in network {netdef['name']} ({net})")
            me = os.getpid()
            table[str(ip)] = {"id": owner["id"], "name": owner["name"], "pid": me,
                              "starttime": _starttime(me), "ports": list(ports)}
            atomic_write_json(self.leases_path, leases)
        return str(ip), dead, ports

    @staticmethod
    def _choose_ports(leases, ports, wanted):
        """A free host port for each of `wanted` (host_port 0): one the kernel
        would give a socket now (its ephemeral range, as docker's -P) that no
        lease publishes."""
        if not wanted:
            return []
        import socket

        taken = {(p["host_port"], p["proto"]) for p in ports}
        taken |= {(p["host_port"], p["proto"]) for table in leases.values()
                  for lease in table.values() for p in lease.get("ports", ())}
        out = []
        for want in wanted:
            kind = socket.SOCK_DGRAM if want["proto"] == "udp" else socket.SOCK_STREAM
            for _ in range(100):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((want["host_ip"], 0))
                    port = s.getsockname()[1]
                if (port, want["proto"]) not in taken:
                    break
            else:
                raise Conflict(f"no free host port for {want['port']}/{want['proto']}")
            taken.add((port, want["proto"]))
            out.append({**want, "host_port": port})
        return out

    @staticmethod
    def _check_ports(leases, ports):
        for table in leases.values():
            for lease in table.values():
                for p in lease.get("ports", ()):
                    for q in ports:
                        if (p["host_port"], p["proto"]) == (q["host_port"], q["proto"]) and (
                                "0.0.0.0" in (p["host_ip"], q["host_ip"])
                                or p["host_ip"] == q["host_ip"]):
                            raise Conflict(f"port {q['host_port']}/{q['proto']} is already "
                                           f"published by {lease['name']}")

    def bind(self, netname, ip, pid, starttime):
        """Hand the lease to the instance's own process."""
        with self.lock():
            leases = self._leases()
            lease = leases.get(netname, {}).get(ip)
            if lease is not None:
                lease.update(pid=pid, starttime=starttime)
                atomic_write_json(self.leases_path, leases)

    def release(self, netname, ip, owner_id):
        with self.lock():
            leases = self._leases()
            table = leases.get(netname, {})
            if table.get(ip, {}).get("id") == owner_id:
                del table[ip]
                atomic_write_json(self.leases_path, leases)

    def rename(self, netname, ip, owner_id, name):
        """The lease of a renamed instance says its new name (ctr rename)."""
        with self.lock():
            leases = self._leases()
            lease = leases.get(netname, {}).get(ip)
            if lease is not None and lease.get("id") == owner_id:
                lease["name"] = name
                atomic_write_json(self.leases_path, leases)

    def members(self, netname):
        """{ip: lease} of the live instances on a network."""
        leases = self._leases()
        return {ip: lease for ip, lease in leases.get(netname, {}).items()
                if alive(lease.get("pid"), lease.get("starttime"))}


def _starttime(pid):
    from ctr.store import proc_starttime

    return proc_starttime(pid)


def free_subnet(existing, host_routes):
    """podman's way: the first 10.89.N.0/24 that overlaps nothing."""
    taken = [ipaddress.IPv4Network(n["subnet"]) for n in existing]
    taken += [ipaddress.IPv4Network(r, strict=False) for r in host_routes]
    for n in range(256):
        candidate = ipaddress.IPv4Network(f"10.89.{n}.0/24")
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise Conflict("no free subnet left in 10.89.0.0/16: give one with --subnet")
