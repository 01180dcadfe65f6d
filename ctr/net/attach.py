"""An instance's network, from its start to its end.

    before clone   plan(): the mode's clone flags, the /etc files to bind, and
                   for bridge networks an address leased (and a port check)
                   and the instance's line added to the network's /etc/hosts
    after clone    Plan.attach(pid): bridge, veth into the child's namespace,
                   published ports, lease handed to the child
    at the end     detach(): ports unpublished, lease and hosts line returned,
                   the host's veth removed if its namespace outlived the instance

Every step touches the instance's own things and a fixed number of the
network's files, never the other instances': peers resolve each other through
the one hosts file of their network, bind-mounted read-only into each. An
instance with --add-host lines has a copy of its own (the network's lines and
then its own), which the network keeps current too: only such copies are
written per peer that comes or goes.
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
        self.dead = []  # leases of instances that died unwatched, reclaimed here
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
            extra = extra_hosts(spec, self.netdef["gateway"])
            # With --add-host, a copy of the network's file of its own, kept
            # current by the network; else the network's file itself, shared.
            copy = (files["hosts"], extra) if extra else None
            self.ip, self.dead, self.ports = self.networks.allocate(
                self.netdef, {"id": spec.id, "name": spec.name, "names": net.host_names(spec)},
                spec.ip, spec.ports, spec.publish_all, hosts_copy=copy)
            if copy:
                self.binds.append((files["hosts"], "/etc/hosts"))  # its own, as in main
            else:
                hosts = self.networks.hosts_path(self.netdef["name"])
                self.binds.append((hosts, "/etc/hosts", "ro"))  # shared: nobody writes it
        else:
            net.write_in_place(files["hosts"], net.hosts_file(
                [f"127.0.1.1\t{' '.join(net.host_names(spec))}"], extra_hosts(spec, None)))
            self.binds.append((files["hosts"], "/etc/hosts"))
        net.write_in_place(files["resolv.conf"], net.resolv_conf(
            dns=opts.dns or (), search=opts.dns_search or (), options=opts.dns_options or ()))
        self.binds.append((files["resolv.conf"], "/etc/resolv.conf"))
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
        net_info = state.get("net") or {}
        own = os.path.join(target.dir, "hosts")  # none, host with --add-host, or a copy
        if net_info.get("ip") and not os.path.exists(own):
            from ctr.net.networks import Networks

            self.binds.append((Networks(self.store).hosts_path(net_info["network"]),
                               "/etc/hosts", "ro"))
        else:
            self.binds.append((own, "/etc/hosts"))
        self.binds.append((os.path.join(target.dir, "resolv.conf"), "/etc/resolv.conf"))

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

        from ctr.net import links

        spec, netdef = self.spec, self.netdef
        prefixlen = ipaddress.IPv4Network(netdef["subnet"]).prefixlen
        veth = host_veth(spec.id)
        mac, created = links.attach(netdef, veth, pid, self.ip, prefixlen)
        try:
            self._nft(created)
        except CtrError:
            links.delete(veth)
            raise
        self.networks.bind(netdef["name"], self.ip, pid, starttime)
        self.info = {"network": netdef["name"], "bridge": netdef["bridge"], "ip": self.ip,
                     "prefixlen": prefixlen, "gateway": netdef["gateway"], "mac": mac,
                     "host_veth": veth, "ports": list(self.ports)}
        return self.info

    def _nft(self, created):
        """One nft run, or none: a new bridge's masquerade, ports to publish,
        dead leases' ports to forget. A start with none of them runs no nft."""
        if created or self.ports or any(d.get("ports") for d in self.dead):
            from ctr.net import nft

            nft.apply(self.netdef if created else None, (self.spec.id, self.ip, self.ports),
                      self.dead)

    def attach_tap(self):
        """For a VM, before QEMU starts: a tap on the bridge, NAT and published
        ports. Returns the tap's fd for QEMU (None without a bridge); the tap
        lives as long as an fd of it is open, so it goes with QEMU."""
        if not self.bridged:
            return None
        import ipaddress

        from ctr.net import links

        spec, netdef = self.spec, self.netdef
        bridge, created = links.ensure_bridge(netdef)
        tap = host_tap(spec.id)
        fd = links.open_tap(tap, bridge)
        try:
            self._nft(created)
        except CtrError:
            os.close(fd)
            raise
        self.info = {"network": netdef["name"], "bridge": netdef["bridge"], "ip": self.ip,
                     "prefixlen": ipaddress.IPv4Network(netdef["subnet"]).prefixlen,
                     "gateway": netdef["gateway"], "mac": links.mac_for(self.ip),
                     "tap": tap, "ports": list(self.ports)}
        return fd

    def bind(self, pid, starttime):
        """The lease, once the VM's process exists."""
        if self.bridged:
            self.networks.bind(self.netdef["name"], self.ip, pid, starttime)

    def abort(self):
        """Undo what prepare/attach did, after a failed start."""
        if self.bridged and self.ip:
            detach(self.store, self.spec, {"network": self.netdef["name"], "ip": self.ip,
                                           "host_veth": host_veth(self.spec.id),
                                           "ports": list(self.ports)})


def detach(store, spec, info):
    """The instance ended or is removed: unpublish, return the lease (and its
    line of the network's /etc/hosts), drop the host's veth if it is still there."""
    if not info or not info.get("ip"):
        return
    from ctr.net.networks import Networks

    if info.get("ports"):
        from ctr.net import nft

        nft.unpublish(spec.id, info["ip"], info["ports"])
    Networks(store).release(info["network"], info["ip"], spec.id)
    veth = info.get("host_veth")
    if veth and os.path.exists(f"/sys/class/net/{veth}"):
        from ctr.net import links

        links.delete(veth)


def renamed(store, spec, info):
    """After `ctr rename`: the lease and the network's hosts file say the new
    name (one line rewritten; the peers see it at once)."""
    if not info or not info.get("ip"):
        return
    from ctr.net.networks import Networks

    Networks(store).rename(info["network"], info["ip"], spec.id, spec.name,
                           net.host_names(spec))


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
