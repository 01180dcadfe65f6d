"""OCI hooks: programs a runtime runs at named points of a container's life,
each with the container's state as JSON on its stdin (the runtime-spec's
config.md, "POSIX-platform Hooks"; ctr-oci reads them from config.json).

    phase            runs in                      when (ctr-oci)
    prestart         the runtime's namespaces     create: the container's root mounted,
    createRuntime    the runtime's namespaces       before pivot_root (parent side)
    createContainer  the container's namespaces   create: then, before pivot_root (its init)
    startContainer   the container's namespaces   start: before the command's execve (its init)
    poststart        the runtime's namespaces     start: after the command was let go
    poststop         the runtime's namespaces     delete: after the container is gone

A hook is {"path", "args", "env", "timeout"}: `path` is executed with `args`
as its argv (argv[0] included; [path] when absent) and `env` as its whole
environment. A hook that exits non-zero, cannot be executed or outlives its
`timeout` (seconds; killed then) fails: in the first four phases that fails
the operation, in poststart and poststop it is a warning and the rest run.

Only os, select and json are used: the container's init imports this module
before pivot_root and runs startContainer hooks after it, where ctr's files
may not be reachable.
"""

import json
import os
import select
import signal
import time

PHASES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
          "poststop")
OUTPUT_LIMIT = 4096  # bytes of a failing hook's output kept for its message


def state_json(cid, status, pid, bundle, annotations, version):
    """The state a hook reads on its stdin (the runtime-spec's state)."""
    return json.dumps({"ociVersion": version, "id": cid, "status": status, "pid": pid,
                       "bundle": bundle, "annotations": dict(annotations or {})}).encode()


def run(phase, hooks, state):
    """Run `hooks` of `phase` in order with `state` (bytes) on their stdin.
    Returns the list of failures (one line each); stops at the first in the
    phases that must succeed (the caller raises)."""
    failures = []
    for i, hook in enumerate(hooks):
        why = run_one(hook, state)
        if why is not None:
            failures.append(f"{phase} hook #{i} ({hook['path']}): {why}")
            if phase not in ("poststart", "poststop"):
                break
    return failures


def run_one(hook, state):
    """Run one hook; None when it exited 0, else why it failed."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    args = list(hook.get("args") or [hook["path"]])
    env = dict(e.split("=", 1) for e in hook.get("env") or ())
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.closerange(3, 65536)
            os.execve(hook["path"], args, env)
        except OSError as err:
            os.write(2, f"cannot execute: {err.strerror}".encode())
        finally:
            os._exit(127)
    os.close(in_r)
    os.close(out_w)
    try:
        os.write(in_w, state)
    except OSError:
        pass  # a hook that does not read its stdin
    os.close(in_w)
    output, status = _wait(pid, out_r, hook.get("timeout"))
    os.close(out_r)
    text = output.decode(errors="replace").strip().replace("\n", " ")
    if status is None:
        return f"timed out after {hook['timeout']} s" + (f": {text}" if text else "")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    if os.WIFSIGNALED(status):
        why = f"killed by signal {os.WTERMSIG(status)}"
    else:
        why = f"exit status {os.WEXITSTATUS(status)}"
    return why + (f": {text}" if text else "")


def _wait(pid, out_r, timeout):
    """(its output, its wait status), or status None when it was killed for
    outliving `timeout`."""
    pidfd = os.pidfd_open(pid)
    poll = select.poll()
    poll.register(pidfd, select.POLLIN)
    poll.register(out_r, select.POLLIN)
    deadline = time.monotonic() + timeout if timeout else None
    output = b""
    exited = False
    try:
        while not exited:
            left = None if deadline is None else max(0, deadline - time.monotonic())
            events = poll.poll(None if left is None else int(left * 1000) + 1)
            if not events and deadline is not None and time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return output, None
            for fd, _ in events:
                if fd == pidfd:
                    exited = True
                else:
                    data = os.read(out_r, 65536)
                    if not data:
                        poll.unregister(out_r)
                    output = (output + data)[:OUTPUT_LIMIT]
    finally:
        os.close(pidfd)
    os.set_blocking(out_r, False)
    try:
        output = (output + os.read(out_r, OUTPUT_LIMIT))[:OUTPUT_LIMIT]
    except (BlockingIOError, OSError):
        pass
    _, status = os.waitpid(pid, 0)
    return output, status
