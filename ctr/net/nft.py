"""NAT and published ports in nftables, in a table of ctr's own (`ip ctr`),
through `nft -f -` (scripts) and `nft -j` (reading rules back).

Every rule carries a comment that says whose it is: `ctr-net:NAME` for a
network's masquerade, `ctr:ID` for an instance's published ports, so they are
found and removed by handle with their owner and nothing else is touched.
"""

import json
import subprocess

from ctr.errors import CtrError

TABLE = "ctr"
SKELETON = f"""\
add table ip {TABLE}
add chain ip {TABLE} prerouting {{ type nat hook prerouting priority dstnat; }}
add chain ip {TABLE} output {{ type nat hook output priority -100; }}
add chain ip {TABLE} postrouting {{ type nat hook postrouting priority srcnat; }}
"""


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


def rules(comment_prefix=None):
    """[(chain, handle, comment)] of the rules in ctr's table."""
    try:
        out = nft(args=("-j", "list", "table", "ip", TABLE))
    except CtrError:
        return []  # no table yet
    found = []
    for item in json.loads(out).get("nftables", []):
        rule = item.get("rule")
        if rule and (comment_prefix is None or
                     str(rule.get("comment", "")).startswith(comment_prefix)):
            found.append((rule["chain"], rule["handle"], rule.get("comment")))
    return found


def _delete(comment):
    script = "".join(f"delete rule ip {TABLE} {chain} handle {handle}\n"
                     for chain, handle, c in rules(comment) if c == comment)
    if script:
        nft(script)


def _sysctl(path, value):
    with open(path, "w") as f:
        f.write(value)


def ensure_network(netdef):
    """ctr's table, forwarding on (as docker turns it on), and the network's
    masquerade: its addresses leave the host as the host's."""
    _sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    comment = f"ctr-net:{netdef['name']}"
    if any(c == comment for _, _, c in rules(comment)):
        return
    br = netdef["bridge"]
    nft(SKELETON + f"""\
add rule ip {TABLE} postrouting ip saddr {netdef['subnet']} oifname != "{br}" masquerade comment "{comment}"
add rule ip {TABLE} postrouting oifname "{br}" ip saddr 127.0.0.0/8 masquerade comment "{comment}"
""")  # noqa: E501 - nft syntax reads best unbroken
    # published ports answer on 127.0.0.1 too: let the bridge route loopback sources
    try:
        _sysctl(f"/proc/sys/net/ipv4/conf/{br}/route_localnet", "1")
    except OSError:
        pass


def remove_network(netdef):
    _delete(f"ctr-net:{netdef['name']}")


def publish(instance_id, ip, ports):
    """DNAT each published port to the instance: from outside (prerouting) and
    from the host itself (output), to any of the host's own addresses, or to
    the one given."""
    if not ports:
        return
    comment = f"ctr:{instance_id}"
    lines = []
    for p in ports:
        match = ("fib daddr type local" if p["host_ip"] == "0.0.0.0"
                 else f"ip daddr {p['host_ip']}")
        rule = (f"{match} {p['proto']} dport {p['host_port']} dnat to {ip}:{p['port']} "
                f'comment "{comment}"')
        lines.append(f"add rule ip {TABLE} prerouting {rule}\n")
        lines.append(f"add rule ip {TABLE} output {rule}\n")
    try:
        nft(SKELETON + "".join(lines))
    except CtrError:
        unpublish(instance_id)
        raise


def unpublish(instance_id):
    _delete(f"ctr:{instance_id}")
