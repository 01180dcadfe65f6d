"""Networking. For now every container has its own network namespace with only
loopback; the bridge, veth, IPAM and NAT come with pyroute2 (imported only by
the code paths that use them, never on the start path of --network none).
"""

from ctr.native import _native


def loopback_up():
    """Bring `lo` up in the caller's network namespace (one ioctl, no netlink)."""
    _native.link_up("lo")
