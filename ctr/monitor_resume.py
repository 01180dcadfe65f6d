"""What ctr-monitor (ctr/native/monitor.c) execs once the run it watched ended:

    python -P -m ctr.monitor_resume ROOT NAME ID DELAY ATTACH_FD CODE RAN_MS

records the end (Instances.finish: the state, oom, events, the network and
cgroup released, --rm) and applies the restart policy; the next run goes back
to ctr-monitor (ctr.monitor). Its own module: ctr.instance imports ctr.monitor.
"""

import os
import sys

from ctr import monitor
from ctr.errors import CtrError
from ctr.instance import Instances, cgroup_of


class _Ended:
    """The run ctr-monitor reaped, as Instances.finish needs it."""

    def __init__(self, rec, state):
        self.pid = state.get("pid")
        self.cgroup = cgroup_of(rec, state)
        self.net = state.get("net")


def _record(store, name, ident):
    """The instance `ident` started as `name`: found under that name, else under
    the one `ctr rename` noted for its id (never another instance of the name)."""
    from ctr.errors import NotFound
    from ctr.store import RENAMED

    try:
        rec = store.record(name, by_id=False)
        if rec.spec.id == ident:
            return rec
    except CtrError:
        pass
    try:
        with open(os.path.join(store.root, RENAMED, ident)) as f:
            rec = store.record(f.read().strip(), by_id=False)
        if rec.spec.id == ident:
            return rec
    except (OSError, CtrError):
        pass
    raise NotFound(f"no such instance: {name}")


def resume(root, name, ident, delay, attach_fd, code, ran_ms):
    """What ctr-monitor execs once the run ended: record the end (Instances.finish:
    the state, oom, events, the network and cgroup released, --rm), then the
    restart policy, whose next run goes back to ctr-monitor."""
    from ctr.images.store import ImageStore
    from ctr.store import Store

    os.chdir("/")  # ctr-monitor's was the record's folder
    monitor.set_title(name)
    store = Store(root)
    instances = Instances(store, ImageStore(store))
    relay = None
    if attach_fd >= 0:
        from ctr.attach import StdinRelay

        relay = StdinRelay.adopt(attach_fd)
    try:
        rec = _record(store, name, ident)
        state = rec.read_state()
    except CtrError:
        return  # removed meanwhile (rm -f)
    ended = _Ended(rec, state)
    restart = instances.finish(rec, ended, code, supervised=True)
    try:
        os.unlink(os.path.join(rec.dir, monitor.EXIT_RECORD))
    except FileNotFoundError:
        pass
    if not restart:
        return
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    proc, run, delay = monitor.restart_after(instances, rec, null, delay, ran_ms / 1000)
    if proc is not None:
        monitor.supervise(instances, rec, proc, run, relay, null, delay)


def main(argv):
    root, name, ident, delay, attach_fd, code, ran_ms = argv
    try:
        resume(root, name, ident, float(delay), int(attach_fd), int(code), int(ran_ms))
    except BaseException:  # noqa: BLE001, S110 - nobody to print to; the record reconciles
        pass
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
