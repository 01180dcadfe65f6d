"""The instance model: lifecycle, state machine, dispatch to a driver.

    created --start--> running --exit/stop/kill--> stopped --start--> running
                       running --pause--> paused --unpause--> running
                       running --exit, restart policy--> restarting --backoff--> running
                                                   stopped --rm--> (removed)

Whoever starts an instance reaps it and records how it ended: the CLI itself in
the foreground (`run`, `start -a`), or the instance's monitor (ctr.monitor) when
detached, through `start`, `finish` and `give_up`. The per-instance lock is held
only for transitions, never while running. Read-only views (inspect, stats, who
uses an image or a network) are ctr.query's.
"""

import os
import signal
import time

from ctr import drivers, events
from ctr import store as st
from ctr.errors import CgroupError, Conflict, CtrError, NotFound, StartError, StateError
from ctr.spec import check_user, check_workdir, merge_env, parse_env, parse_signal
from ctr.store import alive, now


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
    except CgroupError:
        return False


def wait_exit(pid, starttime, timeout):
    """Wait for a process that is not our child to exit. True if it did."""
    if not alive(pid, starttime):
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    import select

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
        try:
            removing = rec.spec.remove  # its reaper is removing it right now
        except CtrError:
            removing = True  # its spec went first: being removed
        if os.path.isdir(rec.dir) and not removing:
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


def _running_state(rec):
    state = rec.state()
    if state["status"] not in (st.RUNNING, st.PAUSED):
        raise Conflict(f"instance {rec.name} is not running")
    if state["status"] == st.PAUSED:
        raise Conflict(f"instance {rec.name} is paused: unpause it first")
    return state


def _await_stopped(rec, state, timeout):
    if not wait_exit(state["pid"], state["starttime"], timeout):
        return False
    # The reaper records the exit status right after the exit (ctr-monitor through
    # the Python it execs, which imports what it needs first); give it a moment,
    # then reconcile (a reaper that died never will).
    deadline = time.monotonic() + 15.0
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


def _request_stop(rec):
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


def _kill_all(rec, state):
    """SIGKILL the instance's main process and everything else in its cgroup
    (a daemon that double-forked away from the init included)."""
    try:
        drivers.load(rec.spec.kind).signal(rec, state, signal.SIGKILL)
    except ProcessLookupError:
        pass
    cgroup_of(rec, state).kill_all(signal.SIGKILL)


def _create_record(store, images, spec):
    from ctr.revert import Reverter

    store.ensure()
    anonymous = any(v.get("anonymous") for v in spec.volumes)
    made = ()  # the named volumes made for this instance
    with Reverter() as revert, _volumes_lock(store, spec):
        if any(v.get("name") for v in spec.volumes):
            from ctr import volumes as named

            spec, made = named.attach(revert, store, spec)
        if anonymous:
            from ctr.rootfs import volumes

            spec = volumes.assign(revert, store, spec)
        if spec.userns:
            from ctr import userns

            rec = userns.create_record(store, images.get(spec.image), spec)
            revert.add(rec.remove)
            if anonymous:
                volumes.chown(store, spec, rec.spec.userns["uid"], rec.spec.userns["gid"])
            for path in made:  # a new volume is its first user's root's (docker's remap)
                for p in (os.path.dirname(path), path):  # the folder: where it is seeded
                    os.chown(p, rec.spec.userns["uid"], rec.spec.userns["gid"])
        else:
            rec = store.create_record(spec)
        revert.success()
    return rec


def _volumes_lock(store, spec):
    """Held while a record naming volumes is made: `ctr volume rm` waits."""
    import contextlib

    if not any(v.get("name") for v in spec.volumes):
        return contextlib.nullcontext()
    from ctr import volumes

    return volumes.lock(store)


def _remove_volumes(store, spec):
    """rm -v, --rm: the instance's anonymous volumes go with it."""
    if spec is not None and any(v.get("anonymous") for v in spec.volumes):
        from ctr.rootfs import volumes

        volumes.remove(store, spec)


class Instances:
    """The lifecycle of the instances in one store. `images` is the image store
    their root filesystems come from."""

    def __init__(self, store, images):
        self.store = store
        self.images = images

    def get(self, name):
        return self.store.record(name)

    # -- create / start -----------------------------------------------------------

    def _lower(self, rec, spec):
        """The overlay's lowerdir: the image's layers, top first (with --userns=auto
        the instance's own shifted copies of them, or the list of the layers'
        folders that the driver idmaps)."""
        if spec.userns.get("idmap"):
            try:
                return self.images.layer_dirs(spec.image)
            except NotFound as err:
                if "incomplete" in str(err):
                    raise
                raise NotFound(f"the image {spec.image} of {spec.name} is gone") from None
        if spec.userns:
            from ctr import userns

            lower = userns.lowerdir(rec)
            if lower is None:
                raise NotFound(f"the image {spec.image} of {spec.name} is gone")
            return lower
        # the rest of the mount's options: upperdir, workdir, userxattr
        reserve = len(f",upperdir={rec.upper},workdir={rec.work},userxattr") + 16
        try:
            return self.images.lowerdir(spec.image, reserve=reserve)
        except NotFound as err:
            if "incomplete" in str(err):
                raise
            raise NotFound(f"the image {spec.image} of {spec.name} is gone") from None

    def lowerdir(self, rec):
        """The overlay's lowerdir of an instance (ctr cp mounts a stopped one's)."""
        return self._lower(rec, rec.spec)

    def create(self, spec):
        """The record of a new instance, `created`; its name must be free. Its
        anonymous volumes (the image's) get their folders here."""
        rec = _create_record(self.store, self.images, spec)
        events.container(rec, "create", spec)
        return rec

    def start(self, rec, *, stdio=(None, None, None), pdeathsig=None, fresh=True):
        """The locked transition to running. Returns the driver's process.

        fresh: a start someone asked for (run, start), which resets the restart
        count. Otherwise a restart by the monitor, which happens only while the
        instance is `restarting` and nobody asked it to stop; else None.
        """
        spec = rec.spec
        driver = drivers.load(spec.kind)
        lower = self._lower(rec, spec)
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
        events.container(rec, "start", spec)
        return proc

    def finish(self, rec, proc, code, supervised=False):
        """Record how the instance ended and release what its run held. True
        when the restart policy wants it started again (supervised: the caller
        is its monitor, which applies the policy)."""
        spec = rec.spec
        oom = _oom_killed(proc.cgroup)
        released = True
        try:
            proc.cgroup.destroy()
        except CtrError:
            released = False  # `rm` retries; never lose the exit status over it
        _detach(rec, spec, proc.net)
        try:
            with rec.lock():
                state = rec.read_state()
                state.update(exit_code=code, finished=now(),
                             reason="oom-killed" if oom else _ended(code), pid=None,
                             oom_killed=oom, net={"network": spec.network})
                restart = _settle(state, spec.restart, code, supervised)
                # before the state says stopped: whoever waits for that (ctr stop)
                # writes its own event after this one
                if oom:
                    events.container(rec, "oom", spec)
                events.container(rec, "die", spec, exitCode=code)
                rec.write_state(state)
        except (NotFound, StateError):
            return False  # removed meanwhile (rm -f)
        if spec.remove:
            self._remove(rec, spec, volumes=True, released=released)
        return restart

    def restarting(self, rec):
        try:
            return rec.read_state()["status"] == st.RESTARTING
        except (NotFound, StateError):
            return False

    def give_up(self, rec, err):
        """A restart that cannot be attempted (the image is gone...): stopped."""
        try:
            with rec.lock():
                state = rec.read_state()
                if state["status"] == st.RESTARTING:
                    state.update(status=st.STOPPED, reason=f"restart failed: {err}")
                    rec.write_state(state)
        except (NotFound, StateError):
            pass

    def run(self, rec, detach=False):
        """The first start of a record `create` just made (ctr run): the exit
        status in the foreground, the pid detached. A run that never started
        leaves nothing behind."""
        try:
            return self.start_detached(rec) if detach else self.run_attached(rec)
        except CtrError:
            if not rec.spec.remove:  # a --rm instance is removed by its start
                self.discard(rec)
            raise

    def run_attached(self, rec, cgroup_parent=None):
        """Start in the foreground: the caller's stdio, its exit status returned.
        `cgroup_parent`: this start's own (ctr start --cgroup-parent self)."""
        from ctr import sdnotify
        from ctr.signals import SignalForwarder

        forwarder = SignalForwarder(translate=_foreground_signals(rec.spec))
        # systemd's side (NOTIFY_SOCKET): MAINPID/READY once the command runs.
        with sdnotify.Session(rec, cgroup_parent) as notify:
            try:
                proc = self.start(notify.record, pdeathsig=signal.SIGKILL)
            except CtrError:
                if rec.spec.remove:
                    self._remove(rec, rec.spec, volumes=True)
                raise
            notify.started(proc)
            forwarder.attach(proc)
            checks = None
            if rec.spec.healthcheck:  # ctr.health, only for an instance with a check
                from ctr import health

                checks = health.start_timer(self.store.root, rec)
            code = proc.wait()
            if checks:
                health.stop_timer(checks)
            self.finish(rec, proc, code)
        return code

    def start_detached(self, rec):
        """Start under a monitor of its own; returns the instance's pid."""
        from ctr import monitor

        _check_startable(rec, rec.state())
        try:
            return monitor.spawn(self, rec)
        except CtrError:
            if rec.spec.remove:
                self._remove(rec, rec.spec, volumes=True)
            raise

    def discard(self, rec):
        """Remove a record whose creation or first start failed."""
        self._remove(rec, rec.spec, volumes=True)

    # -- signals ------------------------------------------------------------------

    def kill(self, name, sig=signal.SIGKILL):
        rec = self.get(name)
        state = _running_state(rec)
        events.container(rec, "kill", signal=int(sig))
        if sig == signal.SIGKILL:
            state = _request_stop(rec)  # as docker: a killed instance stays down
            _kill_all(rec, state)  # every process, not only the main one
            return state
        try:
            drivers.load(rec.spec.kind).signal(rec, state, sig)
        except ProcessLookupError:
            pass
        return state

    def stop(self, name, timeout=10):
        """The instance's stop signal (SIGTERM unless its spec names another:
        SIGRTMIN+3 for an init), then SIGKILL after `timeout` seconds. Stopping a
        stopped instance is not an error."""
        rec = self.get(name)
        rec.state()  # reconciled first: a dead instance is not signalled
        state = _request_stop(rec)
        if state["status"] not in (st.RUNNING, st.PAUSED):
            return rec.state()
        from ctr.sdnotify import stopping_for

        stopping_for(state)  # under the instance's own unit's ExecStop=: STOPPING=1
        if state["status"] == st.PAUSED:
            state = self.unpause(name)
        driver = drivers.load(rec.spec.kind)
        sig = parse_signal(rec.spec.stop_signal)
        events.container(rec, "kill", signal=int(sig))
        try:
            driver.signal(rec, state, sig)
        except ProcessLookupError:
            pass
        except CtrError:
            timeout = 0  # a VM whose agent cannot be reached: nothing to wait for
        if not _await_stopped(rec, state, timeout):
            events.container(rec, "kill", signal=int(signal.SIGKILL))
            _kill_all(rec, state)
        _await_stopped(rec, state, 30)
        final = _final_state(rec)
        events.container(rec, "stop")
        return final

    # -- pause, limits, exec ------------------------------------------------------

    def pause(self, name):
        rec = self.get(name)
        with rec.lock():
            state = rec.read_state()
            if state["status"] == st.PAUSED:
                raise Conflict(f"instance {name} is already paused")
            if state["status"] != st.RUNNING or not alive(state.get("pid"),
                                                          state.get("starttime")):
                raise Conflict(f"instance {name} is not running")
            drivers.load(rec.spec.kind).pause(rec, state, cgroup_of(rec, state))
            state["status"] = st.PAUSED
            rec.write_state(state)
        events.container(rec, "pause")
        return state

    def unpause(self, name):
        rec = self.get(name)
        with rec.lock():
            state = rec.read_state()
            if state["status"] != st.PAUSED:
                raise Conflict(f"instance {name} is not paused")
            drivers.load(rec.spec.kind).resume(rec, state, cgroup_of(rec, state))
            state["status"] = st.RUNNING
            rec.write_state(state)
        events.container(rec, "unpause")
        return state

    def update(self, name, **options):
        """Change an instance's limits: applied at once when it runs, and kept in
        its spec for later starts."""
        import dataclasses

        from ctr.host import HostFacts
        from ctr.spec import build_resources

        rec = self.get(name)
        with rec.lock():
            spec = rec.spec
            resources = build_resources(spec.resources, host=HostFacts(), **options)
            state = rec.read_state()
            if state["status"] in (st.RUNNING, st.PAUSED) and alive(
                    state.get("pid"), state.get("starttime")):
                cgroup_of(rec, state).apply(resources)
            rec.write_spec(dataclasses.replace(spec, resources=resources))
        return resources

    def exec(self, name, command, *, env=(), workdir=None, user=None, tty=False):
        """Run a command in a running instance; returns its exit status."""
        rec = self.get(name)
        spec = rec.spec
        state = _running_state(rec)
        if not command:
            raise CtrError("exec needs a command")
        env = merge_env(spec.env, ["TERM=xterm"] if tty else [], parse_env(env))
        workdir = check_workdir(workdir) or spec.workdir
        user = check_user(user) or spec.user  # docker: the instance's user unless -u
        from ctr.signals import SignalForwarder

        forwarder = SignalForwarder()
        proc = drivers.load(spec.kind).exec(rec, state, command=list(command), env=env,
                                            workdir=workdir, user=user, tty=tty)
        forwarder.attach(proc)
        return proc.wait()

    # -- rename ---------------------------------------------------------------------

    def rename(self, old, new):
        """`ctr rename`: the record moves, its spec says the new name, and the
        /etc/hosts of its network's peers follow. A running instance's reaper
        follows too (ctr.store.Record._follow)."""
        import dataclasses

        from ctr.spec import check_name

        check_name(new)
        rec = self.get(old)
        if new == old:
            raise Conflict(f"{old} is already the name of the instance")
        from ctr.systemd import unit_of

        unit = unit_of(old)
        if unit:
            raise Conflict(f"instance {old} is run by the systemd unit {unit}, which names "
                           "it: regenerate the unit instead")
        with rec.lock():
            spec = rec.spec
            state = rec.read_state()
            if spec.kind == "vm" and state["status"] in (st.RUNNING, st.PAUSED):
                # QEMU's mount namespace has the root at the old path (exec, cp use it)
                raise Conflict(f"instance {old} is a running VM: stop it to rename it")
            moved = self.store.rename_record(rec, new)
            try:
                moved.write_spec(dataclasses.replace(spec, name=new))
            except BaseException:
                self.store.rename_record(moved, old)
                raise
        # docker's event: the new name, and the old one as oldName (with its "/")
        events.container(moved, "rename", moved.spec, oldName="/" + old)
        if (state.get("net") or {}).get("ip"):
            from ctr.net.attach import renamed

            renamed(self.store, moved.spec, state["net"])
        return moved

    # -- remove, gc ---------------------------------------------------------------

    def remove(self, name, force=False, volumes=False):
        """Remove an instance; its anonymous volumes too with `volumes` (rm -v)."""
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
            state = _request_stop(rec)
            if state["status"] != st.STOPPED:
                _kill_all(rec, state)
                _await_stopped(rec, state, 30)
        self._remove(rec, spec, state, force=force, volumes=volumes)

    def _remove(self, rec, spec, state=None, force=True, volumes=False, released=False):
        """`released`: the run's cgroup is gone and its network returned (finish
        just did both), so there is nothing left to look for."""
        if not released and (spec is not None or (state or {}).get("cgroups")):
            cg = cgroup_of(rec, state)
            if cg.pids() and not force:
                raise Conflict(f"instance {rec.name} still has processes: use rm -f")
            _release(rec, spec, state, cg)
        rec.remove()
        events.container(rec, "destroy", spec)
        if volumes:
            _remove_volumes(self.store, spec)

    def gc(self):
        """Clean what dead instances left: the cgroups of instances whose reaper
        died with them, and `--rm` instances nobody removed. Returns the names."""
        cleaned = []
        for rec, spec, state in self.store.listing():
            if spec is None or state["status"] not in (st.STOPPED, st.CREATED):
                continue
            cg = cgroup_of(rec, state)
            if spec.remove:
                self._remove(rec, spec, state, volumes=True)
                cleaned.append(rec.name)
            elif cg.exists() or (state.get("net") or {}).get("ip"):
                _release(rec, spec, state, cg)
                rec.update_state(net={"network": spec.network})
                cleaned.append(rec.name)
        return cleaned
