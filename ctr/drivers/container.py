"""The container driver: namespaces + cgroup + overlay root, with the C helper's clone.

The driver does kernel work and nothing else: no state files, no printing.
`start` returns a Process once the command has been exec'd (or raises the
error the container's init reported); the caller owns waiting and recording.
"""

import os
import signal

from ctr import cgroups, namespaces, report
from ctr.errors import CtrError, StartError
from ctr.native import CLONE_NEWPID, clone, setns
from ctr.store import proc_starttime


class Process:
    """A process ctr started and must reap: the container's init, or an exec."""

    def __init__(self, pid, master=None, cgroup=None, net=None):
        self.pid = pid
        self.starttime = proc_starttime(pid)
        self.master = master
        self.cgroup = cgroup
        self.net = net

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def wait(self, stdin=0, stdout=1):
        """Relay the terminal if there is one (to stdin/stdout), reap, return the
        exit status (128+N when killed by signal N)."""
        if self.master is not None:
            from ctr.tty import relay

            try:
                relay(self.master, stdin, stdout)
            finally:
                os.close(self.master)
                self.master = None
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code


def _pty_channel(tty):
    """With -t, a socketpair over which the container sends the master of a pty
    it opened in its own devpts."""
    if not tty:
        return None, None
    import socket

    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def _receive_pty(sock):
    """The master fd, or None if the child failed before sending it (its report says why)."""
    if sock is None:
        return None
    import socket

    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    return fds[0] if fds else None


def _close(*socks):
    for s in socks:
        if s is not None:
            s.close()


def _abort(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


class ContainerDriver:
    kind = "container"

    def start(self, rec, lower, *, stdio=(None, None, None), tty=False, pdeathsig=None):
        """Network plan (address leased), cgroup (limits applied), clone, network
        attached, go. Whatever fails, what was done before is undone."""
        from ctr.net.attach import Plan

        spec = rec.spec
        plan = Plan(rec.store, rec, spec)
        undo = [plan.abort]
        try:
            plan.prepare()
            cg = cgroups.Cgroup(spec.cgroup_parent, spec.id)
            if spec.init and cg.dir_of("unified") is None:
                raise StartError("--init needs a cgroup2 hierarchy on the host (systemd's view "
                                 "of its own cgroup): this host mounts only cgroup v1")
            cg = cg.create(spec.resources)
            undo.append(cg.destroy)
            if not spec.privileged:
                cg.restrict_devices()
            return self._clone(rec, lower, plan, cg, stdio, tty, pdeathsig)
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except CtrError:
                    pass  # the first error is the one to report
            raise

    def _clone(self, rec, lower, plan, cg, stdio, tty, pdeathsig):
        spec = rec.spec
        master = None
        join_fd = plan.open_join_fd()
        sock, child_sock = _pty_channel(tty)
        go_r, go_w = os.pipe()
        rep_r, rep_w = os.pipe()
        flags = plan.clone_flags(namespaces.CONTAINER_FLAGS)
        if spec.userns:
            flags |= namespaces.CLONE_NEWUSER
        try:
            pid = clone(flags)
        except OSError as err:
            for fd in (go_r, go_w, rep_r, rep_w, join_fd):
                if fd is not None:
                    os.close(fd)
            _close(sock, child_sock)
            raise StartError(f"clone: {err.strerror}", errno=err.errno) from err
        if pid == 0:
            os.close(go_w)
            os.close(rep_r)
            namespaces.container_init(
                go_r, rep_w, spec=spec, lower=lower, rootfs=rec.rootfs, upper=rec.upper,
                work=rec.work, stdio=stdio, tty_sock=child_sock, pdeathsig=pdeathsig,
                binds=plan.binds, netns_fd=join_fd, own_netns=plan.new_netns)
        os.close(go_r)
        os.close(rep_w)
        if join_fd is not None:
            os.close(join_fd)
        _close(child_sock)
        try:
            if spec.userns:
                from ctr.userns import write_maps

                write_maps(pid, spec.userns)
            cg.add(pid)
            net = plan.attach(pid, proc_starttime(pid))
            os.write(go_w, b"G")
            os.close(go_w)
            go_w = None
            master = _receive_pty(sock)
            failure = report.read(rep_r)
        except BaseException:
            _abort(pid)
            if master is not None:
                os.close(master)
            raise
        finally:
            if go_w is not None:
                os.close(go_w)
            os.close(rep_r)
            _close(sock)
        if failure is not None:
            _abort(pid)
            if master is not None:
                os.close(master)
            raise failure.error(f"starting {spec.name}")
        return Process(pid, master, cg, net)

    def exec(self, rec, state, *, command, env, workdir, user, tty=False,
             stdio=(None, None, None)):
        """Run a command inside a running container; returns its Process."""
        spec = rec.spec
        pid = state["pid"]
        cg = cgroups.at(state["cgroups"])
        try:
            pidns = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StartError(f"{spec.name} is not running") from None
        try:
            setns(pidns, CLONE_NEWPID)  # applies to the children forked below
        finally:
            os.close(pidns)
        sock, child_sock = _pty_channel(tty)
        rep_r, rep_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(rep_r)
            _close(sock)
            namespaces.join(pid, cgroup=cg, spec=spec, command=command, env=env,
                            workdir=workdir, user=user, stdio=stdio, tty_sock=child_sock,
                            report_fd=rep_w)
        os.close(rep_w)
        _close(child_sock)
        try:
            master = _receive_pty(sock)
            failure = report.read(rep_r)
        finally:
            os.close(rep_r)
            _close(sock)
        if failure is not None:
            os.waitpid(child, 0)
            if master is not None:
                os.close(master)
            raise failure.error(f"exec in {spec.name}")
        return Process(child, master)

    def pause(self, rec, state, cgroup):
        del rec, state
        cgroup.freeze()

    def resume(self, rec, state, cgroup):
        del rec, state
        cgroup.thaw()

    def describe(self, rec, state):
        del rec, state
        return None

    def signal(self, rec, state, sig):
        del rec
        os.kill(state["pid"], sig)
