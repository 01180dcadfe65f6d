"""Namespaces: the flags a container gets, the container-side init sequence
(`container_init`), and joining a running container's namespaces (`join`).

Sync protocol between the parent (ctr) and the child (the container's init):

  parent                              child (after clone, in new namespaces)
  ------                              -----
  clone(flags), into the cgroup2 ---> moves itself into its v1 cgroups
  folder (clone3, Linux 5.7)          (tasks, "0"), then blocks reading the
  moves the child into the cgroups    go pipe
  it is not in yet (its v1 ones with
  a user namespace)
  writes b"G" to the go pipe --------> unshare(CLONE_NEWCGROUP), mounts,
                                       pivot_root, hostname, user, caps,
                                       execve(command)
  reads the report pipe (CLOEXEC):
    EOF            <------------------ execve succeeded
    JSON message   <------------------ a step failed (ctr.report's schema)

With a gate (an OCI runtime's create/start split, runc's exec fifo), the child
does every step but the execve, closes the report pipe (EOF: the container is
created) and blocks opening the gate, a fifo, for writing; `start` opens it
for reading and reads the byte the child writes, and the child execs. An
execve that fails after that has no parent reading: the exec stub tells it on
the command's stderr, and the process exits 126 or 127.

The child never prints: any failure, including a Python exception, becomes a
report and the child exits 125 without running the command.
"""

import errno
import fcntl
import os
import signal

from ctr import report
from ctr.errors import EXIT_CANNOT_INVOKE, EXIT_CTR, CgroupError, StartError
from ctr.native import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)
from ctr.process import InitFailure, env_home, find_command
from ctr.signals import reset_signals
from ctr.spec import ALL_CAPS
from ctr.users import resolve_groups, resolve_user

CONTAINER_FLAGS = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET

# The order matters for join(): user first (not used yet), mnt last so the
# host's /proc stays reachable until then. pid applies to children only.
JOIN_ORDER = (("cgroup", CLONE_NEWCGROUP), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
              ("net", CLONE_NEWNET), ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS))


# An OCI config.json's namespace types, as clone(2) flags.
OCI_TYPES = {"pid": CLONE_NEWPID, "network": CLONE_NEWNET, "mount": CLONE_NEWNS,
             "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "user": CLONE_NEWUSER,
             "cgroup": CLONE_NEWCGROUP}


class BundleNamespaces:
    """The namespaces of an OCI bundle's start (spec.oci["namespaces"]), in the
    place of ctr.net.attach.Plan: the types listed without a path are made new,
    those with a path joined (a pod's containers share network, ipc and uts this
    way), the types not listed are the caller's. Nothing is leased or written:
    the caller (podman, containerd) owns the network and binds its own /etc
    files. The cgroup namespace is always the init's own (it unshares it after
    joining its cgroup)."""

    binds = ()

    def __init__(self, namespaces):
        self.flags = 0
        self.paths = {}  # type -> path to join
        for ns in namespaces:
            if ns.get("path"):
                self.paths[ns["type"]] = ns["path"]
            else:
                self.flags |= OCI_TYPES[ns["type"]]
        self.new_netns = bool(self.flags & CLONE_NEWNET)
        self.info = {"network": "new" if self.new_netns else
                     (self.paths.get("network") or "host")}

    def clone_flags(self, flags):
        del flags  # the bundle's list decides, not ctr's defaults
        return self.flags & ~CLONE_NEWCGROUP

    def _open(self, kind):
        path = self.paths[kind]
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise StartError(f"cannot open the {kind} namespace {path}: {err.strerror}",
                             errno=err.errno) from err

    def open_join_fd(self):
        """The network namespace to join, opened before clone; None for none."""
        return self._open("network") if "network" in self.paths else None

    def open_joins(self):
        """[(fd, flag)] of the ipc and uts namespaces the child joins."""
        return [(self._open(kind), OCI_TYPES[kind]) for kind in ("ipc", "uts")
                if kind in self.paths]

    def join_pid_namespace(self):
        """A pid namespace given by path is joined by the parent, before clone:
        setns(CLONE_NEWPID) applies to the children it makes next."""
        if "pid" not in self.paths:
            return
        from ctr.native import setns

        fd = self._open("pid")
        try:
            setns(fd, CLONE_NEWPID)
        except OSError as err:
            raise StartError(f"cannot join the pid namespace {self.paths['pid']}: "
                             f"{err.strerror}", errno=err.errno) from err
        finally:
            os.close(fd)

    def attach(self, pid, starttime):
        del pid, starttime
        return self.info

    def abort(self):
        pass


def check_own_cgroup2(path="/proc/self/cgroup"):
    """Before an init's cgroup namespace is made: the process must sit in a
    cgroup2 folder of its own (ctr's, not the host's root), or the init's view
    at /sys/fs/cgroup would be the host's whole hierarchy."""
    with open(path) as f:
        for line in f:
            if line.startswith("0::"):
                if line[3:].strip() not in ("", "/"):
                    return
                break
    raise InitFailure("--init: the container has no cgroup2 folder of its own; refusing "
                      "to boot an init that would see the host's cgroups")


def _become_userns_root():
    """In a user namespace of its own the process is still host root, which the
    namespace does not map: files it made would be refused (EOVERFLOW). Its
    root is the block's first id."""
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _set_dumpable(value):
    from ctr.native import PR_SET_DUMPABLE, _native

    _native.prctl_set(PR_SET_DUMPABLE, value)


def process_setup(spec):
    """What the last steps need from ctr's own files, loaded while they are in
    reach (before pivot_root or setns): the seccomp filter, built, the sealed
    exec stub, and the resource module. The caller turns the process
    non-dumpable first (_set_dumpable(0)), once it is in its cgroup: until
    it execs, nothing in the container may open its /proc/PID/exe (the host's
    interpreter) or its memory."""
    from ctr import seccomp
    from ctr.native import sealed_exec_stub

    if spec.ulimits:
        import resource  # noqa: F401
    return seccomp.for_instance(spec), sealed_exec_stub()


def set_ulimits(ulimits):
    """--ulimit: before the capabilities go (raising a hard limit needs
    CAP_SYS_RESOURCE, when ctr has it)."""
    if not ulimits:
        return
    import resource

    for u in ulimits:
        soft, hard = (resource.RLIM_INFINITY if v == -1 else v for v in (u["soft"], u["hard"]))
        try:
            resource.setrlimit(getattr(resource, f"RLIMIT_{u['name'].upper()}"), (soft, hard))
        except (ValueError, OSError) as err:
            raise InitFailure(f"--ulimit {u['name']}={u['soft']}:{u['hard']}: "
                              f"{getattr(err, 'strerror', None) or err}",
                              getattr(err, "errno", 0) or 0) from err


def drop_privileges(uid, gid, groups, spec, seccomp_filter=None, pdeathsig=None):
    """Bounding set, ids, capability sets, no_new_privs, seccomp, in that order:
    the bounding set needs CAP_SETPCAP, the ids need CAP_SETUID/SETGID, and the
    filter comes last so it never stands in the way of the steps before it.
    Without no_new_privs the filter goes first, while CAP_SYS_ADMIN (which
    loading one then needs) is still held.

    The capability sets: an OCI process's five (spec.oci["capabilities"]), as
    runc and crun apply them: for a user other than root PR_SET_KEEPCAPS keeps
    the permitted set across setuid; then permitted, effective and inheritable
    are set to exactly the given sets, and each ambient capability is raised.
    execve then computes the command's sets by the kernel's rules: a non-root
    command keeps its ambient set as its permitted and effective ones, a root
    one gets the bounding and inheritable sets. Every other instance: effective
    and permitted within the bounding set (`spec.caps`) for root, none for
    another user (setuid clears them), no inheritable ones."""
    from ctr import seccomp
    from ctr.native import PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, _native

    if seccomp_filter is not None and not spec.no_new_privs:
        seccomp.load(seccomp_filter)
    sets = spec.oci.get("capabilities")
    keep = [ALL_CAPS.index(c) for c in spec.caps]
    _native.capbset_limit(keep)
    os.setgroups(groups)
    os.setgid(gid)
    if sets is not None and uid != 0:
        _native.prctl_set(PR_SET_KEEPCAPS, 1)  # cleared again by execve
    os.setuid(uid)  # from root to non-root clears permitted (unless kept) and effective
    if sets is not None:
        _set_capabilities(sets)
    else:
        # Inheritable emptied; as root, effective and permitted limited to
        # `keep` (effective must stay within permitted: both at once).
        _native.caps_limit(keep, uid == 0)
    if pdeathsig:
        # After setuid, which clears it.
        _native.prctl_set(PR_SET_PDEATHSIG, pdeathsig)
    if spec.no_new_privs:
        _native.prctl_set(PR_SET_NO_NEW_PRIVS, 1)
        if seccomp_filter is not None:
            seccomp.load(seccomp_filter)


def _set_capabilities(sets):
    """Permitted, effective and inheritable set exactly (one capset(2)), then
    the ambient set (which needs each of its capabilities permitted and
    inheritable: ctr.oci.config leaves out the others)."""
    from ctr.native import _native, cap_ambient_clear, cap_ambient_raise

    masks = [[ALL_CAPS.index(c) for c in sets[name]]
             for name in ("permitted", "effective", "inheritable")]
    try:
        _native.caps_set(*masks)
    except OSError as err:
        raise InitFailure(f"process.capabilities: cannot set the permitted, effective and "
                          f"inheritable sets: {err.strerror}", err.errno) from err
    cap_ambient_clear()
    for c in sets["ambient"]:
        try:
            cap_ambient_raise(ALL_CAPS.index(c))
        except OSError as err:
            raise InitFailure(f"process.capabilities.ambient: cannot raise CAP_{c}: "
                              f"{err.strerror} (it must be permitted and inheritable)",
                              err.errno) from err


def _exec(command, env, workdir, stub, report_fd, gate=None, oci=None):
    """Exec the command through the sealed stub (see ctr/native/execstub.c),
    which reports its own execve's failure on `report_fd`. With a `gate` (an
    O_PATH fd of the exec fifo), wait there first: see the module's doc; then
    an OCI bundle's startContainer hooks run (`oci`: spec.oci)."""
    envd = dict(e.split("=", 1) for e in env)
    try:
        os.chdir(workdir)
    except OSError as err:
        raise InitFailure(f"cannot use working directory {workdir}: {err.strerror}",
                          err.errno) from err
    path = find_command(command[0], envd)
    if gate is not None:
        os.close(report_fd)  # EOF: created
        report_fd = os.dup(2)  # the stub closes it on exec: stderr itself stays
        fifo = os.open(f"/proc/self/fd/{gate}", os.O_WRONLY | os.O_CLOEXEC)  # waits for start
        os.write(fifo, b"0")
        os.close(fifo)
        os.close(gate)
        try:
            _run_hooks(oci, "startContainer", "created")
        except InitFailure as err:  # start has returned: the container's stderr is told
            os.write(2, f"ctr-oci: {err}\n".encode())
            os._exit(EXIT_CTR)
    os.set_inheritable(report_fd, True)
    try:
        os.execve(stub, ["ctr-exec", str(report_fd), path, *command], envd)
    except OSError as err:
        raise InitFailure(f"{command[0]}: cannot execute: {err.strerror}", err.errno,
                          EXIT_CANNOT_INVOKE) from err


def _run_hooks(oci, phase, status):
    """An OCI bundle's hooks of `phase`, run from the container's init."""
    hooks = (oci or {}).get("hooks", {}).get(phase)
    if not hooks:
        return
    from ctr import hooks as hooks_mod

    st = oci["hook_state"]
    state = hooks_mod.state_json(st["id"], status, os.getpid(), st["bundle"],
                                 st["annotations"], st["version"])
    failures = hooks_mod.run(phase, hooks, state)
    if failures:
        raise InitFailure(failures[0])


def _sysctl(values):
    """An OCI bundle's linux.sysctl, written through the host's /proc before the
    container's is mounted: the keys allowed (ctr.oci.config) are those of the
    net, ipc and mqueue namespaces, which are the opener's, so these are the
    container's own."""
    for key, value in values.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as err:
            raise InitFailure(f"sysctl {key}={value}: {err.strerror}", err.errno) from err


def _clone_shm(mnt_fd):
    """--ipc container:NAME: a detached copy of NAME's /dev/shm (an fd for
    ctr.rootfs.mount_dev), taken from inside NAME's mount namespace, since
    mount(2) does not bind a mount of another namespace; then back to the
    init's own namespace (setns puts its root and cwd at that root: the
    host's, as before, for the init has not pivoted yet)."""
    from ctr.native import CLONE_NEWNS, _native, setns

    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(mnt_fd, CLONE_NEWNS)
        try:
            return _native.clone_tree("/dev/shm")
        finally:
            setns(own, CLONE_NEWNS)
    finally:
        os.close(own)
        os.close(mnt_fd)


def _oom_score_adj(value, what="--oom-score-adj"):
    """The process's oom_score_adj, inherited by the command (lowering it needs
    CAP_SYS_RESOURCE: before the capabilities go)."""
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as err:
        hint = " (lowering it needs CAP_SYS_RESOURCE)" if err.errno == errno.EACCES else ""
        raise InitFailure(f"{what} {value}: {err.strerror}{hint}", err.errno) from err


def _bundle_process(oci, groups):
    """What an OCI bundle's process asks beyond ctr's own options: its
    supplementary groups exactly (additionalGids, none when not given, as
    runc), its umask (runc's 0022 by default) and oomScoreAdj. Returns the
    groups."""
    os.umask(oci.get("umask", 0o022))
    _oom_score_adj(oci.get("oom_score_adj"), "oomScoreAdj")
    return list(oci.get("additional_gids", groups))


def _run_process(options, groups):
    """The process's part of ctr.spec.options: --group-add's groups added to
    the user's (looked up in the container's /etc/group), --oom-score-adj.
    Returns the groups."""
    if options.group_add:
        groups = sorted({*groups, *resolve_groups(options.group_add)})
    _oom_score_adj(options.oom_score_adj)
    return groups


def _prepare_workdir(workdir):
    """docker creates a missing working directory; anything else in the way is an error."""
    if os.path.isdir(workdir):
        return
    if os.path.lexists(workdir):
        raise InitFailure(f"cannot use working directory {workdir}: not a directory")
    try:
        os.makedirs(workdir, 0o755)
    except OSError as err:
        raise InitFailure(f"cannot create working directory {workdir}: {err.strerror}",
                          err.errno) from err


def _import_pty_modules():
    """What hand_over_pty needs, imported while ctr's own files are still in
    reach (before pivot_root or setns into the mount namespace)."""
    import socket  # noqa: F401
    import termios  # noqa: F401 - _stdio's

    import ctr.tty  # noqa: F401


def hand_over_pty(sock, master, slave_path):
    """Open the slave, size the pty like ctr's own terminal, and send the master
    to the parent over `sock` (SCM_RIGHTS). Returns the slave fd."""
    import socket

    from ctr.tty import copy_winsize

    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    # Sized before the command starts, which may ask for the size at once.
    copy_winsize(1 if os.isatty(1) else 0, master)
    socket.send_fds(sock, [b"T"], [master])
    os.close(master)
    sock.close()
    return slave


def _stdio(tty_slave, stdio):
    if tty_slave is not None:
        os.setsid()
        import termios  # imported before pivot_root: _import_pty_modules

        fcntl.ioctl(tty_slave, termios.TIOCSCTTY, 0)
        fds = (tty_slave, tty_slave, tty_slave)
    else:
        fds = stdio
    for target, fd in enumerate(fds):
        if fd is not None and fd != target:
            os.dup2(fd, target)


def container_init(go_fd, report_fd, *, spec, lower, rootfs, upper, work,
                   stdio=(None, None, None), tty_sock=None, pdeathsig=None, binds=(),
                   netns_fd=None, own_netns=True, gate=None, joins=(), root_fd=None,
                   cgroup_view=None, lxcfs=None, shm_source=None, shm_from=None,
                   idmapped=(), cgroup=None):
    """The child's side of a container start. Never returns. `own_netns`: the
    clone made a network namespace (lo is brought up here; a bridge's eth0 is
    configured by the parent before it says go); `netns_fd`: join that one
    instead (--network container:NAME). `gate`: the path of an exec fifo to
    wait at before the exec (see the module's doc); `joins`: [(fd, flag)] of
    more namespaces to join (an OCI bundle's ipc and uts given by path; --ipc
    container:NAME's); `root_fd`: once the root is mounted, say "R" there and
    wait for a second "G" on `go_fd` (the parent runs an OCI bundle's
    createRuntime hooks then); `cgroup_view`, `lxcfs`: what ctr.rootfs.prepare
    mounts of them; `shm_source`: what /dev/shm binds (--ipc host); `shm_from`:
    the mount namespace whose /dev/shm it takes (--ipc container:NAME);
    `idmapped`: the idmapped layers to attach (ctr.rootfs.prepare); `cgroup`:
    the instance's, whose v1 folders this process moves itself into first (the
    parent moves it otherwise; see ctr.drivers.container).
    """
    from ctr import rootfs as rootfs_mod
    from ctr.native import SYSCALLS, setns, unshare
    from ctr.net import loopback_up

    if tty_sock is not None:
        _import_pty_modules()

    step = report.WAIT
    try:
        reset_signals()
        joined = None
        if cgroup is not None:  # first: what it does next is the container's
            try:
                cgroup.join_self()
            except CgroupError as err:  # reported after the go, as the parent waits for it
                joined = InitFailure(str(err), err.errno)
        # Until the go the parent sets up the network, and moves this process into
        # the cgroups it is not in yet (with a user namespace, or with no clone3:
        # a move that waits for an RCU grace period, ~10 ms here). The seccomp
        # filter and the exec stub are made meanwhile, when there is no user
        # namespace waiting for its maps. A failure is reported where it was
        # before: after the go, as this step's. The process turns non-dumpable
        # after the go, as before (the parent's network setup opens its
        # /proc/PID/ns/net meanwhile).
        early = None
        if not spec.userns and joined is None:
            try:
                early = process_setup(spec)
            except Exception as err:  # noqa: BLE001 - reported below, at its step
                early = err
        if os.read(go_fd, 1) != b"G":
            os._exit(EXIT_CTR)  # the parent gave up; it cleans up
        if joined is not None:
            step = report.CGROUP
            raise joined
        if root_fd is None:
            os.close(go_fd)
        if spec.oci.get("hooks"):
            from ctr import hooks  # noqa: F401 - before pivot_root: see ctr.hooks
        if gate is not None:  # reached through /proc/self/fd once the host's paths are not
            gate = os.open(gate, os.O_PATH | os.O_CLOEXEC)
        if spec.userns:
            _become_userns_root()
        step = report.CGROUP_NS
        if spec.init:
            check_own_cgroup2()
        if spec.cgroupns != "host":
            unshare(CLONE_NEWCGROUP)
        step = report.SECCOMP
        _set_dumpable(0)
        if isinstance(early, Exception):
            raise early
        seccomp_filter, stub = early or process_setup(spec)
        if netns_fd is not None:
            step = report.NETNS
            setns(netns_fd, CLONE_NEWNET)
            os.close(netns_fd)
        step = report.JOIN
        for fd, flag in joins:
            setns(fd, flag)
            os.close(fd)
        step = report.ROOTFS
        if shm_from is not None:
            shm_source = _clone_shm(shm_from)
        _sysctl({**(spec.options.sysctls or {}), **(spec.oci.get("sysctl") or {})})
        pty = rootfs_mod.prepare(SYSCALLS, lower=lower, upper=upper, work=work, root=rootfs,
                                 tty=tty_sock is not None, binds=binds, volumes=spec.volumes,
                                 tmpfs=spec.tmpfs, read_only=spec.read_only,
                                 privileged=spec.privileged, userns=bool(spec.userns),
                                 init=spec.init,
                                 masked=spec.oci.get("masked_paths", rootfs_mod.MASKED_PATHS),
                                 readonly=spec.oci.get("readonly_paths",
                                                       rootfs_mod.READONLY_PATHS),
                                 cgroup_view=cgroup_view, lxcfs=lxcfs,
                                 shm_size=spec.options.shm_size, shm_source=shm_source,
                                 devices=spec.options.devices or (), idmapped=idmapped,
                                 root_propagation=spec.oci.get(
                                     "root_propagation", "rslave" if spec.oci else None))
        tty_slave = hand_over_pty(tty_sock, *pty) if pty else None
        if own_netns:
            step = report.NETWORK
            loopback_up()
        step = report.HOSTNAME
        if spec.hostname and spec.options.uts != "host":  # never the host's
            SYSCALLS.sethostname(spec.hostname)
        step = report.HOOKS
        if root_fd is not None:
            os.write(root_fd, b"R")
            os.close(root_fd)
            if os.read(go_fd, 1) != b"G":
                os._exit(EXIT_CTR)
            os.close(go_fd)
        _run_hooks(spec.oci, "createContainer", "creating")
        step = report.PIVOT_ROOT
        rootfs_mod.pivot(SYSCALLS, rootfs)
        rootfs_mod.finish_propagation(SYSCALLS, spec.oci.get("root_propagation"))
        step = report.PROCESS
        uid, gid, groups, home = resolve_user(spec.user)
        if spec.oci:
            groups = _bundle_process(spec.oci, groups)
        if spec.options:
            groups = _run_process(spec.options, groups)
        _prepare_workdir(spec.workdir)
        _stdio(tty_slave, stdio)
        step = report.ULIMITS
        set_ulimits(spec.ulimits)
        step = report.PRIVILEGES
        drop_privileges(uid, gid, groups, spec, seccomp_filter, pdeathsig=pdeathsig)
        step = report.EXEC
        _exec(list(spec.command), env_home(list(spec.env), home), spec.workdir, stub,
              report_fd, gate, spec.oci)
    except BaseException as err:  # noqa: BLE001 - every failure becomes a report
        report.write_failure(report_fd, err, step)
    os._exit(EXIT_CTR)


def join(pid, *, cgroup, spec, command, env, workdir, user, stdio, tty_sock, report_fd,
         pdeathsig=signal.SIGKILL):
    """The forked child of `ctr exec`: join the cgroup and namespaces of the
    container whose init is `pid` (the pid namespace was joined by the parent, so
    this process already lives in it), then exec. Never returns."""
    from ctr import rootfs as rootfs_mod
    from ctr.native import SYSCALLS, setns

    if tty_sock is not None:
        _import_pty_modules()
    step = report.JOIN
    try:
        reset_signals()
        step = report.SECCOMP
        _set_dumpable(0)
        seccomp_filter, stub = process_setup(spec)
        step = report.JOIN
        fds = []
        for name, flag in JOIN_ORDER:
            if name != "pid":
                fds.append((os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC),
                            flag))
        if spec.userns:  # joined last: after it, ctr's own powers are gone
            fds.append((os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC),
                        CLONE_NEWUSER))
        cgroup.add(0, init_pid=pid)
        for fd, flag in fds:
            setns(fd, flag)
            os.close(fd)
        if spec.userns:
            _become_userns_root()
        tty_slave = None
        if tty_sock is not None:  # a pty of the container's own devpts
            tty_slave = hand_over_pty(tty_sock, *rootfs_mod.open_pty(SYSCALLS))
        step = report.PROCESS
        uid, gid, groups, home = resolve_user(user if user is not None else spec.user)
        if spec.options.group_add:  # as docker's exec: the instance's --group-add too
            groups = sorted({*groups, *resolve_groups(spec.options.group_add)})
        _stdio(tty_slave, stdio)
        step = report.ULIMITS
        set_ulimits(spec.ulimits)
        step = report.PRIVILEGES
        drop_privileges(uid, gid, groups, spec, seccomp_filter, pdeathsig=pdeathsig)
        step = report.EXEC
        _exec(list(command), env_home(list(env), home), workdir, stub, report_fd)
    except BaseException as err:  # noqa: BLE001
        report.write_failure(report_fd, err, step)
    os._exit(EXIT_CTR)
