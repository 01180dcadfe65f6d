"""NAT and published ports in nftables, in a table of ctr's own (`ip ctr`),
through one `nft -f -` script per change; nothing is ever read back.

    map pub_any    PROTO . HOST_PORT            : IP . PORT   (-p PORT:PORT)
    map pub_ip     HOST_IP . PROTO . HOST_PORT  : IP . PORT   (-p HOST_IP:PORT:PORT)
    chain prerouting, output    two fixed rules: DNAT through the maps
    chain post-BRIDGE           a network's masquerade (its own base chain)

An instance's published ports are elements of the maps, each with the comment
`ctr:ID`, added and deleted by key: publishing or unpublishing costs the same
with one instance or a thousand, and a network's chain is made or flushed and
made again as a whole. Every script begins with the table, maps and fixed
rules (flushed and added again: the same script twice leaves one copy), so
a ruleset someone flushed comes back with the next change.
"""

import subprocess

from ctr.errors import CtrError

TABLE = "ctr"
_DNAT = ("fib daddr type local dnat ip to meta l4proto . th dport map @pub_any",
         "dnat ip to ip daddr . meta l4proto . th dport map @pub_ip")
SKELETON = f"""\
add table ip {TABLE}
add map ip {TABLE} pub_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map ip {TABLE} pub_ip {{ type ipv4_addr . inet_proto . inet_service : \
ipv4_addr . inet_service; }}
add chain ip {TABLE} prerouting {{ type nat hook prerouting priority dstnat; }}
add chain ip {TABLE} output {{ type nat hook output priority -100; }}
flush chain ip {TABLE} prerouting
flush chain ip {TABLE} output
""" + "".join(f"add rule ip {TABLE} {chain} {rule}\n" for chain in ("prerouting", "output")
              for rule in _DNAT)


def nft(script=None, args=()):
    try:
        proc = subprocess.run(["nft", *args, *(["-f", "-"] if script is not None else [])],
                              input=script, capture_output=True, text=True)
    except FileNotFoundError:
        raise CtrError("nft is not installed (apt-get install nftables)") from None
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()
        raise CtrError(f"nft: {msg[0] if msg else 'failed'}")
    return proc.stdout


def _sysctl(path, value):
    with open(path, "w") as f:
        f.write(value)


def _network_lines(netdef):
    chain, br = f"post-{netdef['bridge']}", netdef["bridge"]
    comment = f"ctr-net:{netdef['name']}"
    return [f"add chain ip {TABLE} {chain} {{ type nat hook postrouting priority srcnat; }}",
            f"flush chain ip {TABLE} {chain}",
            f"add rule ip {TABLE} {chain} ip saddr {netdef['subnet']} oifname != \"{br}\" "
            f"masquerade comment \"{comment}\"",
            # published ports answer on 127.0.0.1 too: the bridge routes loopback sources
            f"add rule ip {TABLE} {chain} oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade "
            f"comment \"{comment}\""]


def _element(instance_id, ip, p, with_data=True):
    key = (f"{p['proto']} . {p['host_port']}" if p["host_ip"] == "0.0.0.0"
           else f"{p['host_ip']} . {p['proto']} . {p['host_port']}")
    where = "pub_any" if p["host_ip"] == "0.0.0.0" else "pub_ip"
    if not with_data:
        return f"ip {TABLE} {where} {{ {key} }}"
    return f"ip {TABLE} {where} {{ {key} comment \"ctr:{instance_id}\" : {ip} . {p['port']} }}"


def _unpublish_lines(instance_id, ip, ports):
    # added first, then deleted: a delete of what is not there would fail the script
    lines = []
    for p in ports:
        lines += [f"add element {_element(instance_id, ip, p)}",
                  f"delete element {_element(instance_id, ip, p, False)}"]
    return lines


def apply(netdef=None, publish=None, forget=()):
    """One nft run: the skeleton, `netdef`'s masquerade (when given: a new
    bridge), the ports of leases that died unwatched (`forget`) removed, and
    `publish` = (instance id, ip, ports) added."""
    lines = []
    if netdef is not None:
        _sysctl("/proc/sys/net/ipv4/ip_forward", "1")  # as docker turns it on
        lines += _network_lines(netdef)
        try:
            _sysctl(f"/proc/sys/net/ipv4/conf/{netdef['bridge']}/route_localnet", "1")
        except OSError:
            pass
    for lease in forget:
        lines += _unpublish_lines(lease["id"], lease["ip"], lease.get("ports", ()))
    if publish and publish[2]:
        instance_id, ip, ports = publish
        lines += [f"add element {_element(instance_id, ip, p)}" for p in ports]
    if lines:
        nft(SKELETON + "".join(f"{ln}\n" for ln in lines))


def ensure_network(netdef):
    apply(netdef)


def remove_network(netdef):
    chain = f"post-{netdef['bridge']}"
    nft(SKELETON + f"add chain ip {TABLE} {chain}\nflush chain ip {TABLE} {chain}\n"
        f"delete chain ip {TABLE} {chain}\n")


def unpublish(instance_id, ip, ports):
    if ports:
        nft(SKELETON + "".join(f"{ln}\n" for ln in _unpublish_lines(instance_id, ip, ports)))
