"""Bridge, veth, addresses and routes through pyroute2 (netlink), never `ip`.

The container's side is configured from the host: a netlink socket opened
inside the container's network namespace (setns there, open, setns back) talks
to that namespace for as long as it lives.
"""

import contextlib
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ctr.errors import CtrError
from ctr.native import CLONE_NEWNET, setns


def _fail(what, err):
    return CtrError(f"{what}: {err.args[1] if len(err.args) > 1 else err}")


@contextlib.contextmanager
def netns_socket(pid):
    """An IPRoute bound to the network namespace of process `pid`."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target, CLONE_NEWNET)
        try:
            ipr = IPRoute()
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)
    with ipr:
        yield ipr


def host_routes():
    """The host's IPv4 routes as CIDRs (the default route excluded)."""
    with IPRoute() as ipr:
        return list(host_routes_with(ipr))


def ensure_bridge(netdef):
    """The network's bridge, with the gateway address, up. Created once; a
    bridge that exists is left as it is."""
    import ipaddress

    net = ipaddress.IPv4Network(netdef["subnet"])
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=netdef["bridge"])
        if found:
            return found[0]
        for route in set(host_routes_with(ipr)):
            if net.overlaps(ipaddress.IPv4Network(route, strict=False)):
                raise CtrError(f"subnet {net} of network {netdef['name']} overlaps the "
                               f"host's route to {route}")
        try:
            ipr.link("add", ifname=netdef["bridge"], kind="bridge")
        except NetlinkError as err:
            if err.code != 17:  # EEXIST: another ctr was quicker
                raise _fail(f"creating bridge {netdef['bridge']}", err) from err
            return ipr.link_lookup(ifname=netdef["bridge"])[0]
        idx = ipr.link_lookup(ifname=netdef["bridge"])[0]
        try:
            ipr.addr("add", index=idx, address=netdef["gateway"], prefixlen=net.prefixlen)
            ipr.link("set", index=idx, state="up")
        except NetlinkError as err:
            raise _fail(f"configuring bridge {netdef['bridge']}", err) from err
        return idx


def host_routes_with(ipr):
    for r in ipr.get_routes(family=2):
        dst = r.get_attr("RTA_DST")
        if dst and r["dst_len"] > 0 and r.get_attr("RTA_OIF") is not None:
            yield f"{dst}/{r['dst_len']}"


def mac_for(ip):
    """docker's scheme: 02:42 and the four bytes of the address."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


def attach(netdef, bridge_idx, host_if, pid, ip, prefixlen):
    """A veth pair: `host_if` on the bridge, its peer moved into the namespace
    of `pid` as eth0 with the address, the default route via the gateway."""
    peer = f"{host_if[:13]}p"
    mac = mac_for(ip)
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=host_if, kind="veth",
                     peer={"ifname": peer, "net_ns_pid": pid})
            idx = ipr.link_lookup(ifname=host_if)[0]
            ipr.link("set", index=idx, master=bridge_idx, state="up")
        except NetlinkError as err:
            delete(host_if)
            raise _fail(f"creating veth {host_if}", err) from err
    try:
        with netns_socket(pid) as ipn:
            idx = ipn.link_lookup(ifname=peer)[0]
            ipn.link("set", index=idx, ifname="eth0", address=mac)
            ipn.addr("add", index=idx, address=ip, prefixlen=prefixlen)
            ipn.link("set", index=idx, state="up")
            ipn.route("add", dst="0.0.0.0/0", gateway=netdef["gateway"])
    except NetlinkError as err:
        delete(host_if)
        raise _fail("configuring eth0 in the container", err) from err
    return mac


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
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=idx, master=bridge_idx, state="up")
    except OSError as err:
        os.close(fd)
        raise CtrError(f"creating tap {name}: {err.strerror or err}") from None
    except NetlinkError as err:
        os.close(fd)
        raise _fail(f"attaching tap {name}", err) from err
    return fd


def delete(ifname):
    """Remove a link if it is still there (a veth goes with its namespace anyway)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=found[0])


def delete_bridge(netdef):
    delete(netdef["bridge"])
