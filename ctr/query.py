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
