"""Network definitions and the IPAM, on disk under the state root:

    networks/NAME.json                 {name, bridge, subnet, gateway, created}
    networks/lock                      flock: every allocation and release holds it
    networks/leases/NAME/pool.json     {next, free}: the address offsets never
                                       handed out lie at `next` and above; `free`
                                       holds those given back below it
    networks/leases/NAME/IP            a lease: {id, name, names, pid, starttime, ports}
    networks/ports/PROTO-PORT/HOST_IP  a published port's claim: {network, ip, id}
    networks/hosts/NAME                the /etc/hosts of every instance on NAME
    networks/hosts/NAME.copies/ID      an instance with --add-host lines has a copy
                                       of its own: {path, extra}, rewritten with
                                       the network's file (only these are)

Every operation touches a fixed number of files, however many instances
there are (written atomically but not synced: after a host crash every lease
is dead anyway, and a torn file reads as free): the lowest free address is
the smallest of `free`, else `next`; a port is checked against the claims of
that one port; an instance's line of the network's hosts file is added or
removed in place. A lease whose process is gone (the instance died unwatched)
is reclaimed when someone asks for its address or one of its ports (and by
rm and gc of its instance); the whole network is scanned for dead leases
only when it has no address left.
The default network `bridge` (ctr0, 10.88.0.0/16) always exists.
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
        os.makedirs(self.dir, 0o711, exist_ok=True)  # searchable: see _hosts_line
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

    def _lease_dir(self, netname):
        return os.path.join(self.dir, "leases", netname)

    def _lease_path(self, netname, ip):
        return os.path.join(self.dir, "leases", netname, str(ip))

    def hosts_path(self, netname):
        return os.path.join(self.dir, "hosts", netname)

    def _claim_dir(self, port):
        return os.path.join(self.dir, "ports", f"{port['proto']}-{port['host_port']}")

    def _read(self, path):
        try:
            with open(path) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            return None  # gone, or torn by a crash: as good as free
        return data if isinstance(data, dict) else None

    def lease(self, netname, ip):
        return self._read(self._lease_path(netname, ip))

    def _live(self, netname, ip, dead):
        """The live lease of `ip`, or None; a dead one is reclaimed into `dead`."""
        lease = self.lease(netname, ip)
        if lease is None:
            return None
        if alive(lease.get("pid"), lease.get("starttime")):
            return lease
        dead.append({**lease, "network": netname, "ip": str(ip)})
        self._drop(netname, str(ip), lease)
        return None

    def _drop(self, netname, ip, lease):
        """Remove a lease and what hangs on it: its port claims, its hosts line,
        its address back to the pool (the caller holds the lock)."""
        for p in lease.get("ports", ()):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._claim_dir(p), p["host_ip"]))
            with contextlib.suppress(OSError):
                os.rmdir(self._claim_dir(p))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._lease_path(netname, ip))
        if lease.get("id"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._copies_dir(netname), str(lease["id"])))
        self._hosts_line(netname, ip, None)
        try:
            netdef = self.get(netname)
        except CtrError:
            return  # the network went first
        net, _ = parse_subnet(netdef["subnet"], netdef["gateway"])
        pool = self._pool(netname)
        off = int(ipaddress.IPv4Address(ip)) - int(net.network_address)
        if off < pool["next"] and off not in pool["free"]:
            pool["free"].append(off)
            pool["free"].sort()
        while pool["free"] and pool["free"][-1] == pool["next"] - 1:
            pool["next"] = pool["free"].pop()
        self._write_pool(netname, pool)

    def _pool(self, netname):
        pool = self._read(os.path.join(self._lease_dir(netname), "pool.json"))
        if not pool or not isinstance(pool.get("next"), int) or not isinstance(
                pool.get("free"), list):
            return {"next": 1, "free": []}
        return pool

    def _write_pool(self, netname, pool):
        os.makedirs(self._lease_dir(netname), 0o700, exist_ok=True)
        atomic_write_json(os.path.join(self._lease_dir(netname), "pool.json"), pool,
                          durable=False)

    def _take(self, netname, net, gw, dead):
        """The lowest free address (pool order), reserved in the pool."""
        pool = self._pool(netname)
        base, size = int(net.network_address), net.num_addresses
        while True:
            if pool["free"]:
                off = pool["free"].pop(0)
            elif pool["next"] < size - 1:
                off = pool["next"]
                pool["next"] += 1
            else:
                self._write_pool(netname, pool)  # without what was taken by --ip
                break
            ip = ipaddress.IPv4Address(base + off)
            if off <= 0 or ip == gw or self._live(netname, ip, dead) is not None:
                continue  # the gateway, or taken with --ip
            self._write_pool(netname, pool)
            return ip
        # Full: the only time every lease is read, for the dead among them.
        for entry in os.listdir(self._lease_dir(netname)):
            if entry != "pool.json" and not entry.startswith(".") and ".tmp." not in entry:
                self._live(netname, entry, dead)
        pool = self._pool(netname)
        if pool["free"] or pool["next"] < size - 1:
            return self._take(netname, net, gw, dead)
        raise Conflict(f"no free address left in network {netname} ({net})")

    def _claim_holder(self, port, host_ip, dead):
        """The live lease that publishes `port` on `host_ip`, or None (a stale
        claim is removed, a dead holder reclaimed)."""
        path = os.path.join(self._claim_dir(port), host_ip)
        claim = self._read(path)
        if claim is None:
            return None
        lease = self.lease(claim.get("network", ""), claim.get("ip", ""))
        if lease is None or lease.get("id") != claim.get("id"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        return self._live(claim["network"], claim["ip"], dead)

    def _check_port(self, q, dead):
        if q["host_ip"] == "0.0.0.0":
            try:
                others = os.listdir(self._claim_dir(q))
            except FileNotFoundError:
                others = []
        else:
            others = [q["host_ip"], "0.0.0.0"]
        for host_ip in others:
            holder = self._claim_holder(q, host_ip, dead)
            if holder is not None:
                raise Conflict(f"port {q['host_port']}/{q['proto']} is already "
                               f"published by {holder['name']}")

    def _choose_ports(self, ports, wanted, dead):
        """A free host port for each of `wanted` (host_port 0): one the kernel
        would give a socket now (its ephemeral range, as docker's -P) that no
        lease publishes."""
        if not wanted:
            return []
        import socket

        taken = {(p["host_port"], p["proto"]) for p in ports}
        out = []
        for want in wanted:
            kind = socket.SOCK_DGRAM if want["proto"] == "udp" else socket.SOCK_STREAM
            for _ in range(100):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((want["host_ip"], 0))
                    port = s.getsockname()[1]
                candidate = {**want, "host_port": port}
                if (port, want["proto"]) in taken:
                    continue
                try:
                    self._check_port(candidate, dead)
                except Conflict:
                    continue
                break
            else:
                raise Conflict(f"no free host port for {want['port']}/{want['proto']}")
            taken.add((port, want["proto"]))
            out.append(candidate)
        return out

    def allocate(self, netdef, owner, want_ip=None, ports=(), any_ports=(), hosts_copy=None):
        """Lease an address of `netdef` for `owner` ({id, name, names}: the names
        its peers resolve, canonical first); the lease is held by the calling
        process until bind() names the instance's own. `any_ports` (-P) are
        published on free host ports chosen here. `hosts_copy`: (path, extra
        (name, ip) lines) for an instance with a hosts file of its own. Returns (ip, dead leases
        reclaimed, the ports published: `ports` and those chosen)."""
        net, gw = parse_subnet(netdef["subnet"], netdef["gateway"])
        name = netdef["name"]
        dead = []
        with self.lock():
            for q in ports:
                self._check_port(q, dead)
            ports = (*ports, *self._choose_ports(ports, any_ports, dead))
            os.makedirs(self._lease_dir(name), 0o700, exist_ok=True)
            if want_ip is not None:
                ip = ipaddress.IPv4Address(want_ip)
                if ip not in net or ip in (net.network_address, net.broadcast_address, gw):
                    raise InvalidSpec(f"invalid --ip {ip}: not a free host address of "
                                      f"{name} ({net})")
                holder = self._live(name, ip, dead)
                if holder is not None:
                    raise Conflict(f"address {ip} is in use by {holder['name']}")
                pool = self._pool(name)
                off = int(ip) - int(net.network_address)
                if off in pool["free"]:
                    pool["free"].remove(off)
                    self._write_pool(name, pool)
            else:
                ip = self._take(name, net, gw, dead)
            me = os.getpid()
            lease = {"id": owner["id"], "name": owner["name"],
                     "names": list(owner.get("names") or [owner["name"]]), "pid": me,
                     "starttime": _starttime(me), "ports": list(ports)}
            atomic_write_json(self._lease_path(name, ip), lease, durable=False)
            for p in ports:
                os.makedirs(self._claim_dir(p), 0o700, exist_ok=True)
                atomic_write_json(os.path.join(self._claim_dir(p), p["host_ip"]),
                                  {"network": name, "ip": str(ip), "id": owner["id"]},
                                  durable=False)
            if hosts_copy:
                os.makedirs(self._copies_dir(name), 0o700, exist_ok=True)
                atomic_write_json(os.path.join(self._copies_dir(name), owner["id"]),
                                  {"path": hosts_copy[0], "extra": list(hosts_copy[1])},
                                  durable=False)
            self._hosts_line(name, str(ip), lease["names"])
        return str(ip), dead, ports

    def bind(self, netname, ip, pid, starttime):
        """Hand the lease to the instance's own process."""
        with self.lock():
            lease = self.lease(netname, ip)
            if lease is not None:
                lease.update(pid=pid, starttime=starttime)
                atomic_write_json(self._lease_path(netname, ip), lease, durable=False)

    def rename(self, netname, ip, owner_id, name, names=None):
        """The lease of a renamed instance (ctr rename) says its new name, and
        so does its line of the network's hosts file (`names`: all it answers
        to, canonical first; default: `name` alone)."""
        with self.lock():
            lease = self.lease(netname, ip)
            if lease is None or lease.get("id") != owner_id:
                return
            lease.update(name=name, names=list(names or [name]))
            atomic_write_json(self._lease_path(netname, ip), lease, durable=False)
            self._hosts_line(netname, ip, lease["names"])

    def release(self, netname, ip, owner_id):
        with self.lock():
            lease = self.lease(netname, ip)
            if lease is not None and lease.get("id") == owner_id:
                self._drop(netname, ip, lease)

    # -- the network's /etc/hosts -------------------------------------------------

    def _hosts_line(self, netname, ip, names):
        """Set (names) or remove (None) the line of `ip` in the network's hosts
        file, in place: it is bind-mounted into every instance on the network,
        and a bind mount keeps the inode it was made with (a rename would not
        reach them). The caller holds the lock."""
        from ctr import net as netmod

        path = self.hosts_path(netname)
        # The root of a --userns=auto container (an unmapped host uid) binds
        # this file: each folder on its way must be searchable by others (a
        # state root of an older ctr made this one 0700). Nothing below is
        # readable but the hosts files (the leases are 0600).
        os.chmod(self.dir, 0o711)
        os.makedirs(os.path.dirname(path), 0o711, exist_ok=True)
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        entries = [ln for ln in lines[netmod.HOSTS_HEADER_LINES:] if ln and not (
            ip is not None and ln.startswith(f"{ip}\t"))]
        if names:
            entries.append(f"{ip}\t{' '.join(dict.fromkeys(names))}")
        netmod.write_in_place(path, netmod.hosts_file(entries))
        try:
            copies = os.listdir(self._copies_dir(netname))
        except FileNotFoundError:
            return
        for entry in copies:
            copy = self._read(os.path.join(self._copies_dir(netname), entry))
            if copy is None or ".tmp." in entry:
                continue
            with contextlib.suppress(OSError):  # its instance is going: _drop's next
                netmod.write_in_place(copy["path"], netmod.hosts_file(
                    entries, [tuple(e) for e in copy["extra"]]))

    def _copies_dir(self, netname):
        return os.path.join(self.dir, "hosts", f"{netname}.copies")

    def remove_files(self, netname):
        """A removed network's pool and hosts file (it has no lease left)."""
        import shutil

        shutil.rmtree(self._lease_dir(netname), ignore_errors=True)
        shutil.rmtree(self._copies_dir(netname), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.hosts_path(netname))


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
