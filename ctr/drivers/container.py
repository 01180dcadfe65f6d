"""The container driver: namespaces + cgroup + overlay root, with the C helper's clone.

The driver does kernel work and nothing else: no state files, no printing.
`start` returns a ContainerProcess once the command has been exec'd (or raises
the error the container's init reported); the caller owns waiting and recording.
The protocol it implements is written down in ctr.drivers.
"""

import os
import signal

from ctr import cgroups, namespaces, report, rootfs
from ctr.drivers import common
from ctr.errors import Conflict, StartError
from ctr.native import CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWUTS, clone, setns
from ctr.revert import Reverter
from ctr.store import proc_starttime, running_record

SIGKILL = signal.SIGKILL  # a default of exec's, beside the drivers' `signal` method


class ContainerProcess:
    """A process ctr started and must reap: the container's init, or an exec
    (which has no cgroup nor network of its own)."""

    def __init__(self, pid, master=None, cgroup=None, net=None):
        self.pid = pid
        self.starttime = proc_starttime(pid)
        self.master = master
        self.cgroup = cgroup
        self.net = net

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def wait(self, stdin=0, stdout=1, stderr=2):
        """Relay the terminal if there is one (to stdin/stdout), reap, return the
        exit status (128+N when killed by signal N). Without a terminal the
        command holds its stdio itself."""
        del stderr  # a pty carries both streams
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


def cgroup_view(spec, cg):
    """What the container sees at /sys/fs/cgroup (ctr.rootfs.mount_cgroup_view):
    its own cgroup, read-only (writable with --privileged, as docker gives it);
    an init's writable cgroup2 view is ctr.rootfs's own. An OCI bundle gets one
    where its config.json mounts cgroup there, read-only if it says so."""
    if spec.init:
        return None
    if spec.oci:
        mode = spec.oci.get("cgroup_mount")
        return None if mode is None else cg.view(readonly=mode == "ro")
    return cg.view(readonly=not spec.privileged)
class _SharedNamespaces:
    """--pid, --ipc and --uts (ctr.spec.options): the namespaces the instance
    shares instead of having its own. `drop`: the clone flags it goes without;
    open_joins(): the namespaces its init joins (--ipc container:NAME);
    open_pid(): the pid namespace the clone is made in (--pid container:NAME:
    the parent joins it for the clone only); `shm_source`: what /dev/shm binds
    (--ipc host: the host's); open_shm(): the mount namespace whose /dev/shm
    the init takes (--ipc container:NAME: NAME's, as docker shares it)."""

    def __init__(self, rec):
        opts = rec.spec.options
        self.drop = 0
        self.pid_target = self.ipc_target = None
        self.shm_source = None
        if opts.pid:
            self.drop |= CLONE_NEWPID
            if opts.pid.startswith("container:"):
                _, state = running_record(rec.store, opts.pid.split(":", 1)[1],
                                          f"--pid {opts.pid}")
                self.pid_target = state["pid"]
        if opts.ipc == "host" or (opts.ipc or "").startswith("container:"):
            self.drop |= CLONE_NEWIPC
            if opts.ipc == "host":
                self.shm_source = "/dev/shm"
            else:
                self.ipc_target = self._shareable(rec.store, opts.ipc.split(":", 1)[1])
        if opts.uts == "host":
            self.drop |= CLONE_NEWUTS

    @staticmethod
    def _shareable(store, name):
        """docker's rule: an IPC namespace is joined only if its owner made it
        shareable (--ipc shareable, or the host's)."""
        target, state = running_record(store, name, f"--ipc container:{name}")
        if target.spec.options.ipc not in ("shareable", "host"):
            raise Conflict(f"--ipc container:{name}: {name}'s IPC namespace is not "
                           f"shareable (start it with --ipc shareable)")
        return state["pid"]

    def __bool__(self):
        return bool(self.drop)

    def open_joins(self):
        if self.ipc_target is None:
            return []
        return [(_open_ns(self.ipc_target, "ipc"), CLONE_NEWIPC)]

    def open_shm(self):
        return None if self.ipc_target is None else _open_ns(self.ipc_target, "mnt")

    def open_pid(self):
        """(the target's pid namespace, ctr's own) to join and go back to."""
        if self.pid_target is None:
            return ()
        return _open_ns(self.pid_target, "pid"), _open_ns("self", "pid")


def _open_ns(pid, kind):
    try:
        return os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise StartError(f"cannot open the {kind} namespace of process {pid}: "
                         f"{err.strerror}", errno=err.errno) from err


def _clone_into(flags, cgroup_fd):
    """(pid, born in the cgroup2 folder `cgroup_fd`): clone3 into it when the
    kernel can (Linux 5.7), else a plain clone, which the caller moves."""
    if cgroup_fd is not None:
        try:
            return clone(flags, cgroup_fd), True
        except OSError:
            pass  # no clone3 or CLONE_INTO_CGROUP here: moved afterwards
    return clone(flags), False


def _clone_in(flags, target=None, own=None, cgroup_fd=None):
    """clone(), within the pid namespace `target` (an fd) when one is given:
    setns(CLONE_NEWPID) applies to the children made next, so the parent goes
    back to its `own` at once (the child cannot, nor needs to). Returns (pid,
    whether it was born in the cgroup2 folder `cgroup_fd`)."""
    if target is None:
        return _clone_into(flags, cgroup_fd)
    setns(target, CLONE_NEWPID)
    try:
        pid, into = _clone_into(flags, cgroup_fd)
    except BaseException:
        setns(own, CLONE_NEWPID)
        raise
    if pid != 0:
        setns(own, CLONE_NEWPID)
    return pid, into


def _open_cgroup2(cg):
    """An fd of the cgroup's cgroup2 folder, to clone into; None without one."""
    path = cg.dir_of("unified")
    if path is None:
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None  # the clone is moved afterwards, which says what is wrong


def _receive_pty(sock):
    """With -t, the master of the pty the child opened in the container's own
    devpts; None if the child failed before sending it (its report says why)."""
    if sock is None:
        return None
    import socket

    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    return fds[0] if fds else None


def _idmapped_layers(rec, layers, fds):
    """--userns=auto over idmapped layers: the image's layers as idmapped
    detached mounts, made here by host root (an idmapped mount needs
    CAP_SYS_ADMIN over the layers' filesystem), for the init to attach in its
    own mount namespace. Returns the overlay's lowerdir and [(fd, folder)]."""
    from ctr import userns

    try:
        opened = userns.open_idmapped(layers, rec.spec.userns)
    except OSError as err:
        raise StartError(f"--userns=auto: cannot idmap the image's layers: "
                         f"{err.strerror or err}", errno=err.errno) from err
    for fd in opened:
        fds.add(fd)
    return userns.idmapped_lower(rec, opened)


class ContainerDriver:
    kind = "container"

    def start(self, rec, lower, *, stdio=(None, None, None), tty=False, pdeathsig=None,
              gate=None, on_root=None):
        """Network plan (address leased), cgroup (limits applied), clone, network
        attached, go. Whatever fails, what was done before is undone. An OCI
        bundle's spec (spec.oci) brings its own namespaces and cgroup path, and
        its root is used as it is (`lower` None); `gate`: see ctr.drivers.
        `on_root(pid)`: called once the init has mounted the container's root,
        before its pivot_root, while the init waits (ctr-oci's prestart and
        createRuntime hooks); what it raises fails the start."""
        spec = rec.spec
        with Reverter() as revert:
            if spec.oci:
                plan = namespaces.BundleNamespaces(spec.oci.get("namespaces", ()))
                path = spec.oci["cgroups_path"]
                cg = cgroups.Cgroup(os.path.dirname(path), os.path.basename(path))
            else:
                plan = common.network_plan(revert, rec)
                cg = cgroups.Cgroup(spec.cgroup_parent, spec.id)
            if spec.init and cg.dir_of("unified") is None:
                raise StartError("--init needs a cgroup2 hierarchy on the host (systemd's view "
                                 "of its own cgroup): this host mounts "
                                 + ("only cgroup v1" if cg.dirs else "no cgroup hierarchy"))
            cg = common.create_cgroup(revert, cg, spec.resources,
                                      restrict_devices=not spec.privileged,
                                      devices=spec.options.devices or (),
                                      rules=spec.options.device_rules)
            proc = self._clone(revert, rec, lower, plan, cg, stdio, tty, pdeathsig, gate,
                               on_root)
            revert.success()
        return proc

    def _clone(self, revert, rec, lower, plan, cg, stdio, tty, pdeathsig, gate, on_root):
        """The init cloned into its namespaces (see ctr.namespaces for the sync
        protocol), given its ids, cgroup and network, told to go; returns once
        it exec'd the command."""
        spec = rec.spec
        flags = plan.clone_flags(namespaces.CONTAINER_FLAGS)
        view = cgroup_view(spec, cg)
        lxcfs = rootfs.lxcfs_root() if spec.lxcfs and not spec.oci else None
        if spec.userns:
            flags |= namespaces.CLONE_NEWUSER
        shared = _SharedNamespaces(rec) if spec.options and not spec.oci else None
        if shared:
            flags &= ~shared.drop
        with common.Fds() as fds:
            join_fd = fds.add(plan.open_join_fd())
            joins = [(fds.add(fd), flag) for fd, flag in plan.open_joins()] if spec.oci else []
            if spec.oci:
                plan.join_pid_namespace()
            pid_fds, shm_from = (), None
            if shared:
                joins = [(fds.add(fd), flag) for fd, flag in shared.open_joins()]
                pid_fds = tuple(fds.add(fd) for fd in shared.open_pid())
                shm_from = fds.add(shared.open_shm())
            idmapped = ()
            if spec.userns.get("idmap"):
                lower, idmapped = _idmapped_layers(rec, lower, fds)
            sock, child_sock = fds.socketpair() if tty else (None, None)
            go_r, go_w = fds.pipe()
            rep_r, rep_w = fds.pipe()
            root_r, root_w = fds.pipe() if on_root else (None, None)
            # Moving the child into its cgroup waits for an RCU grace period
            # (~10 ms). It is born in its cgroup2 folder instead, and moves
            # itself into the v1 ones (with a user namespace, the parent does).
            cgroup2_fd = fds.add(_open_cgroup2(cg))
            joins_itself = not spec.userns
            try:
                pid, born_in = _clone_in(flags, *pid_fds, cgroup_fd=cgroup2_fd)
            except OSError as err:
                raise StartError(f"clone: {err.strerror}", errno=err.errno) from err
            if pid == 0:
                fds.close(go_w, rep_r, root_r, cgroup2_fd)
                namespaces.container_init(
                    go_r, rep_w, spec=spec, lower=lower, rootfs=rec.rootfs, upper=rec.upper,
                    work=rec.work, stdio=stdio, tty_sock=child_sock, pdeathsig=pdeathsig,
                    binds=plan.binds, netns_fd=join_fd, own_netns=plan.new_netns, gate=gate,
                    joins=joins, root_fd=root_w, cgroup_view=view, lxcfs=lxcfs,
                    shm_source=shared.shm_source if shared else None, shm_from=shm_from,
                    idmapped=idmapped, cgroup=cg if joins_itself else None)
            revert.add(common.kill, pid)
            fds.close(go_r, rep_w, join_fd, child_sock, root_w, *(fd for fd, _ in joins),
                      *pid_fds, shm_from, *(fd for fd, _ in idmapped), cgroup2_fd)
            if spec.userns:
                from ctr.userns import write_maps

                write_maps(pid, spec.userns, spec.oci.get("id_mappings"))
            cg.add(pid, skip={*(cg.v1_controllers() if joins_itself else ()),
                              *((("unified",),) if born_in else ())})
            net = plan.attach(pid, proc_starttime(pid))
            os.write(go_w, b"G")
            master = _receive_pty(sock)
            if master is not None:
                revert.add(os.close, master)
            if on_root and os.read(root_r, 1) == b"R":  # EOF: the init failed before
                on_root(pid)
                os.write(go_w, b"G")
            fds.close(go_w)
            failure = report.read(rep_r)
        if failure is not None:
            raise failure.error(f"starting {spec.name}")
        return ContainerProcess(pid, master, cg, net)

    def exec(self, rec, state, *, command, env, workdir, user, tty=False,
             stdio=(None, None, None), pdeathsig=SIGKILL):
        """Run a command inside a running container; returns its ContainerProcess."""
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
        with Reverter() as revert, common.Fds() as fds:
            sock, child_sock = fds.socketpair() if tty else (None, None)
            rep_r, rep_w = fds.pipe()
            child = os.fork()
            if child == 0:
                fds.close(rep_r, sock)
                namespaces.join(pid, cgroup=cg, spec=spec, command=command, env=env,
                                workdir=workdir, user=user, stdio=stdio, tty_sock=child_sock,
                                report_fd=rep_w, pdeathsig=pdeathsig)
            revert.add(common.kill, child)
            fds.close(rep_w, child_sock)
            master = _receive_pty(sock)
            if master is not None:
                revert.add(os.close, master)
            failure = report.read(rep_r)
            if failure is not None:
                raise failure.error(f"exec in {spec.name}")
            revert.success()
        return ContainerProcess(child, master)

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
