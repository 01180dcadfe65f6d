"""The monitor of a detached instance (like conmon).

`spawn` double-forks: the monitor is reparented away from the CLI at once, has
its own session, and holds nothing of the CLI's (its stdio is /dev/null, so
`$(ctr run -d ...)` returns). It starts the instance with its output appended
to the instance's log, tells the CLI how the start went through a pipe, then
reaps the instance and records its exit status.
"""

import json
import os
import signal

from ctr.errors import EXIT_CTR, CtrError


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


def _monitor(instances, rec, report_w):
    os.setsid()
    _detach_stdio()
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _title(rec.name)
    log = os.open(rec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        proc = instances._start(rec, stdio=(null, log, log))
    except CtrError as err:
        os.close(log)
        os.write(report_w, json.dumps({"error": str(err), "code": err.exit_code}).encode())
        return
    finally:
        os.close(null)
    os.write(report_w, json.dumps({"pid": proc.pid}).encode())
    os.close(report_w)
    # With -t the output comes through the pty: the monitor copies it to the log.
    code = proc.wait(stdin=None, stdout=log)
    os.close(log)
    instances._finish(rec, proc, code)


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
                    try:
                        os.write(w, json.dumps({"error": f"monitor: {err}",
                                                "code": EXIT_CTR}).encode())
                    except OSError:
                        pass
                finally:
                    os._exit(0)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    try:
        report = json.loads(b"".join(chunks))
    except ValueError:
        raise CtrError(f"the monitor of {rec.name} died before starting it") from None
    if "error" in report:
        raise CtrError(report["error"], report.get("code", EXIT_CTR))
    return report["pid"]
