"""Bridge, veth, addresses and routes over rtnetlink, never `ip`.

pyroute2 is the netlink library: its message classes (ifinfmsg, ifaddrmsg,
rtmsg) encode every request and decode every answer. `Rtnl` below only sends
them on a NETLINK_ROUTE socket and reads the acks: pyroute2 0.9's IPRoute does
the same on top of asyncio, which costs as much to import as the rest of the
bridge path together, and its package's __init__ imports every protocol it
speaks (conntrack, ndb, ipdb, wireguard...). Neither is loaded here.

The container's side is configured from the host: a netlink socket opened
inside the container's network namespace (setns there, open, setns back) talks
to that namespace for as long as it lives.
"""

import contextlib
import importlib.util
import os
import socket
import struct
import sys

from ctr.errors import CtrError
from ctr.native import CLONE_NEWNET, setns

if "pyroute2" not in sys.modules:  # its package, without running its __init__
    _spec = importlib.util.find_spec("pyroute2")
    if _spec is None:
        raise CtrError("pyroute2 is not installed (pip install pyroute2)")
    sys.modules["pyroute2"] = importlib.util.module_from_spec(_spec)
from pyroute2.netlink import (  # noqa: E402
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl import (  # noqa: E402
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

IFF_UP = 0x1
ENODEV, EEXIST = 19, 17
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL


class Rtnl:
    """A NETLINK_ROUTE socket in the caller's network namespace, one request
    at a time: send a pyroute2 message, return the answers up to the ack (a
    NetlinkError for an error)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def request(self, msg, msg_type, flags=NLM_F_REQUEST | NLM_F_ACK):
        self.seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        out = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    raise CtrError("netlink: a malformed answer")
                if seq == self.seq:
                    if kind == NLMSG_ERROR:
                        code = struct.unpack_from("=i", data, off + 16)[0]
                        if code:
                            raise NetlinkError(-code, os.strerror(-code))
                        return out
                    if kind == NLMSG_DONE:
                        return out
                    answer = type(msg)(data[off:off + length])
                    answer.decode()
                    out.append(answer)
                off += (length + 3) & ~3

    def link_index(self, name):
        """The index of link `name`, or None."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        try:
            return self.request(msg, RTM_GETLINK)[0]["index"]
        except NetlinkError as err:
            if err.code == ENODEV:
                return None
            raise

    def new_link(self, name, kind, data=None, master=None):
        info = [("IFLA_INFO_KIND", kind)] + ([("IFLA_INFO_DATA", data)] if data else [])
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": info})]
        if master is not None:
            msg["attrs"].append(("IFLA_MASTER", master))
        self.request(msg, RTM_NEWLINK, _CREATE)

    def set_up(self, index, master=None):
        msg = ifinfmsg()
        msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
        if master is not None:
            msg["attrs"] = [("IFLA_MASTER", master)]
        self.request(msg, RTM_NEWLINK)

    def add_address(self, index, address, prefixlen):
        msg = ifaddrmsg()
        msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, prefixlen, index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self.request(msg, RTM_NEWADDR, _CREATE)

    def add_default_route(self, gateway):
        msg = rtmsg()
        # main table, proto boot (as `ip route add`), scope universe, unicast
        msg["family"], msg["table"], msg["proto"], msg["scope"], msg["type"] = (
            socket.AF_INET, 254, 3, 0, 1)
        msg["attrs"] = [("RTA_GATEWAY", gateway)]
        self.request(msg, RTM_NEWROUTE, _CREATE)

    def routes(self):
        msg = rtmsg()
        msg["family"] = socket.AF_INET
        return self.request(msg, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP)

    def delete_link(self, index):
        msg = ifinfmsg()
        msg["index"] = index
        self.request(msg, RTM_DELLINK)


def _fail(what, err):
    return CtrError(f"{what}: {err.args[1] if len(err.args) > 1 else err}")


@contextlib.contextmanager
def netns_socket(pid):
    """An Rtnl bound to the network namespace of process `pid`."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target, CLONE_NEWNET)
        try:
            rtnl = Rtnl()
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)
    with rtnl:
        yield rtnl


def host_routes():
    """The host's IPv4 routes as CIDRs (the default route excluded)."""
    with Rtnl() as rtnl:
        return list(host_routes_with(rtnl))


def ensure_bridge(netdef, rtnl=None):
    """The network's bridge, with the gateway address, up, and whether this
    call made it. Created once; a bridge that exists is left as it is."""
    if rtnl is None:
        with Rtnl() as rtnl:
            return ensure_bridge(netdef, rtnl)
    import ipaddress

    br = netdef["bridge"]
    found = rtnl.link_index(br)
    if found is not None:
        return found, False
    net = ipaddress.IPv4Network(netdef["subnet"])
    for route in set(host_routes_with(rtnl)):
        if net.overlaps(ipaddress.IPv4Network(route, strict=False)):
            found = rtnl.link_index(br)
            if found is not None:  # another ctr made the bridge (and its routes) meanwhile
                return found, False
            raise CtrError(f"subnet {net} of network {netdef['name']} overlaps the "
                           f"host's route to {route}")
    try:
        rtnl.new_link(br, "bridge")
    except NetlinkError as err:
        if err.code != EEXIST:  # another ctr was quicker
            raise _fail(f"creating bridge {br}", err) from err
        return rtnl.link_index(br), False
    idx = rtnl.link_index(br)
    try:
        rtnl.add_address(idx, netdef["gateway"], net.prefixlen)
        rtnl.set_up(idx)
    except NetlinkError as err:
        raise _fail(f"configuring bridge {br}", err) from err
    return idx, True


def host_routes_with(rtnl):
    for r in rtnl.routes():
        dst = r.get_attr("RTA_DST")
        if dst and r["dst_len"] > 0 and r.get_attr("RTA_OIF") is not None:
            yield f"{dst}/{r['dst_len']}"


def mac_for(ip):
    """docker's scheme: 02:42 and the four bytes of the address."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


def attach(netdef, host_if, pid, ip, prefixlen):
    """The network's bridge (made if missing) and a veth pair: `host_if` on it,
    its peer made in the namespace of `pid` as eth0 with its MAC, then given
    the address and the default route via the gateway. Returns (MAC, whether
    the bridge was made here)."""
    mac = mac_for(ip)
    with Rtnl() as rtnl:
        bridge_idx, created = ensure_bridge(netdef, rtnl)
        peer = {"attrs": [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_PID", pid),
                          ("IFLA_ADDRESS", mac)]}
        try:
            rtnl.new_link(host_if, "veth", {"attrs": [("VETH_INFO_PEER", peer)]},
                          master=bridge_idx)
            rtnl.set_up(rtnl.link_index(host_if))
        except NetlinkError as err:
            delete(host_if)
            raise _fail(f"creating veth {host_if}", err) from err
    try:
        with netns_socket(pid) as rtnl:
            idx = rtnl.link_index("eth0")
            rtnl.add_address(idx, ip, prefixlen)
            rtnl.set_up(idx)
            rtnl.add_default_route(netdef["gateway"])
    except NetlinkError as err:
        delete(host_if)
        raise _fail("configuring eth0 in the container", err) from err
    return mac, created


TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000


def open_tap(name, bridge_idx):
    """A tap for a VM, enslaved to the bridge and up. Not persistent: it is
    gone when the last fd of it (QEMU's) is closed."""
    import fcntl
    import struct

    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        raise CtrError(f"/dev/net/tun: {err.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(),
                                               IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        with Rtnl() as rtnl:
            rtnl.set_up(rtnl.link_index(name), master=bridge_idx)
    except OSError as err:
        os.close(fd)
        raise CtrError(f"creating tap {name}: {err.strerror or err}") from None
    except NetlinkError as err:
        os.close(fd)
        raise _fail(f"attaching tap {name}", err) from err
    return fd


def delete(ifname):
    """Remove a link if it is still there (a veth goes with its namespace anyway)."""
    with Rtnl() as rtnl:
        found = rtnl.link_index(ifname)
        if found is not None:
            with contextlib.suppress(NetlinkError):
                rtnl.delete_link(found)


def delete_bridge(netdef):
    delete(netdef["bridge"])
