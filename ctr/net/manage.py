"""The network verbs (ctr network create|ls|rm): a definition with its IPAM, its
bridge and its nftables rules, made and removed together. Which instances use a
network is the caller's to say (ctr.query.network_users)."""

from ctr.net.networks import Networks


def create(store, name, subnet=None, gateway=None):
    """A network: the first free 10.89.N.0/24 unless a subnet is given."""
    from ctr.net import links
    from ctr.net.networks import free_subnet

    store.ensure()
    networks = Networks(store)
    routes = links.host_routes()
    subnet = subnet or free_subnet(networks.list(), routes)
    return networks.create(name, subnet, gateway, host_routes=routes)


def listing(store, users):
    """Every network's definition with the names of the instances on it."""
    return [{**n, "instances": users.get(n["name"], [])} for n in Networks(store).list()]


def remove(store, name, users):
    """Remove a network no instance uses; its bridge and NAT rules go with it."""
    from ctr.net import links, nft

    networks = Networks(store)
    netdef = networks.remove(name, users.get(name, []))
    nft.remove_network(netdef)
    links.delete_bridge(netdef)
    networks.remove_files(name)
