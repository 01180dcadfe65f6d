"""Healthchecks at run time: `ctr healthcheck run NAME` runs the instance's check
once (an exec in it, bounded by the timeout), records the result and the status
the way docker's .State.Health has them, and writes a health_status event when
the status changes.

Who runs the checks: the instance's monitor, and only as a timer (`timer`):
every interval it runs `check_argv(...)`, i.e. `ctr healthcheck run NAME`, as a
subprocess, and waits for it. Everything else is here, so a monitor written in
C needs only the same timer and argv.

The results live in instances/NAME/health.json, written atomically under the
instance's lock:

    {"run": STARTED, "Status": "starting|healthy|unhealthy", "FailingStreak": N,
     "Log": [{"Start": T, "End": T, "ExitCode": N, "Output": "..."}]}

`run` is the state's `started` of the run they belong to: a new run (a start, a
restart) begins again at `starting` without anyone having to reset the file.

docker's rules: exit status 0 is healthy; anything else (a timeout is -1) is a
failure, counted in FailingStreak unless the instance is still `starting`
within its start period; `retries` failures in a row make it unhealthy; one
success makes it healthy. The last LOG_ENTRIES results are kept, each output
cut at MAX_OUTPUT bytes.
"""

import os
import sys

from ctr import events
from ctr import store as st
from ctr.errors import Conflict, CtrError, StartError

DEFAULT_INTERVAL = 30 * 10**9
DEFAULT_TIMEOUT = 30 * 10**9
DEFAULT_RETRIES = 3
LOG_ENTRIES = 5
MAX_OUTPUT = 4096
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
NONE = "none"  # no check configured (ps --filter health=none)


def active(spec):
    """Whether `spec` has a check to run (an empty or NONE test: none)."""
    test = tuple((spec.healthcheck or {}).get("test") or ())
    return bool(test) and test[0] in ("CMD", "CMD-SHELL")


def settings(spec):
    """(interval, timeout, start_period) in seconds and retries, docker's defaults filled in."""
    hc = spec.healthcheck
    return ((hc.get("interval") or DEFAULT_INTERVAL) / 1e9,
            (hc.get("timeout") or DEFAULT_TIMEOUT) / 1e9,
            (hc.get("start_period") or 0) / 1e9,
            hc.get("retries") or DEFAULT_RETRIES)


def command(spec):
    test = tuple(spec.healthcheck["test"])
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return list(test[1:])


def check_argv(root, name):
    """What the monitor runs every interval. -P: the ctr installed beside this
    Python, never a folder named ctr in the monitor's working directory."""
    return [sys.executable, "-P", "-m", "ctr", "--root", root, "healthcheck", "run", name]


def _path(rec):
    return os.path.join(rec.dir, "health.json")


def _fresh(run):
    return {"run": run, "Status": STARTING, "FailingStreak": 0, "Log": []}


def current(rec, spec, state):
    """docker's .State.Health of the instance's present (or last) run, without
    `run`; None when it has no check."""
    if spec is None or not active(spec):
        return None
    return {k: v for k, v in _load(rec, state).items() if k != "run"}


def _load(rec, state):
    """The record of the run `state` describes (a fresh one if it has none yet)."""
    try:
        health = st.read_json(_path(rec), "the health of " + rec.name)
    except (FileNotFoundError, CtrError):
        health = None
    if not health or health.get("run") != state.get("started"):
        health = _fresh(state.get("started"))
    return health


def status(rec, spec, state):
    """starting | healthy | unhealthy | none: what ps shows and filters on."""
    health = current(rec, spec, state)
    return health["Status"] if health else NONE


# -- one check ----------------------------------------------------------------------


def _exec(rec, state, timeout):
    """Run the check in the instance: (exit code, output); -1 after the timeout."""
    from ctr import drivers

    spec = rec.spec
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        proc = drivers.load(spec.kind).exec(rec, state, command=command(spec),
                                            env=list(spec.env), workdir=spec.workdir,
                                            user=spec.user, stdio=(null, w, w))
    except StartError as err:
        os.close(w)
        os.close(r)
        return err.exit_code, str(err)
    finally:
        os.close(null)
    try:
        if proc.pid is None:  # a VM's: its agent's frames are relayed by wait()
            return _wait_relayed(proc, r, w, timeout)
        os.close(w)
        return _wait_process(proc, r, timeout)
    finally:
        os.close(r)


def _collect(output, data):
    size = sum(map(len, output))
    if size < MAX_OUTPUT:
        output.append(data[:MAX_OUTPUT - size])


def _timed_out(timeout):
    return -1, f"Health check exceeded timeout ({timeout:g}s)"


def _wait_process(proc, r, timeout):
    """A process on the host (a container's exec): its output until it exits
    (what it left running may hold the pipe: not waited for) or the timeout.
    No threads: the exec moved this process's children into the container's
    pid namespace, where a new thread cannot be made."""
    import select
    import signal
    import time

    pidfd = os.pidfd_open(proc.pid)
    output, deadline = [], time.monotonic() + timeout
    poller = select.poll()
    poller.register(r, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    try:
        exited = False
        while not exited:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.send_signal(signal.SIGKILL)
                proc.wait(stdin=None)
                return _timed_out(timeout)
            for fd, _ in poller.poll(left * 1000):
                if fd == pidfd:
                    exited = True
                    continue
                data = os.read(r, 65536)
                if data:
                    _collect(output, data)
                else:
                    poller.unregister(r)
        os.set_blocking(r, False)
        try:
            while data := os.read(r, 65536):
                _collect(output, data)
        except BlockingIOError:
            pass
        code = proc.wait(stdin=None)
    finally:
        os.close(pidfd)
    return code, b"".join(output).decode(errors="replace")


def _wait_relayed(proc, r, w, timeout):
    import signal
    import threading

    output, code = [], []

    def read():
        while data := os.read(r, 65536):
            _collect(output, data)

    def wait():
        try:
            code.append(proc.wait(stdin=None, stdout=w, stderr=w))
        except CtrError as err:
            code.append(err.exit_code)
            output.append(str(err).encode())
        finally:
            os.close(w)

    reader = threading.Thread(target=read, daemon=True)
    waiter = threading.Thread(target=wait, daemon=True)
    reader.start()
    waiter.start()
    waiter.join(timeout)
    if waiter.is_alive():
        try:
            proc.send_signal(signal.SIGKILL)
        except (ProcessLookupError, CtrError):
            pass
        waiter.join(5)
        return _timed_out(timeout)
    reader.join(0.5)
    return code[0] if code else -1, b"".join(output).decode(errors="replace")


def _stamp(ns):
    """RFC 3339 in UTC with nanoseconds, as docker's Health.Log times."""
    import time

    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _judge(health, spec, state, code, start_ns):
    """docker's handleProbeResult: the new Status and FailingStreak."""
    _, _, start_period, retries = settings(spec)
    if code == 0:
        health.update(Status=HEALTHY, FailingStreak=0)
        return
    if health["Status"] == STARTING and start_period:
        started = _ns(state.get("started"))
        if started is not None and (start_ns - started) / 1e9 < start_period:
            return  # failures within the start period do not count
    health["FailingStreak"] += 1
    if health["FailingStreak"] >= retries:
        health["Status"] = UNHEALTHY


def _ns(stamp):
    import datetime

    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return int(when.timestamp() * 1e9)


def run_check(rec):
    """Run the check of a running instance once and record it. Returns
    (status, the result: Start, End, ExitCode, Output)."""
    import time

    spec = rec.spec
    if not active(spec):
        raise CtrError(f"instance {rec.name} has no healthcheck")
    state = rec.state()
    if state["status"] != st.RUNNING:
        raise Conflict(f"instance {rec.name} is {state['status']}, not running")
    _, timeout, _, _ = settings(spec)
    start_ns = time.time_ns()
    code, output = _exec(rec, state, timeout)
    result = {"Start": _stamp(start_ns), "End": _stamp(time.time_ns()), "ExitCode": code,
              "Output": output}
    with rec.lock():
        now_state = rec.read_state()
        if now_state.get("started") != state.get("started"):
            return current(rec, spec, now_state)["Status"], result  # a new run meanwhile
        health = _load(rec, state)
        before = health["Status"]
        _judge(health, spec, state, code, start_ns)
        health["Log"] = [*health["Log"], result][-LOG_ENTRIES:]
        st.atomic_write_json(_path(rec), health)
        if health["Status"] != before:
            events.container(rec, f"health_status: {health['Status']}", spec)
    return health["Status"], result


# -- the monitor's part ---------------------------------------------------------------


def start_timer(root, rec):
    """The checks of a run, for whoever reaps the instance (its monitor, or ctr
    in the foreground): a thread running `timer`; None without a check. Pass
    what it returns to stop_timer once the run ended."""
    import threading

    if not active(rec.spec):
        return None
    stop = threading.Event()
    interval = settings(rec.spec)[0]
    # the name at each check: `ctr rename` may have moved the record meanwhile
    thread = threading.Thread(target=timer, args=(lambda: check_argv(root, rec.current_name()),
                                                  interval, stop), daemon=True)
    thread.start()
    return stop, thread


def stop_timer(handle):
    """No check outlives the run: a running one is killed and reaped."""
    if handle:
        handle[0].set()
        handle[1].join()


def timer(argv_of, interval, stop):
    """Every `interval` seconds (from the end of one check to the start of the
    next, as docker) until `stop` (a threading.Event) is set, run argv_of()
    (check_argv's, with the instance's name at that time) and wait for it; a
    check still running when `stop` is set is killed. The whole of a monitor's
    part."""
    import subprocess

    while not stop.wait(interval):
        try:
            check = subprocess.Popen(argv_of(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            continue
        while check.poll() is None:
            if stop.wait(0.05):
                check.kill()
                check.wait()
                return
