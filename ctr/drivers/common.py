"""The steps both drivers' start takes alike. Each registers its undo with the
start's reverter (ctr.revert), so a failed start leaves nothing behind:

    with Reverter() as revert:
        plan = network_plan(revert, rec)        # an address leased, /etc files
        cg = create_cgroup(revert, cgroups.Cgroup(...), resources)
        ... the driver's own steps: the process, revert.add(kill, pid) ...
        revert.success()
"""

import os
import signal


def network_plan(revert, rec):
    """The network of `rec`'s start, prepared (ctr.net.attach.Plan: an address
    leased for a bridge, the /etc files written); the reverter aborts it."""
    from ctr.net.attach import Plan

    plan = Plan(rec.store, rec, rec.spec)
    revert.add(plan.abort)
    plan.prepare()
    return plan


def create_cgroup(revert, cg, resources, *, restrict_devices=False, devices=(), rules=None):
    """`cg` made with `resources` applied, and with `restrict_devices` every
    device denied but a container's own and `devices` (--device's Device
    entries), or, when `rules` are given (an OCI bundle's DeviceRules, in
    order), those rules' and a container's own, before any process joins;
    the reverter destroys it."""
    cg = cg.create(resources)
    revert.add(cg.destroy)
    if restrict_devices:
        from ctr.cgroups.common import device_rules
        from ctr.spec import device_rule_text

        if rules is not None:
            rules = [(bool(r["allow"]), device_rule_text(r)) for r in rules]
        cg.restrict_devices(device_rules(devices, rules))
    return cg



def kill(pid):
    """SIGKILL a child of ours and reap it; one already gone is fine."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class Fds:
    """The fds and sockets a start opens for its child (pipes, a socketpair),
    each closed once: early with close(), when one side is done with it, and
    whatever is still open when the block ends."""

    def __init__(self):
        self._open = []

    def add(self, fd):
        """Own `fd` (an int or a socket; None passes through)."""
        if fd is not None:
            self._open.append(fd)
        return fd

    def pipe(self):
        r, w = os.pipe()  # close-on-exec
        return self.add(r), self.add(w)

    def socketpair(self):
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return self.add(a), self.add(b)

    def close(self, *fds):
        for fd in fds:
            if fd is not None and fd in self._open:
                self._open.remove(fd)
                if isinstance(fd, int):
                    os.close(fd)
                else:
                    fd.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(*reversed(self._open))
        return False
