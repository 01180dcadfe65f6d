"""The monitor of a detached instance (like conmon).

`spawn` double-forks: the monitor is reparented away from the CLI at once, has
its own session, and holds nothing of the CLI's (its stdio is /dev/null, so
`$(ctr run -d ...)` returns). It starts the instance with its stdout and stderr
on pipes (or its pty), tells the CLI how the start went through a pipe, copies
the output into the instance's log (ctr.logs: timestamped records, rotated by
size), reaps the instance and records its exit status. Then it applies the
restart policy: after an exit the policy wants restarted, it waits (100 ms,
doubling up to a minute, back to 100 ms after a run of 10 s or more) and
starts the instance again, until a start fails for good, the policy says no,
or `ctr stop` says stop.

A container's run is watched by ctr-monitor (native/monitor.c), a small
static C program this process execs once the run started (the instance stays
its child): an idle instance then costs the host what conmon costs, not a
Python interpreter. It holds the pipes (or the pty), writes the log as
ctr.logs does, relays attached stdin, runs the healthchecks, reaps, writes
exit.json, and execs ctr.monitor_resume, which records the end and applies the
restart policy here. A VM's run (its end is its launcher's to tell) and
CTR_MONITOR=python keep this Python monitor for the whole run.

If the monitor is killed, the instance keeps running; what it writes then has
no reader (EPIPE, or SIGPIPE if it does not ignore it), as with conmon, and
`ctr ls`/`stop`/`rm` go by the recorded pid and cgroup.
"""

import os
import select
import signal
import sys
import threading
import time

from ctr import health, report
from ctr.errors import CtrError, StartError

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 60.0
STABLE_RUN = 10.0  # a run this long resets the backoff


def _detach_stdio():
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def set_title(name):
    try:
        import prctl

        prctl.set_name("ctr-monitor")
        prctl.set_proctitle(f"ctr-monitor {name}")
    except (ImportError, OSError):
        pass


def pump(sources, writer):
    """Copy [(fd, stream)] into the log until every source ends (EOF, or EIO
    from a pty whose last holder went). Closes the fds."""
    streams = dict(sources)
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    try:
        while streams:
            for fd, _ in poller.poll():
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if data:
                    writer.write(streams[fd], data)
                else:
                    poller.unregister(fd)
                    del streams[fd]
                    os.close(fd)
    finally:
        for fd in streams:
            os.close(fd)


class Run:
    """One run of the instance: its output pipes and the thread copying them;
    with -i (not -t), the pipe of its stdin, whose write end `stdin` is kept
    for `ctr attach` (ctr.attach.StdinRelay)."""

    def __init__(self, interactive=False):
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        self.in_r, self.stdin = os.pipe() if interactive else (None, None)
        self.thread = None

    def close_writers(self):
        for fd in (self.out_w, self.err_w, self.in_r):
            if fd is not None:
                os.close(fd)

    def abandon(self):
        self.close_writers()
        for fd in (self.out_r, self.err_r, self.stdin):
            if fd is not None:
                os.close(fd)

    def follow(self, proc, writer):
        sources = [(self.out_r, b"stdout"), (self.err_r, b"stderr")]
        if proc.master is not None:  # -t: the output comes through the pty
            if self.stdin is not None:  # -i: its input too (the pump closes the master)
                os.close(self.stdin)
                self.stdin = os.dup(proc.master)
            sources.append((proc.master, b"stdout"))
            proc.master = None
        self.thread = threading.Thread(target=pump, args=(sources, writer), daemon=True)
        self.thread.start()

    def drain(self):
        """Let the copy finish after the instance ended (its pipes close with it)."""
        self.thread.join(timeout=5.0)


def _start(instances, rec, null, fresh):
    # stdin: a pipe of its own with -i (containers: a VM's command has no stdin yet)
    run = Run(rec.spec.interactive and rec.spec.kind == "container")
    try:
        proc = instances.start(rec, stdio=(run.in_r if run.in_r is not None else null,
                                           run.out_w, run.err_w), fresh=fresh)
    except BaseException:
        run.abandon()
        raise
    run.close_writers()
    if proc is None:  # stopped while it waited to restart
        os.close(run.out_r)
        os.close(run.err_r)
        if run.stdin is not None:
            os.close(run.stdin)
    return proc, run


def _monitor(instances, rec, report_w):
    os.setsid()
    _detach_stdio()
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    set_title(rec.name)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        proc, run = _start(instances, rec, null, fresh=True)
    except CtrError as err:
        report.write(report_w, report.MONITOR, str(err), getattr(err, "errno", 0), err.exit_code)
        return
    relay = _relay(rec)
    try:  # `run -d` returns with the log there (`ctr logs`, `tail -f` at once)
        os.close(os.open(rec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o640))
    except OSError:
        pass  # the writer's own open says why, later
    report.write(report_w, report.STARTED, f"{rec.name} runs", code=0, pid=proc.pid)
    os.close(report_w)
    supervise(instances, rec, proc, run, relay, null, BACKOFF_FIRST)


def supervise(instances, rec, proc, run, relay, null, delay):
    """Watch each run and restart as the policy says. A container's run is
    watched by ctr-monitor (native/monitor.c), which this process becomes, and
    which execs `resume` (this module's main) once the run ended."""
    writer = None
    while True:
        began = time.monotonic()
        if native_monitor(rec.spec):
            _exec_native(instances, rec, proc, run, relay, delay)  # returns if it cannot
        if writer is None:
            from ctr.logs import LogWriter

            limits = rec.spec.log
            # The log through a handle on the record's folder: rotated in place
            # even after `ctr rename` moved the folder (same file system, inode).
            folder = os.open(rec.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            writer = LogWriter(f"/proc/self/fd/{folder}/log", limits["max_size"],
                               limits["max_files"])
        run.follow(proc, writer)
        if relay:
            relay.target(run.stdin)
        checks = health.start_timer(instances.store.root, rec)
        code = proc.wait(stdin=None)
        health.stop_timer(checks)
        if relay:
            relay.target(None)
        run.drain()
        if not instances.finish(rec, proc, code, supervised=True):
            return
        proc, run, delay = restart_after(instances, rec, null, delay, time.monotonic() - began)
        if proc is None:
            return


def restart_after(instances, rec, null, delay, ran):
    """After an exit the policy wants restarted: wait out the backoff and start
    again. (proc, run, the next delay), or proc None when that is over."""
    if ran >= STABLE_RUN:
        delay = BACKOFF_FIRST
    while True:
        time.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)
        try:
            proc, run = _start(instances, rec, null, fresh=False)
        except StartError:
            if instances.restarting(rec):  # the policy counted it as a failed run
                continue
            return None, None, delay
        except CtrError as err:
            instances.give_up(rec, err)
            return None, None, delay
        return proc, run, delay  # proc None: stopped while it waited


# -- the native monitor ----------------------------------------------------------------

NATIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "ctr-monitor")
EXIT_RECORD = "exit.json"  # what ctr-monitor writes when it reaped the instance


def native_monitor(spec):
    """Whether a run of `spec` is watched by ctr-monitor: every container (a VM's
    end is its launcher's to tell: the Python monitor), unless CTR_MONITOR=python."""
    return (spec.kind == "container" and os.environ.get("CTR_MONITOR") != "python"
            and os.access(NATIVE, os.X_OK))


def _exec_native(instances, rec, proc, run, relay, delay):
    """Become ctr-monitor for this run: it holds the output pipes (or the pty),
    writes the log, relays attached stdin, runs the healthchecks, reaps, and
    execs `resume` with the exit status. Returns only if the exec failed."""
    spec = rec.spec
    # Its working directory is the record's folder, and its paths are relative
    # to it: `ctr rename` moves the folder, and the log, its rotation and
    # exit.json go on in the moved one.
    args = ["ctr-monitor", rec.name, ".", str(proc.pid), "--out", str(run.out_r),
            "--err", str(run.err_r), "--log", os.path.relpath(rec.log_path, rec.dir),
            "--max-size", str(spec.log["max_size"]), "--max-files", str(spec.log["max_files"])]
    inherit = [run.out_r, run.err_r]
    if proc.master is not None:
        if run.stdin is not None:  # -it: the attached input goes to the pty too
            os.close(run.stdin)
            run.stdin = os.dup(proc.master)
        args += ["--pty", str(proc.master)]
        inherit.append(proc.master)
    if run.stdin is not None and relay:
        args += ["--stdin", str(run.stdin), "--attach", str(relay.fileno())]
        inherit += [run.stdin, relay.fileno()]
    if health.active(spec):
        args += ["--health-ms", str(int(health.settings(spec)[0] * 1000))]
        for arg in health.check_argv(instances.store.root, spec.id):  # renames
            args += ["--health", arg]
    args += ["--", sys.executable, "-P", "-m", "ctr.monitor_resume", instances.store.root,
             rec.name, spec.id, repr(delay), str(relay.fileno() if relay else -1)]
    for fd in inherit:
        os.set_inheritable(fd, True)
    try:
        os.chdir(rec.dir)
        os.execv(NATIVE, args)
    except OSError:
        os.chdir("/")
        for fd in inherit:
            os.set_inheritable(fd, False)


def _relay(rec):
    """With -i: the socket `ctr attach` writes the instance's stdin to."""
    if not (rec.spec.interactive and rec.spec.kind == "container"):
        return None
    from ctr.attach import StdinRelay

    try:
        return StdinRelay(rec.dir)
    except OSError:
        return None  # the instance runs; only attaching its stdin will not work


def spawn(instances, rec):
    """Start `rec` under a new monitor; returns the instance's pid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if os.fork() == 0:
                try:
                    _monitor(instances, rec, w)
                except BaseException as err:  # noqa: BLE001 - report, never print
                    report.write(w, report.MONITOR, f"monitor: {err}")
                finally:
                    os._exit(0)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    try:
        said = report.read(r)
    finally:
        os.close(r)
    if said is None:
        raise CtrError(f"the monitor of {rec.name} died before starting it")
    if said.step != report.STARTED:
        raise CtrError(said.message, said.code)
    return said.pid

