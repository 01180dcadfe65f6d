"""An instance's network, from its start to its end.

    before clone   plan(): the mode's clone flags, the /etc files to bind, and
                   for bridge networks an address leased (and a port check)
    after clone    Plan.attach(pid): bridge, veth into the child's namespace,
                   NAT and published ports, lease handed to the child
    at the end     detach(): ports unpublished, lease returned, the host's
                   veth removed if its namespace outlived the instance

A failure at any step undoes the earlier ones: no veth, rule or lease is left.
The bridge path imports pyroute2 (ctr.net.links); none and host never do.
"""

import os

from ctr import net
from ctr.errors import Conflict, CtrError
from ctr.native import CLONE_NEWNET


def host_veth(instance_id):
    return f"veth{instance_id[:11]}"


def host_tap(instance_id):
    return f"tap{instance_id[:11]}"


class Plan:
    def __init__(self, store, rec, spec):
        self.store, self.rec, self.spec = store, rec, spec
        self.mode = spec.network
        self.new_netns = self.mode not in ("host",) and not self.mode.startswith("container:")
        self.join_pid = None  # container:NAME: the init whose namespace we join
        self.netdef = None
        self.ip = None
        self.binds = []
        self.ports = tuple(spec.ports)  # with -P's, once chosen
        self.info = {"network": self.mode}

    @property
    def bridged(self):
        return self.netdef is not None

    def clone_flags(self, flags):
        return flags if self.new_netns else flags & ~CLONE_NEWNET

    # -- before clone -------------------------------------------------------------

    def prepare(self):
        spec, rec = self.spec, self.rec
        files = {name: os.path.join(rec.dir, name) for name in ("hosts", "hostname",
                                                                "resolv.conf")}
        # --uts host: the host's name (the spec has none of its own)
        net.write_in_place(files["hostname"], (spec.hostname or os.uname().nodename) + "\n")
        self.binds.append((files["hostname"], "/etc/hostname"))
        opts = spec.options
        if self.mode == "host":
            if not (opts.extra_hosts or opts.dns or opts.dns_search or opts.dns_options):
                self.binds += [("/etc/hosts", "/etc/hosts"),
                               ("/etc/resolv.conf", "/etc/resolv.conf")]
                return self
            self._write_host_copies(files)
            return self
        if self.mode.startswith("container:"):
            self._join_target(self.mode.split(":", 1)[1])
            return self
        if self.mode != "none":
            from ctr.net.networks import Networks

            self.networks = Networks(self.store)
            self.netdef = self.networks.get(self.mode)
            self.ip, dead, self.ports = self.networks.allocate(
                self.netdef, {"id": spec.id, "name": spec.name}, spec.ip, spec.ports,
                spec.publish_all)
            _forget(dead)
        gateway = self.netdef["gateway"] if self.bridged else None
        net.write_in_place(files["hosts"], net.hosts_file(
            spec.hostname, spec.name, self.ip, self._peers(), extra_hosts(spec, gateway)))
        net.write_in_place(files["resolv.conf"], net.resolv_conf(
            dns=opts.dns or (), search=opts.dns_search or (), options=opts.dns_options or ()))
        self.binds += [(files["hosts"], "/etc/hosts"), (files["resolv.conf"], "/etc/resolv.conf")]
        return self

    def _write_host_copies(self, files):
        """--network host with --add-host or --dns*: copies of the host's /etc
        files with the user's lines (the host's own files stay as they are)."""
        opts = self.spec.options
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except FileNotFoundError:
            hosts = ""
        if hosts and not hosts.endswith("\n"):
            hosts += "\n"
        hosts += "".join(f"{ip}\t{name}\n" for name, ip in extra_hosts(self.spec, None))
        net.write_in_place(files["hosts"], hosts)
        net.write_in_place(files["resolv.conf"], net.resolv_conf(
            dns=opts.dns or (), search=opts.dns_search or (), options=opts.dns_options or (),
            loopback=True))
        self.binds += [(files["hosts"], "/etc/hosts"), (files["resolv.conf"], "/etc/resolv.conf")]

    def _join_target(self, name):
        from ctr.store import running_record

        target, state = running_record(self.store, name, f"--network container:{name}")
        self.join_pid = state["pid"]
        self.info = {**state.get("net", {}), "network": self.mode}
        self.info.pop("host_veth", None)
        self.info.pop("ports", None)
        for f in ("hosts", "resolv.conf"):
            self.binds.append((os.path.join(target.dir, f), f"/etc/{f}"))

    def _peers(self):
        if not self.bridged:
            return []
        return peers_of(self.store, self.networks, self.netdef["name"], exclude=self.spec.id)

    def open_join_fd(self):
        """For container:NAME, the target's net namespace, opened before clone."""
        if self.join_pid is None:
            return None
        try:
            return os.open(f"/proc/{self.join_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Conflict(f"--network {self.mode}: the instance is gone") from None

    # -- after clone --------------------------------------------------------------

    def attach(self, pid, starttime):
        if not self.bridged:
            return self.info
        import ipaddress

        from ctr.net import links, nft

        spec, netdef = self.spec, self.netdef
        prefixlen = ipaddress.IPv4Network(netdef["subnet"]).prefixlen
        veth = host_veth(spec.id)
        bridge = links.ensure_bridge(netdef)
        nft.ensure_network(netdef)
        mac = links.attach(netdef, bridge, veth, pid, self.ip, prefixlen)
        try:
            nft.publish(spec.id, self.ip, self.ports)
        except CtrError:
            links.delete(veth)
            raise
        self.networks.bind(netdef["name"], self.ip, pid, starttime)
        self.info = {"network": netdef["name"], "bridge": netdef["bridge"], "ip": self.ip,
                     "prefixlen": prefixlen, "gateway": netdef["gateway"], "mac": mac,
                     "host_veth": veth, "ports": list(self.ports)}
        refresh_hosts(self.store, self.networks, netdef["name"])
        return self.info

    def attach_tap(self):
        """For a VM, before QEMU starts: a tap on the bridge, NAT and published
        ports. Returns the tap's fd for QEMU (None without a bridge); the tap
        lives as long as an fd of it is open, so it goes with QEMU."""
        if not self.bridged:
            return None
        import ipaddress

        from ctr.net import links, nft

        spec, netdef = self.spec, self.netdef
        bridge = links.ensure_bridge(netdef)
        nft.ensure_network(netdef)
        tap = host_tap(spec.id)
        fd = links.open_tap(tap, bridge)
        try:
            nft.publish(spec.id, self.ip, self.ports)
        except CtrError:
            os.close(fd)
            raise
        self.info = {"network": netdef["name"], "bridge": netdef["bridge"], "ip": self.ip,
                     "prefixlen": ipaddress.IPv4Network(netdef["subnet"]).prefixlen,
                     "gateway": netdef["gateway"], "mac": links.mac_for(self.ip),
                     "tap": tap, "ports": list(self.ports)}
        return fd

    def bind(self, pid, starttime):
        """The lease and the peers' /etc/hosts, once the VM's process exists."""
        if self.bridged:
            self.networks.bind(self.netdef["name"], self.ip, pid, starttime)
            refresh_hosts(self.store, self.networks, self.netdef["name"])

    def abort(self):
        """Undo what prepare/attach did, after a failed start."""
        if self.bridged and self.ip:
            detach(self.store, self.spec, {"network": self.netdef["name"], "ip": self.ip,
                                           "host_veth": host_veth(self.spec.id),
                                           "ports": list(self.ports)})


def _forget(dead_leases):
    """Published ports of instances that died unwatched: their rules go with
    the lease the IPAM reclaimed."""
    if any(lease.get("ports") for lease in dead_leases):
        from ctr.net import nft

        for lease in dead_leases:
            if lease.get("ports"):
                nft.unpublish(lease["id"])


def detach(store, spec, info):
    """The instance ended or is removed: unpublish, return the lease, drop the
    host's veth if it is still there, and tell the other instances."""
    if not info or not info.get("ip"):
        return
    from ctr.net.networks import Networks

    networks = Networks(store)
    if info.get("ports"):
        from ctr.net import nft

        nft.unpublish(spec.id)
    networks.release(info["network"], info["ip"], spec.id)
    veth = info.get("host_veth")
    if veth and os.path.exists(f"/sys/class/net/{veth}"):
        from ctr.net import links

        links.delete(veth)
    refresh_hosts(store, networks, info["network"])


def renamed(store, spec, info):
    """After `ctr rename`: the lease says the new name, and /etc/hosts of each
    live instance on the network (its own included) is written again."""
    from ctr.net.networks import Networks

    networks = Networks(store)
    networks.rename(info["network"], info["ip"], spec.id, spec.name)
    refresh_hosts(store, networks, info["network"])


def extra_hosts(spec, gateway):
    """--add-host's (name, ip) lines, host-gateway being the gateway of the
    instance's network (`gateway`), or of ctr's default one without a bridge
    of its own (docker: the default bridge's address)."""
    entries = spec.options.extra_hosts or ()
    if not entries:
        return ()
    from ctr.spec import HOST_GATEWAY

    if gateway is None and any(ip == HOST_GATEWAY for _, ip in entries):
        from ctr.net.networks import DEFAULT

        gateway = DEFAULT["gateway"]
    return tuple((name, gateway if ip == HOST_GATEWAY else ip) for name, ip in entries)


def peers_of(store, networks, netname, exclude=None):
    out = []
    for ip, lease in networks.members(netname).items():
        if lease["id"] == exclude:
            continue
        names = [lease["name"]]
        try:
            hostname = store.record(lease["name"], by_id=False).spec.hostname
            if hostname and hostname != lease["name"]:
                names.append(hostname)
        except CtrError:
            pass
        out.append((ip, " ".join(names)))
    return out


def refresh_hosts(store, networks, netname):
    """Keep /etc/hosts of every live instance on the network current (the files
    are bind-mounted, so they are rewritten in place)."""
    gateway = None
    for ip, lease in networks.members(netname).items():
        try:
            rec = store.record(lease["name"], by_id=False)
            spec = rec.spec
        except CtrError:
            continue
        if spec.id != lease["id"]:
            continue
        path = os.path.join(rec.dir, "hosts")
        if spec.options.extra_hosts and gateway is None:
            gateway = networks.get(netname)["gateway"]
        text = net.hosts_file(spec.hostname, spec.name, ip,
                              peers_of(store, networks, netname, spec.id),
                              extra_hosts(spec, gateway))
        try:
            if os.path.exists(path):
                net.write_in_place(path, text)
        except FileNotFoundError:
            pass  # removed meanwhile
