"""The instance model: lifecycle, state machine, dispatch to a driver.

    created --start--> running --exit/stop/kill--> stopped --start--> running
                       running --pause--> paused --unpause--> running
                       running --exit, restart policy--> restarting --backoff--> running
                                                   stopped --rm--> (removed)

Whoever starts an instance reaps it and records how it ended: the CLI itself in
the foreground (`run`, `start -a`), or the instance's monitor when detached.
The per-instance lock is held only for transitions, never while running.
"""

import os
import select
import signal
import time

from ctr import store as st
from ctr.errors import Conflict, CtrError, NotFound, StartError, StateError
from ctr.rootfs.images import ImageStore
from ctr.spec import build_spec, check_user, check_workdir, merge_env, parse_env, parse_signal
from ctr.store import Store, alive, now

DRIVERS = {"container": ("ctr.drivers.container", "ContainerDriver"),
           "vm": ("ctr.drivers.vm", "VmDriver")}


def driver_for(kind):
    try:
        module, cls = DRIVERS[kind]
    except KeyError:
        raise StateError(f"unknown instance kind {kind!r}") from None
    import importlib

    return getattr(importlib.import_module(module), cls)()


def _detach(rec, spec, net):
    """Return what the instance's network held (lease, published ports)."""
    if spec is None or not net or not net.get("ip"):
        return
    from ctr.net.attach import detach

    try:
        detach(rec.store, spec, net)
    except CtrError:
        pass  # rm/gc retry; never lose the exit status over it


def _release(rec, spec, state, cg):
    """What a stopped instance may still hold: processes that outlived its init
    (a record that lost track of them), its cgroup, its lease and ports."""
    cg.kill_all(signal.SIGKILL)
    cg.destroy(timeout=5.0)
    _detach(rec, spec, (state or {}).get("net"))


def _oom_killed(cgroup):
    try:
        return cgroup.oom_kills() > 0
    except OSError:
        return False


def wait_exit(pid, starttime, timeout):
    """Wait for a process that is not our child to exit. True if it did."""
    if not alive(pid, starttime):
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if not alive(pid, starttime):  # the pid was reused before we opened it
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, timeout) * 1000))
    finally:
        os.close(fd)


def _ended(code):
    return "signalled" if code > 128 else "exited"


def wants_restart(policy, restarts, code, stop_requested=False):
    """Whether an instance that exited with `code` after `restarts` restarts
    is started again. `ctr stop` (stop_requested) is never undone."""
    name = policy.get("policy", "no")
    if stop_requested or name == "no":
        return False
    if name == "on-failure":
        limit = policy.get("max_retries", 0)
        return code != 0 and (not limit or restarts < limit)
    return True  # always, unless-stopped


def _settle(state, policy, code, supervised):
    """After an exit (or a failed restart): `restarting` when the instance's
    monitor should start it again, else `stopped`. True when restarting."""
    restart = supervised and wants_restart(policy, state.get("restart_count", 0), code,
                                           state.get("stop_requested", False))
    state["status"] = st.RESTARTING if restart else st.STOPPED
    return restart


def _check_startable(rec, state):
    status = state["status"]
    if status in (st.RUNNING, st.PAUSED) and alive(state.get("pid"), state.get("starttime")):
        raise Conflict(f"instance {rec.name} is already running")
    if status == st.RESTARTING and alive(state.get("reaper_pid"), state.get("reaper_starttime")):
        raise Conflict(f"instance {rec.name} is restarting: stop it first")


def _end_monitor(state):
    """SIGTERM to a monitor waiting out a backoff, and wait for it to go."""
    pid, starttime = state.get("reaper_pid"), state.get("reaper_starttime")
    if not alive(pid, starttime):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    wait_exit(pid, starttime, 5)


def _final_state(rec):
    """The state after a stop; an instance run with --rm may be gone already."""
    try:
        return rec.state()
    except (NotFound, StateError):
        if os.path.isdir(rec.dir):
            raise
        return {"status": st.STOPPED, "removed": True}


def _foreground_signals(spec):
    """What a SIGTERM to ctr in the foreground becomes: the instance's stop
    signal (SIGTERM would make a booted systemd re-execute, not halt). For a
    system container Ctrl-C (SIGINT, systemd's ctrl-alt-del: reboot) stops it too."""
    sig = parse_signal(spec.stop_signal)
    return {signal.SIGTERM: sig, **({signal.SIGINT: sig} if spec.init else {})}


def cgroup_of(rec, state):
    """The instance's cgroup: the folders its state recorded at start, else the
    ones its spec names."""
    from ctr import cgroups

    if state and state.get("cgroups"):
        return cgroups.at(state["cgroups"])
    return cgroups.Cgroup(rec.spec.cgroup_parent, rec.spec.id)


class Instances:
    def __init__(self, root=None):
        self.store = Store(root)
        self.images = ImageStore(self.store)

    # -- create / start -----------------------------------------------------------

    def create(self, *, image, progress=None, **options):
        self.store.ensure()
        img = self.images.ensure(image, progress=progress)
        spec = build_spec(image=img, **options)
        if spec.userns:
            return self._create_userns(spec)
        return self.store.create_record(spec)

    def _create_userns(self, spec):
        """Allocate the instance's block of ids and give it a root filesystem
        owned by them (see ctr.userns)."""
        import dataclasses

        from ctr import userns

        userns.check_reachable(self.store.instances_dir)
        with userns.lock(self.store):
            taken = []
            for rec in self.store.records():
                try:
                    taken.append(rec.spec.userns)
                except CtrError:
                    continue  # a record being removed, or damaged: not holding ids
            spec = dataclasses.replace(spec, userns=userns.allocate(taken))
            rec = self.store.create_record(spec)
        try:
            ids = spec.userns
            userns.shifted_copy(self.images.rootfs(spec.image), rec.lower, ids)
            for path in (rec.upper, rec.work, rec.rootfs):
                os.chown(path, ids["uid"], ids["gid"])
            os.chmod(rec.dir, 0o711)  # the container's root walks to its layers
        except BaseException:
            rec.remove()
            raise
        return rec

    def get(self, name):
        return self.store.record(name)

    def _start(self, rec, *, stdio=(None, None, None), pdeathsig=None, fresh=True):
        """The locked transition to running. Returns the driver's Process.

        fresh: a start someone asked for (run, start), which resets the restart
        count. Otherwise a restart by the monitor, which happens only while the
        instance is `restarting` and nobody asked it to stop; else None.
        """
        spec = rec.spec
        driver = driver_for(spec.kind)
        lower = rec.lower if spec.userns else self.images.rootfs(spec.image)
        if not os.path.isdir(lower):
            raise NotFound(f"the image {spec.image} of {spec.name} is gone")
        with rec.lock():
            state = rec.read_state()
            if not fresh and (state["status"] != st.RESTARTING or state.get("stop_requested")):
                return None
            if fresh:
                _check_startable(rec, state)
            try:
                proc = driver.start(rec, lower, stdio=stdio, tty=spec.tty, pdeathsig=pdeathsig)
            except StartError as err:
                state.update(exit_code=err.exit_code, reason=f"start failed: {err}")
                if not fresh:
                    _settle(state, spec.restart, err.exit_code, supervised=True)
                elif state["status"] != st.CREATED:
                    state["status"] = st.STOPPED
                rec.write_state(state)
                raise
            restarts = 0 if fresh else state.get("restart_count", 0) + 1
            state.update(status=st.RUNNING, pid=proc.pid, starttime=proc.starttime,
                         started=now(), finished=None, exit_code=None, reason=None,
                         oom_killed=False, net=proc.net, restart_count=restarts,
                         stop_requested=False, reaper_pid=os.getpid(),
                         reaper_starttime=st.proc_starttime(os.getpid()),
                         cgroups=proc.cgroup.paths)
            rec.write_state(state)
        return proc

    def _finish(self, rec, proc, code, supervised=False):
        """Record how the instance ended and release what its run held. True
        when the restart policy wants it started again (supervised: the caller
        is its monitor, which applies the policy)."""
        spec = rec.spec
        oom = _oom_killed(proc.cgroup)
        try:
            proc.cgroup.destroy()
        except CtrError:
            pass  # `rm` retries; never lose the exit status over it
        _detach(rec, spec, proc.net)
        try:
            with rec.lock():
                state = rec.read_state()
                state.update(exit_code=code, finished=now(),
                             reason="oom-killed" if oom else _ended(code), pid=None,
                             oom_killed=oom, net={"network": spec.network})
                restart = _settle(state, spec.restart, code, supervised)
                rec.write_state(state)
        except (NotFound, StateError):
            return False  # removed meanwhile (rm -f)
        if spec.remove:
            self._remove(rec, spec)
        return restart

    def restarting(self, rec):
        try:
            return rec.read_state()["status"] == st.RESTARTING
        except (NotFound, StateError):
            return False

    def _give_up(self, rec, err):
        """A restart that cannot be attempted (the image is gone...): stopped."""
        try:
            with rec.lock():
                state = rec.read_state()
                if state["status"] == st.RESTARTING:
                    state.update(status=st.STOPPED, reason=f"restart failed: {err}")
                    rec.write_state(state)
        except (NotFound, StateError):
            pass

    def run_attached(self, rec, cgroup_parent=None):
        """Start in the foreground: the caller's stdio, its exit status returned.
        `cgroup_parent`: this start's own (ctr start --cgroup-parent self)."""
        from ctr import sdnotify
        from ctr.drivers.container import SignalForwarder

        forwarder = SignalForwarder(translate=_foreground_signals(rec.spec))
        # systemd's side (NOTIFY_SOCKET): MAINPID/READY once the command runs.
        with sdnotify.Session(rec, cgroup_parent) as notify:
            try:
                proc = self._start(notify.record, pdeathsig=signal.SIGKILL)
            except CtrError:
                if rec.spec.remove:
                    self._remove(rec, rec.spec)
                raise
            notify.started(proc)
            forwarder.attach(proc)
            code = proc.wait()
            self._finish(rec, proc, code)
        return code

    def start_detached(self, rec):
        from ctr import monitor

        _check_startable(rec, rec.state())
        try:
            return monitor.spawn(self, rec)
        except CtrError:
            if rec.spec.remove:
                self._remove(rec, rec.spec)
            raise

    def discard(self, rec):
        """Remove a record whose creation or first start failed."""
        self._remove(rec, rec.spec)

    # -- signals ------------------------------------------------------------------

    def _running_state(self, rec):
        state = rec.state()
        if state["status"] not in (st.RUNNING, st.PAUSED):
            raise Conflict(f"instance {rec.name} is not running")
        return state

    def kill(self, name, sig=signal.SIGKILL):
        rec = self.get(name)
        state = self._running_state(rec)
        if state["status"] == st.PAUSED:
            raise Conflict(f"instance {name} is paused: unpause it first")
        if sig == signal.SIGKILL:
            state = self._request_stop(rec)  # as docker: a killed instance stays down
            self._kill_all(rec, state)  # every process, not only the main one
            return state
        try:
            driver_for(rec.spec.kind).signal(rec, state, sig)
        except ProcessLookupError:
            pass
        return state

    def _await_stopped(self, rec, state, timeout):
        if not wait_exit(state["pid"], state["starttime"], timeout):
            return False
        # The reaper records the exit status right after the exit; give it a moment,
        # then reconcile (a reaper that died never will).
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                if rec.read_state()["status"] == st.STOPPED:
                    return True
            except (StateError, NotFound):
                return True
            reaper = state.get("reaper_pid")
            if not reaper or not os.path.exists(f"/proc/{reaper}"):
                break
            time.sleep(0.005)
        _final_state(rec)
        return True

    def stop(self, name, timeout=10):
        """The instance's stop signal (SIGTERM unless its spec names another:
        SIGRTMIN+3 for an init), then SIGKILL after `timeout` seconds. Stopping a
        stopped instance is not an error."""
        rec = self.get(name)
        rec.state()  # reconciled first: a dead instance is not signalled
        state = self._request_stop(rec)
        if state["status"] not in (st.RUNNING, st.PAUSED):
            return rec.state()
        from ctr.sdnotify import stopping_for

        stopping_for(state)  # under the instance's own unit's ExecStop=: STOPPING=1
        if state["status"] == st.PAUSED:
            state = self.unpause(name)
        driver = driver_for(rec.spec.kind)
        try:
            driver.signal(rec, state, parse_signal(rec.spec.stop_signal))
        except ProcessLookupError:
            pass
        except CtrError:
            timeout = 0  # a VM whose agent cannot be reached: nothing to wait for
        if not self._await_stopped(rec, state, timeout):
            self._kill_all(rec, state)
        self._await_stopped(rec, state, 30)
        return _final_state(rec)

    def _request_stop(self, rec):
        """Tell the instance's monitor not to restart it (`stop_requested`, under
        the lock, before any signal: a restart happens under the same lock). One
        waiting to restart is stopped here, and its monitor ended."""
        with rec.lock():
            state = rec.read_state()
            if state["status"] not in (st.RUNNING, st.PAUSED, st.RESTARTING):
                return state
            state["stop_requested"] = True
            if state["status"] == st.RESTARTING:
                state.update(status=st.STOPPED, finished=now(),
                             reason="stopped while waiting to restart")
                _end_monitor(state)
            rec.write_state(state)
        return state

    def _kill_all(self, rec, state):
        """SIGKILL the instance's main process and everything else in its cgroup
        (a daemon that double-forked away from the init included)."""
        try:
            driver_for(rec.spec.kind).signal(rec, state, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cgroup_of(rec, state).kill_all(signal.SIGKILL)

    # -- pause, limits, counters --------------------------------------------------

    def pause(self, name):
        rec = self.get(name)
        with rec.lock():
            state = rec.read_state()
            if state["status"] == st.PAUSED:
                raise Conflict(f"instance {name} is already paused")
            if state["status"] != st.RUNNING or not alive(state.get("pid"),
                                                          state.get("starttime")):
                raise Conflict(f"instance {name} is not running")
            driver_for(rec.spec.kind).pause(rec, state, cgroup_of(rec, state))
            state["status"] = st.PAUSED
            rec.write_state(state)
        return state

    def unpause(self, name):
        rec = self.get(name)
        with rec.lock():
            state = rec.read_state()
            if state["status"] != st.PAUSED:
                raise Conflict(f"instance {name} is not paused")
            driver_for(rec.spec.kind).resume(rec, state, cgroup_of(rec, state))
            state["status"] = st.RUNNING
            rec.write_state(state)
        return state

    def update(self, name, **options):
        """Change an instance's limits: applied at once when it runs, and kept in
        its spec for later starts."""
        import dataclasses

        from ctr.spec import build_resources

        rec = self.get(name)
        with rec.lock():
            spec = rec.spec
            resources = build_resources(spec.resources, **options)
            state = rec.read_state()
            if state["status"] in (st.RUNNING, st.PAUSED) and alive(
                    state.get("pid"), state.get("starttime")):
                cgroup_of(rec, state).apply(resources)
            rec.write_spec(dataclasses.replace(spec, resources=resources))
        return resources

    def stats(self, names=()):
        """[(record, counters)] of the running instances (all when no names)."""
        if names:
            recs = [self.get(n) for n in names]
        else:
            recs = [rec for rec, _, state in self.list()
                    if state["status"] in (st.RUNNING, st.PAUSED)]
        out = []
        for rec in recs:
            state = rec.state()
            if state["status"] not in (st.RUNNING, st.PAUSED):
                if names:
                    raise Conflict(f"instance {rec.name} is not running")
                continue
            try:
                counters = cgroup_of(rec, state).stats()
            except FileNotFoundError:
                continue  # stopped while we read
            out.append((rec, counters))
        return out

    def gc(self):
        """Clean what dead instances left: the cgroups of instances whose reaper
        died with them, and `--rm` instances nobody removed. Returns the names."""
        cleaned = []
        for rec, spec, state in self.list():
            if spec is None or state["status"] not in (st.STOPPED, st.CREATED):
                continue
            cg = cgroup_of(rec, state)
            if spec.remove:
                self._remove(rec, spec, state)
                cleaned.append(rec.name)
            elif cg.exists() or (state.get("net") or {}).get("ip"):
                _release(rec, spec, state, cg)
                rec.update_state(net={"network": spec.network})
                cleaned.append(rec.name)
        return cleaned

    # -- remove -------------------------------------------------------------------

    def remove(self, name, force=False):
        rec = self.get(name)
        try:
            state = rec.state()
        except StateError:
            state = None
        try:
            spec = rec.spec
        except StateError:
            spec = None
        if state and state["status"] in (st.RUNNING, st.PAUSED, st.RESTARTING):
            if not force:
                raise Conflict(f"instance {name} is {state['status']}: stop it first "
                               "or use rm -f")
            state = self._request_stop(rec)
            if state["status"] != st.STOPPED:
                self._kill_all(rec, state)
                self._await_stopped(rec, state, 30)
        self._remove(rec, spec, state, force=force)

    def _remove(self, rec, spec, state=None, force=True):
        if spec is not None or (state or {}).get("cgroups"):
            cg = cgroup_of(rec, state)
            if cg.pids() and not force:
                raise Conflict(f"instance {rec.name} still has processes: use rm -f")
            _release(rec, spec, state, cg)
        rec.remove()

    # -- queries ------------------------------------------------------------------

    def list(self):
        """[(record, spec or None, state)]; a corrupt record is listed, not fatal."""
        out = []
        for rec in self.store.records():
            try:
                out.append((rec, rec.spec, rec.state()))
            except StateError as err:
                out.append((rec, None, {"status": st.CORRUPT, "error": str(err)}))
            except NotFound:
                continue  # removed while we listed
        return out

    def inspect(self, name):
        rec = self.get(name)
        spec, state = rec.spec, rec.state()
        if state["status"] in (st.RUNNING, st.PAUSED):
            extra = driver_for(spec.kind).describe(rec, state)
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
                "image": self.images.rootfs(spec.image),
            },
        }

    def image_users(self, image):
        return [rec.name for rec, spec, _ in self.list() if spec and spec.image == image]

    # -- networks -------------------------------------------------------------------

    def network_create(self, name, subnet=None, gateway=None):
        from ctr.net import links
        from ctr.net.networks import Networks, free_subnet

        self.store.ensure()
        networks = Networks(self.store)
        routes = links.host_routes()
        subnet = subnet or free_subnet(networks.list(), routes)
        return networks.create(name, subnet, gateway, host_routes=routes)

    def network_list(self):
        from ctr.net.networks import Networks

        users = self._network_users()
        return [{**n, "instances": users.get(n["name"], [])}
                for n in Networks(self.store).list()]

    def _network_users(self):
        users = {}
        for rec, spec, _ in self.list():
            if spec:
                users.setdefault(spec.network, []).append(rec.name)
        return users

    def network_remove(self, name):
        from ctr.net import links, nft
        from ctr.net.networks import Networks

        netdef = Networks(self.store).remove(name, self._network_users().get(name, []))

        nft.remove_network(netdef)
        links.delete_bridge(netdef)

    # -- exec and logs ------------------------------------------------------------

    def exec(self, name, command, *, env=(), workdir=None, user=None, tty=False):
        rec = self.get(name)
        spec = rec.spec
        state = self._running_state(rec)
        if state["status"] == st.PAUSED:
            raise Conflict(f"instance {name} is paused: unpause it first")
        if not command:
            raise CtrError("exec needs a command")
        env = merge_env(spec.env, ["TERM=xterm"] if tty else [], parse_env(env))
        workdir = check_workdir(workdir) or spec.workdir
        user = check_user(user)
        from ctr.drivers.container import SignalForwarder

        forwarder = SignalForwarder()
        proc = driver_for(spec.kind).exec(rec, state, command=list(command), env=env,
                                          workdir=workdir, user=user, tty=tty)
        forwarder.attach(proc)
        return proc.wait()

    def logs(self, name, *, follow=False, tail=None, since=None, until=None, poll=0.1):
        """The output of a detached instance, as ctr.logs.Line objects (every
        file of the rotated log, oldest first): the last `tail` lines, those
        written within [since, until] (timestamp strings), then with `follow`
        what comes until the instance stops for good."""
        from ctr import logs

        rec = self.get(name)

        def running():
            try:
                return rec.state()["status"] in (st.RUNNING, st.PAUSED, st.RESTARTING)
            except (NotFound, StateError):
                return False

        def wanted(line):
            return (since is None or line.ts >= since) and (until is None or line.ts <= until)

        backlog, current = logs.backlog(rec.log_path, follow and running())
        backlog = [line for line in backlog if wanted(line)]
        if tail is not None:
            backlog = backlog[-tail:] if tail else []
        yield from backlog
        if current is None:
            return
        for line in logs.follow(rec.log_path, current, running, poll):
            if until is not None and line.ts > until:
                return
            if wanted(line):
                yield line
