"""`ctr system df` and `ctr system prune`: what the state root holds, and
removing what nothing uses (docker's verbs)."""

import json

import click

from ctr.cli.context import human_size, pass_ctx


@click.group()
def system():
    """What the state root holds; prune what nothing uses."""


@system.command(name="df")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def system_df(obj, fmt):
    """Images, instances and volumes: count, in use, size, reclaimable."""
    from ctr.query import disk_usage

    rows = disk_usage(obj.store, obj.images)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE")]
    table += [(r["type"], str(r["total"]), str(r["active"]), human_size(r["size"]),
               human_size(r["reclaimable"])) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@system.command(name="prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask first.")
@click.option("-a", "--all", "all_images", is_flag=True,
              help="Also every image no instance uses.")
@click.option("--volumes", is_flag=True,
              help="Also anonymous volumes no instance has (named ones stay, as with "
                   "docker 23+: `ctr volume prune -a` removes those).")
@pass_ctx
def system_prune(obj, force, all_images, volumes):
    """Remove stopped instances, networks no instance uses, what killed pulls
    left, unused layers (with -a every unused image, with --volumes the anonymous
    volumes no instance has)."""
    from ctr import store as st
    from ctr.query import image_users_running, network_users

    if not force:
        what = ["all stopped instances", "all networks no instance uses"]
        what += ["all images no instance uses"] if all_images else []
        what += ["all anonymous volumes no instance has"] if volumes else []
        click.confirm("This removes:\n  - " + "\n  - ".join(what) + "\nAre you sure?",
                      abort=True, err=True)
    removed = {"instances": [], "networks": [], "images": [], "volumes": []}
    freed = 0
    for rec, _spec, state in obj.store.listing():
        if state["status"] in (st.STOPPED, st.CREATED, st.CORRUPT):
            size = st.du(rec.upper)  # what `system df` counts of an instance
            obj.instances.remove(rec.name, force=True)
            removed["instances"].append(rec.name)
            freed += size
    from ctr.net import manage

    users = network_users(obj.store)
    for net in manage.listing(obj.store, users):
        if net["name"] != "bridge" and not net["instances"]:
            manage.remove(obj.store, net["name"], users)
            removed["networks"].append(net["name"])
    if all_images:
        in_use = {spec.image for _, spec, _ in obj.store.listing() if spec}
        for img in obj.images.list():
            if img["name"] not in in_use:
                size = obj.images.record_size(img["name"])
                obj.images.remove(img["name"], collect=False,
                                  users_of=lambda n: image_users_running(obj.store, n))
                removed["images"].append(img["name"])
                freed += size
    if volumes:
        from ctr import volumes as vols

        pruned = vols.prune(obj.store)
        removed["volumes"] = [name for name, _ in pruned]
        freed += sum(size for _, size in pruned)
    got = obj.images.collect()
    for kind, names in removed.items():
        for name in names:
            click.echo(f"deleted {kind[:-1]}: {name}")
    click.echo(f"removed {sum(map(len, removed.values()))} item(s), {len(got['layers'])} "
               f"layer(s), {len(got['shifted'])} shifted layer(s), {got['blobs']} blob(s)")
    click.echo(f"Total reclaimed space: {human_size(freed + got['reclaimed'])}")
