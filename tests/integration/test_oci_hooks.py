"""ctr-oci runs a bundle's hooks (runtime-spec config.md, POSIX-platform hooks):
each phase at its point of the lifecycle, in the namespaces the spec names,
with the state on its stdin; a failing or overdue hook fails the operation
where the spec says so, and leaves nothing behind."""

import json
import os
import time

import test_oci_runtime
from helpers import wait_for
from test_oci_runtime import _error

env = test_oci_runtime.env  # the fixture: a state root, a busybox root, leftovers checked

PHASES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
          "poststop")


def _host_hook(tmp_path, log, phase, **extra):
    """A hook run from the host's /bin/sh that appends one line to `log`:
    PHASE MNT-NS STATE-JSON."""
    script = tmp_path / "hook.sh"
    if not script.exists():
        script.write_text('#!/bin/sh\nstate=$(cat)\n'
                          'echo "$1 $(readlink /proc/self/ns/mnt) $HOOK_ENV $state" >> "$2"\n'
                          'exit "${3:-0}"\n')
        script.chmod(0o755)
    return {"path": str(script), "args": ["hook.sh", phase, str(log), *extra.pop("argv", ())],
            "env": ["HOOK_ENV=set-" + phase], **extra}


def _lines(log):
    out = []
    for line in log.read_text().splitlines() if log.exists() else ():
        phase, mnt, env_value, state = line.split(" ", 3)
        out.append((phase, mnt, env_value, json.loads(state)))
    return out


def test_every_phase_runs_in_order_where_the_spec_says(env, tmp_path):
    log = tmp_path / "hooks.log"
    hooks = {p: [_host_hook(tmp_path, log, p)] for p in PHASES if p != "startContainer"}
    # startContainer runs after pivot_root: its path resolves in the container.
    hooks["startContainer"] = [{"path": "/bin/sh",
                                "args": ["sh", "-c", "cat > /start-state.json"]}]
    b = env.bundle("h1", "sleep", "100", hooks=hooks, annotations={"a": "b"})
    env("create", "-b", b, "h1", check=True)
    pid = env.state("h1")["pid"]
    seen = _lines(log)
    assert [s[0] for s in seen] == ["prestart", "createRuntime", "createContainer"]
    host_mnt = os.readlink("/proc/self/ns/mnt")
    container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    assert seen[0][1] == seen[1][1] == host_mnt  # the runtime's namespace
    assert seen[2][1] == container_mnt != host_mnt  # the container's
    for phase, _, env_value, state in seen:
        assert env_value == "set-" + phase  # the hook's env, and only it
        # runc's pid: the runtime's hooks see the host's, createContainer its own (1).
        assert state["pid"] == (1 if phase == "createContainer" else pid)
        assert state["id"] == "h1" and state["bundle"] == b
        assert state["status"] == "creating" and state["annotations"] == {"a": "b"}
    start_state = os.path.join(env.rootfs, "start-state.json")
    assert not os.path.exists(start_state)
    env("start", "h1", check=True)
    assert wait_for(lambda: os.path.exists(start_state) and os.path.getsize(start_state))
    state = json.loads(open(start_state).read())
    os.unlink(start_state)
    assert state["status"] == "created" and state["pid"] == 1  # its own pid namespace
    seen = _lines(log)
    assert seen[3][0] == "poststart" and seen[3][3]["status"] == "running"
    assert seen[3][1] == host_mnt
    env("kill", "h1", "KILL", check=True)
    assert wait_for(lambda: env.state("h1")["status"] == "stopped")
    assert len(_lines(log)) == 4  # poststop: only once the container is deleted
    env("delete", "h1", check=True)
    seen = _lines(log)
    assert seen[4][0] == "poststop" and seen[4][3]["status"] == "stopped"
    assert env.leftovers() == []


def test_a_failing_prestart_hook_fails_create_and_poststop_cleans(env, tmp_path):
    log = tmp_path / "hooks.log"
    hooks = {"prestart": [_host_hook(tmp_path, log, "prestart", argv=["3"])],
             "createContainer": [_host_hook(tmp_path, log, "createContainer")],
             "poststop": [_host_hook(tmp_path, log, "poststop")]}
    b = env.bundle("h2", "true", hooks=hooks)
    _error(env("create", "-b", b, "h2"), "prestart hook #0")
    assert "exit status 3" in env("create", "-b", b, "h2").stderr
    # createContainer never ran; poststop undid what the runtime hooks may have made.
    assert [s[0] for s in _lines(log)] == ["prestart", "poststop"] * 2
    assert env.leftovers() == []


def test_a_failing_create_container_hook_fails_create(env, tmp_path):
    log = tmp_path / "hooks.log"
    b = env.bundle("h3", "true", hooks={
        "createContainer": [_host_hook(tmp_path, log, "createContainer", argv=["4"])]})
    _error(env("create", "-b", b, "h3"), "createContainer hook #0")
    assert env.leftovers() == []


def test_an_overdue_hook_is_killed_at_its_timeout(env, tmp_path):
    b = env.bundle("h4", "true", hooks={
        "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]})
    t = time.monotonic()
    _error(env("create", "-b", b, "h4"), "timed out after 1 s")
    assert time.monotonic() - t < 10
    assert env.leftovers() == []


def test_failing_poststart_and_poststop_hooks_only_warn(env, tmp_path):
    log = tmp_path / "hooks.log"
    b = env.bundle("h5", "sleep", "100", hooks={
        "poststart": [{"path": "/no/such/hook"}, _host_hook(tmp_path, log, "poststart")],
        "poststop": [_host_hook(tmp_path, log, "poststop", argv=["5"])]})
    env("create", "-b", b, "h5", check=True)
    r = env("start", "h5")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("ctr-oci: warning: poststart hook #0 (/no/such/hook)")
    assert env.state("h5")["status"] == "running"
    assert [s[0] for s in _lines(log)] == ["poststart"]  # the rest went on
    r = env("delete", "-f", "h5")
    assert r.returncode == 0 and "poststop hook #0" in r.stderr and "exit status 5" in r.stderr
    assert env.leftovers() == []


def test_bad_hooks_are_config_errors(env, tmp_path):
    for i, (hook, why) in enumerate([
            ({"path": "relative/hook"}, "hooks.prestart[0].path"),
            ({"path": "/bin/true", "timeout": 0}, "hooks.prestart[0].timeout"),
            ({"path": "/bin/true", "env": ["NOEQUALS"]}, "hooks.prestart[0].env"),
            ({"path": "/bin/true", "args": "true"}, "hooks.prestart[0].args")]):
        b = env.bundle(f"bad{i}", "true", hooks={"prestart": [hook]})
        _error(env("create", "-b", b, f"bad{i}"), why)
    assert env.leftovers() == []
