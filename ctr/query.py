"""Read-only views of the instances in a store (Store.listing() lists them):
inspection, counters, and who uses an image or a network. Nothing here changes
an instance; the transitions are ctr.instance's."""

import errno

from ctr import drivers
from ctr import store as st
from ctr.errors import CgroupError, Conflict
from ctr.instance import cgroup_of

LIVE = (st.RUNNING, st.PAUSED)


def inspect(rec, images):
    """An instance's spec, state (with what its driver adds while it runs) and paths."""
    spec, state = rec.spec, rec.state()
    if state["status"] in LIVE:
        extra = drivers.load(spec.kind).describe(rec, state)
        if extra:
            state = {**state, spec.kind: extra}
    return {
        "name": spec.name,
        "id": spec.id,
        "kind": spec.kind,
        "image": spec.image,
        "labels": dict(spec.labels),
        "spec": spec.to_dict(),
        "state": state,
        "paths": {
            "record": rec.dir,
            "rootfs": rec.rootfs,
            "upper": rec.upper,
            "work": rec.work,
            "log": rec.log_path,
            "image": images.rootfs(spec.image),
        },
    }


def stats(store, names=()):
    """[(record, counters)] of the running instances (all when no names)."""
    if names:
        recs = [store.record(n) for n in names]
    else:
        recs = [rec for rec, _, state in store.listing() if state["status"] in LIVE]
    out = []
    for rec in recs:
        state = rec.state()
        if state["status"] not in LIVE:
            if names:
                raise Conflict(f"instance {rec.name} is not running")
            continue
        try:
            counters = cgroup_of(rec, state).stats()
        except CgroupError as err:
            if err.errno not in (errno.ENOENT, errno.ENODEV):
                raise
            continue  # stopped while we read
        out.append((rec, counters))
    return out


def image_users(store, image):
    """The names of the instances made from `image`."""
    return [rec.name for rec, spec, _ in store.listing() if spec and spec.image == image]


def image_users_running(store, image):
    """(the instances made from `image`, those of them running or paused)."""
    every, running = [], []
    for rec, spec, state in store.listing():
        if spec and spec.image == image:
            every.append(rec.name)
            if state["status"] in LIVE:
                running.append(rec.name)
    return every, running


def network_users(store):
    """{network name: [instance names]}."""
    users = {}
    for rec, spec, _ in store.listing():
        if spec:
            users.setdefault(spec.network, []).append(rec.name)
    return users


def instance_pids(rec):
    """The host pids of every process of a running instance (its cgroup's)."""
    state = rec.state()
    if state["status"] not in LIVE:
        raise Conflict(f"instance {rec.name} is not running")
    return cgroup_of(rec, state).pids()


def wait_stopped(rec, poll=0.05):
    """Block until the instance is stopped (its next exit when it runs or is about
    to); its last state, with the exit status its reaper recorded. An instance
    removed meanwhile (--rm) gives what its last readable state said."""
    import time

    from ctr.errors import NotFound, StateError
    from ctr.instance import wait_exit

    last = {}
    while True:
        try:
            state = rec.read_state()
        except (NotFound, StateError):
            if last.get("exit_code") is not None:
                return last
            raise
        last = state
        status = state["status"]
        if status in (st.STOPPED, st.CORRUPT):
            return state
        reaper = st.alive(state.get("reaper_pid"), state.get("reaper_starttime"))
        if status in LIVE and st.alive(state.get("pid"), state.get("starttime")):
            wait_exit(state["pid"], state.get("starttime"), 1.0)
        elif status in LIVE + (st.RESTARTING,) and not reaper:
            return rec.state()  # nobody will record it: reconciled as lost
        else:
            time.sleep(poll)  # created, restarting, or exited and being recorded


def host_info(store, images, hierarchies):
    """What `ctr info` shows: the kernel, cgroups, storage, networks, counts."""
    import os
    import platform

    from ctr.net.networks import Networks

    counts = {s: 0 for s in (st.RUNNING, st.PAUSED, st.STOPPED, st.CREATED, st.RESTARTING)}
    listed = store.listing() if os.path.isdir(store.instances_dir) else []
    for _, _, state in listed:
        counts[state["status"]] = counts.get(state["status"], 0) + 1
    v2_only = all(ctrls == ("unified",) for _, ctrls in hierarchies)
    try:
        networks = [n["name"] for n in Networks(store).list()]
    except OSError:
        networks = []
    return {
        "Kernel": platform.release(),
        "OperatingSystem": _os_name(),
        "Architecture": platform.machine(),
        "CPUs": os.cpu_count(),
        "CgroupVersion": "2" if v2_only else "1",
        "CgroupDriver": "cgroupfs",
        "StorageDriver": "overlay",
        "StateRoot": store.root,
        "Instances": len(listed),
        "InstancesByStatus": counts,
        "Images": len(images.list()) if os.path.isdir(store.images_dir) else 0,
        "Networks": ["bridge", "host", "none", *[n for n in networks if n != "bridge"]],
    }


def _os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def changes(rec, lowers):
    """What an instance changed in its root, as `docker diff` lists it: [(kind, path)]
    with kind A (added), C (changed) or D (deleted), read from its upper directory
    (an overlayfs whiteout, a 0/0 character device, is a deletion). `lowers`: the
    image's root folders, top first."""
    import os
    import stat

    def in_lower(rel):
        return any(os.path.lexists(os.path.join(lower, rel)) for lower in lowers)

    out = []
    upper = rec.upper
    for top, dirs, files in os.walk(upper):
        for name in sorted(dirs + files):
            full = os.path.join(top, name)
            rel = os.path.relpath(full, upper)
            st_ = os.lstat(full)
            if stat.S_ISCHR(st_.st_mode) and st_.st_rdev == 0:
                out.append(("D", "/" + rel))
            else:
                out.append(("C" if in_lower(rel) else "A", "/" + rel))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]
    return sorted(out, key=lambda change: change[1])


def disk_usage(store, images):
    """`ctr system df`: images, instances (their upper directories), volumes
    (named and anonymous) and the shifted copies of layers (--userns=auto
    without idmapped mounts): how many, how many in use, their size, and what a
    prune would free."""
    import os

    from ctr import volumes
    from ctr.store import du as _du
    from ctr.userns import block_key

    listed = store.listing()
    used_images = {spec.image for _, spec, _ in listed if spec}
    imgs = images.list()
    img_size = sum(i.get("size", 0) for i in imgs)
    img_free = sum(i.get("size", 0) for i in imgs if i["name"] not in used_images)
    live = [(rec, spec, state) for rec, spec, state in listed if state["status"] in LIVE]
    sizes = {rec.name: _du(rec.upper) for rec, _, _ in listed}
    stopped = [rec.name for rec, _, state in listed if state["status"] not in LIVE
               and state["status"] != st.RESTARTING]
    used = volumes.users(store)
    vol_sizes = {v["Name"]: _du(os.path.dirname(v["Mountpoint"]))
                 for v in volumes.listing(store)}
    return [
        {"type": "Images", "total": len(imgs),
         "active": len(used_images & {i["name"] for i in imgs}),
         "size": img_size, "reclaimable": img_free},
        {"type": "Instances", "total": len(listed), "active": len(live),
         "size": sum(sizes.values()), "reclaimable": sum(sizes[n] for n in stopped)},
        {"type": "Local Volumes", "total": len(vol_sizes),
         "active": len(used.keys() & vol_sizes.keys()), "size": sum(vol_sizes.values()),
         "reclaimable": sum(s for v, s in vol_sizes.items() if v not in used)},
        shifted_usage(images.layers, {lid for i in imgs for lid in i["layers"]},
                      {block_key(spec) for _, spec, _ in listed} - {None}),
    ]


def shifted_usage(layers, used, held):
    """`system df`'s row of the shifted copies in the layer store `layers`: a
    copy is active when `image prune` keeps it (an image has its layer, `used`,
    and an instance holds its block, `held`), reclaimable otherwise; what killed
    copies left counts in the size and the reclaimable, not as copies."""
    from ctr.images.layerstore import TMP, kept
    from ctr.store import du

    total = active = size = free = 0
    for layer_id, entry, path in layers.shifted_copies():
        n = du(path)
        size += n
        whole = layer_id is not None and TMP not in entry
        total += whole
        if whole and kept(layer_id, entry, used, held):
            active += 1
        else:
            free += n
    return {"type": "Shifted layers", "total": total, "active": active, "size": size,
            "reclaimable": free}
