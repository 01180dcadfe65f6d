"""The OCI runtime's verbs on the container driver: create, start, kill,
delete, exec, pause, resume, ps. Library code: raises ctr's errors (the
messages callers match: "container does not exist", "container not running"),
never prints; ctr.oci.cli prints.

The lifecycle rules are the runtime-spec's: start only a created container;
kill only a created, running or paused one (kill --all also a stopped one whose
processes linger); delete only a stopped one unless forced (a created one is
killed first, as runc does).
"""

import os
import select
import signal
import time

from ctr.errors import CgroupError, Conflict, CtrError, InvalidSpec, NotFound, StartError
from ctr.oci.state import Container, now, write_pid_file

START_TIMEOUT = 10.0  # seconds start waits for a created process to take the gate


def load(root, cid):
    c = Container(root, cid)
    c.state()
    return c


def _close_extra_fds(keep):
    """fds above 2 + `keep` (--preserve-fds) become close-on-exec: the caller's
    other fds never reach the container."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 + keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def send_console(path, master):
    """The pty's master to --console-socket: one sendmsg, a non-empty data part
    and exactly one SCM_RIGHTS fd (what runc sends)."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        socket.send_fds(s, [b"/dev/ptmx"], [master])
    except OSError as err:
        raise StartError(f"console socket {path}: {err.strerror or err}") from err
    finally:
        s.close()


def create(root, cid, bundle, *, pid_file=None, console_socket=None, preserve_fds=0,
           foreground=False, systemd_cgroup=False):
    """The container made, its process waiting at the gate. Returns the driver's
    process (for `run`, which waits for it). On any failure nothing is left."""
    from ctr.drivers import common
    from ctr.drivers.container import ContainerDriver
    from ctr.host import HostFacts
    from ctr.oci.config import annotations, cgroup_error, check_id, read_config, to_spec
    from ctr.revert import Reverter

    check_id(cid)
    bundle = os.path.abspath(bundle)
    config = read_config(bundle)
    spec = to_spec(bundle, config, cid, HostFacts(), systemd_cgroup)
    if spec.tty and not console_socket and not foreground:
        raise InvalidSpec("process.terminal is set: give --console-socket")
    if console_socket and not spec.tty:
        raise InvalidSpec("--console-socket given, but process.terminal is not set")
    _close_extra_fds(preserve_fds)
    c = Container(root, cid)
    with Reverter() as revert:
        c.mkdir()
        revert.add(c.remove)
        c.make(spec)
        parents = _missing_parents(spec.oci["cgroups_path"])
        revert.add(_remove_parents, parents)
        on_root = None
        if _hooks(spec, "prestart") or _hooks(spec, "createRuntime"):
            def on_root(pid):
                revert.add(_poststop, spec)  # what these hooks set up, undone
                for phase in ("prestart", "createRuntime"):
                    _run_hooks(spec, phase, "creating", pid, fatal=True)
        try:
            proc = ContainerDriver().start(c, None, tty=spec.tty, gate=c.fifo,
                                           on_root=on_root)
        except CgroupError as err:
            raise cgroup_error(err) from err
        revert.add(proc.cgroup.destroy)
        revert.add(common.kill, proc.pid)
        if console_socket:
            try:
                send_console(console_socket, proc.master)
            finally:
                os.close(proc.master)
                proc.master = None
        c.write_state({"pid": proc.pid, "starttime": proc.starttime, "bundle": bundle,
                       "rootfs": spec.oci["root"], "created": now(),
                       "annotations": annotations(config), "owner": "",
                       "cgroups": proc.cgroup.paths, "cgroup_parents": parents,
                       "paused": False})
        if pid_file:
            write_pid_file(pid_file, proc.pid)
        revert.success()
    return proc


def start(root, cid):
    """Let the created process exec its command. Returns the warnings of its
    poststart hooks (one line each)."""
    c = load(root, cid)
    with c.lock():
        status = c.status()
        if status != "created":
            raise Conflict(f"cannot start a container that is {status}: only a created one")
        state = c.state()
        del state
        fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready and os.read(fd, 1):
                    break
                if c.status() == "stopped":
                    raise StartError("the container's process is gone")
                if time.monotonic() > deadline:
                    raise StartError("the container's process did not start in time")
        finally:
            os.close(fd)
        os.unlink(c.fifo)
        return _run_hooks(c.spec, "poststart", "running", c.state()["pid"])


def _hooks(spec, phase):
    return (spec.oci.get("hooks") or {}).get(phase)


def _run_hooks(spec, phase, status, pid, fatal=False):
    """A bundle's hooks of `phase` (ctr.hooks), in the runtime's namespaces.
    A failure raises where the phase must succeed; else the failures are
    returned as warnings, and the rest went on."""
    hooks = _hooks(spec, phase)
    if not hooks:
        return []
    from ctr import hooks as hooks_mod

    st = spec.oci["hook_state"]
    failures = hooks_mod.run(phase, hooks, hooks_mod.state_json(
        st["id"], status, pid, st["bundle"], st["annotations"], st["version"]))
    if failures and fatal:
        raise StartError(failures[0])
    return failures


def _poststop(spec):
    return _run_hooks(spec, "poststop", "stopped", 0)


def _cgroup(c):
    from ctr import cgroups

    return cgroups.at(c.state().get("cgroups") or [])


def kill(root, cid, sig, all_=False):
    c = load(root, cid)
    status = c.status()
    if all_:
        cg = _cgroup(c)
        if cg.exists():
            cg.kill_all(sig)
        return
    if status == "stopped":
        raise Conflict("container not running")
    try:
        os.kill(c.state()["pid"], sig)
    except ProcessLookupError:
        raise Conflict("container not running") from None
    if status == "paused" and sig == signal.SIGKILL:
        _cgroup(c).thaw()  # a frozen process dies only once thawed


def delete(root, cid, force=False):
    """Returns the warnings of its poststop hooks (one line each)."""
    c = Container(root, cid)
    try:
        c.state()
    except NotFound:
        if force:
            c.remove()  # what a create that died midway may have left
            return []
        raise
    with c.lock():
        status = c.status()
        if status in ("running", "paused") and not force:
            raise Conflict(f"cannot delete container {cid} that is not stopped: {status}")
        cg = _cgroup(c)
        if status != "stopped":
            if status == "paused":
                cg.thaw()
            try:
                os.kill(c.state()["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        if cg.exists():
            cg.kill_all(signal.SIGKILL)
            cg.destroy()
        _remove_parents(c.state().get("cgroup_parents") or ())
        spec = c.spec
        c.remove()
    return _poststop(spec)


def _missing_parents(path):
    """The parent folders of cgroup `path` that are not there yet, in every
    hierarchy, deepest first: create makes them, delete removes them (when
    empty), so that a container leaves no /ctr-oci, /default... behind."""
    from ctr import cgroups

    out = []
    for mountpoint, _ in cgroups.hierarchies():
        d = os.path.dirname(os.path.normpath(f"{mountpoint}/{path}"))
        while d != mountpoint and not os.path.isdir(d):
            out.append(d)
            d = os.path.dirname(d)
    return sorted(out, key=lambda p: -p.count("/"))


def _remove_parents(parents):
    for d in parents:
        try:
            os.rmdir(d)
        except OSError:
            pass  # another container's, or already gone


def pause(root, cid):
    c = load(root, cid)
    with c.lock():
        if c.status() != "running":
            raise Conflict("container not running")
        _cgroup(c).freeze()
        c.write_state({**c.state(), "paused": True})


def resume(root, cid):
    c = load(root, cid)
    with c.lock():
        if c.status() != "paused":
            raise Conflict("container not paused")
        _cgroup(c).thaw()
        c.write_state({**c.state(), "paused": False})


def update(root, cid, resources):
    """New limits from a runtime-spec `linux.resources` object (what podman
    passes with --resources FILE): those given replace the container's, the
    others stay; applied to its cgroup, then recorded in its spec."""
    import dataclasses

    from ctr.host import HostFacts
    from ctr.oci.config import resources_of
    from ctr.spec import RESOURCE_KEYS, Resources
    from ctr.spec.validate import check_resources

    c = load(root, cid)
    with c.lock():
        if c.status() == "stopped":
            raise Conflict("container not running")
        given = resources_of(resources, "--resources")
        merged = dict(c.spec.resources)
        merged.update(given)
        merged = Resources({k: merged[k] for k in RESOURCE_KEYS if k in merged})
        check_resources(merged, HostFacts(), keys=given)
        try:
            _cgroup(c).apply(merged)
        except CgroupError as err:
            from ctr.oci.config import cgroup_error

            raise cgroup_error(err) from err
        c.write_spec(dataclasses.replace(c.spec, resources=merged))


def stats(root, cid):
    """runc's `events --stats` event: the container's cgroup counters in the
    runtime's stats shape (cpu, memory, pids)."""
    c = load(root, cid)
    if c.status() == "stopped":
        raise Conflict("container not running")
    st = _cgroup(c).stats()
    data = {"cpu": {"usage": {"total": st.get("cpu_usage_ns") or 0}},
            "memory": {"usage": {"usage": st.get("memory_usage") or 0,
                                 "limit": st.get("memory_limit") or 0}},
            "pids": {"current": st.get("pids") or 0, "limit": st.get("pids_limit") or 0}}
    return {"type": "stats", "id": cid, "data": data}


def events(root, cid, interval):
    """runc's `events`: a stats event every `interval` seconds, an "oom" event
    when the kernel's count of OOM kills grows, until the container stops."""
    c = load(root, cid)
    cg = _cgroup(c)
    ooms = cg.oom_kills()
    while c.status() != "stopped":
        yield stats(root, cid)
        now_ooms = cg.oom_kills()
        if now_ooms > ooms:
            yield {"type": "oom", "id": cid}
            ooms = now_ooms
        time.sleep(interval)


def pids(root, cid):
    c = load(root, cid)
    if c.status() == "stopped":
        raise Conflict("container not running")
    return sorted(_cgroup(c).pids())


def exec_(root, cid, process, *, detach=False, pid_file=None, console_socket=None):
    """Run `process` (the runtime-spec's process object, checked) in the
    container. Returns the handle; the caller waits unless `detach`."""
    from ctr.drivers.container import ContainerDriver

    c = load(root, cid)
    if c.status() not in ("created", "running"):
        raise Conflict("container not running")
    tty = bool(process.get("terminal"))
    if tty and not console_socket and detach:
        raise InvalidSpec("a terminal in a detached exec needs --console-socket")
    if console_socket and not tty:
        raise InvalidSpec("--console-socket given, but the process has no terminal")
    user = process.get("user") or {}
    if process.get("capabilities") is not None:  # else the container's own five sets
        import dataclasses

        from ctr.oci.config import capability_sets

        sets = capability_sets(process["capabilities"], "process: capabilities")
        c = c.with_spec(dataclasses.replace(
            c.spec, caps=sets["bounding"], oci={**c.spec.oci, "capabilities": sets}))
    proc = ContainerDriver().exec(
        c, c.state(), command=process["args"], env=process.get("env") or [],
        workdir=process.get("cwd") or "/",
        user=f"{user.get('uid', 0)}:{user.get('gid', 0)}", tty=tty,
        pdeathsig=None if detach else signal.SIGKILL)
    if console_socket:
        try:
            send_console(console_socket, proc.master)
        finally:
            os.close(proc.master)
            proc.master = None
    if pid_file:
        write_pid_file(pid_file, proc.pid)
    return proc


def check_process(process, where="process"):
    """An exec's process object (from --process FILE, or built from options)."""
    from ctr.spec import check_workdir

    if not isinstance(process, dict):
        raise InvalidSpec(f"{where}: expected a JSON object")
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise InvalidSpec(f"{where}: args: expected the command to run")
    env = process.get("env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
        raise InvalidSpec(f"{where}: env: expected KEY=VALUE strings")
    try:
        check_workdir(process.get("cwd") or "/")
    except CtrError:
        raise InvalidSpec(f"{where}: cwd: expected an absolute path") from None
    user = process.get("user") or {}
    for key in ("uid", "gid"):
        v = user.get(key, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InvalidSpec(f"{where}: user.{key}: expected a number")
    if process.get("capabilities") is not None:
        from ctr.oci.config import capability_sets

        capability_sets(process["capabilities"], f"{where}: capabilities")
    return process
