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

If the monitor is killed, the instance keeps running; what it writes then has
no reader (EPIPE, or SIGPIPE if it does not ignore it), as with conmon, and
`ctr ls`/`stop`/`rm` go by the recorded pid and cgroup.
"""

import os
import select
import signal
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


def _title(name):
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
    from ctr.logs import LogWriter

    os.setsid()
    _detach_stdio()
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _title(rec.name)
    limits = rec.spec.log
    # The log through a handle on the record's folder: rotated in place even
    # after `ctr rename` moved the folder (same file system, same inode).
    folder = os.open(rec.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    writer = LogWriter(f"/proc/self/fd/{folder}/log", limits["max_size"], limits["max_files"])
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        proc, run = _start(instances, rec, null, fresh=True)
    except CtrError as err:
        report.write(report_w, report.MONITOR, str(err), getattr(err, "errno", 0), err.exit_code)
        return
    relay = _relay(rec)
    report.write(report_w, report.STARTED, f"{rec.name} runs", code=0, pid=proc.pid)
    os.close(report_w)
    delay = BACKOFF_FIRST
    while True:
        began = time.monotonic()
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
        if time.monotonic() - began >= STABLE_RUN:
            delay = BACKOFF_FIRST
        while True:
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            try:
                proc, run = _start(instances, rec, null, fresh=False)
            except StartError:
                if instances.restarting(rec):  # the policy counted it as a failed run
                    continue
                return
            except CtrError as err:
                instances.give_up(rec, err)
                return
            if proc is None:  # stopped while it waited
                return
            break


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
