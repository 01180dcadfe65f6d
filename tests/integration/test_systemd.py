"""`ctr generate systemd` against systemd's own tools. This host has no systemd
as PID 1, so units cannot be started with systemctl; what runs instead:
`systemd-analyze verify` (systemd's unit loader: syntax, specifiers, escapes,
the executables exist), its debug dump of the command lines systemd parsed
(the argv it would exec), and those exact argvs run here in a unit's order
(ExecStartPre, ExecStart with NOTIFY_SOCKET, ExecStop with $MAINPID, ExecStopPost),
playing the manager's part."""

import os
import re
import shutil
import signal
import subprocess

import pytest
import test_sdnotify
from helpers import CTR, assert_refused
from test_sdnotify import Systemd

ANALYZE = shutil.which("systemd-analyze")
if ANALYZE is None:
    pytest.fail("systemd-analyze is missing: `make dev` installs the systemd package",
                pytrace=False)

notify_tool = test_sdnotify.notify_tool  # the fixture, shared

NASTY = ["a b", 'say "hi"', "50%", "$HOME", "${HOME}", "back\\slash", "line\nnext", "tab\there",
         ";", "", "it's", "ünï", "-x", "\x01"]


def verify(path):
    """systemd-analyze verify: (exit status, its complaints)."""
    r = subprocess.run([ANALYZE, "verify", "--man=no", path], capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


def _unescape(word):
    """One word of systemd's dump (quote_command_line: double quotes, C escapes)."""
    out = bytearray()
    i = 0
    simple = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11}
    if word.startswith('"') and word.endswith('"') and len(word) >= 2:
        word = word[1:-1]
    while i < len(word):
        c = word[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        nxt = word[i + 1]
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt == "x":
            out.append(int(word[i + 2:i + 4], 16))
            i += 4
        elif nxt.isdigit():
            out.append(int(word[i + 1:i + 4], 8))
            i += 4
        else:
            out += nxt.encode()
            i += 2
    return out.decode()


def _split(line):
    return [_unescape(w) for w in re.findall(r'"(?:[^"\\]|\\.)*"|[^\s"]+', line)]


def parsed_commands(path):
    """{'ExecStart': [argv, ...], ...} as systemd parsed them, with its exec-time
    $$ -> $ applied (no other $VAR remains in a ctr unit)."""
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="debug")
    r = subprocess.run([ANALYZE, "verify", "--man=no", path], capture_output=True, text=True,
                       env=env)
    cmds, current = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"\s*-> (Exec\w+):$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"\s*Command Line: (.*)$", line)
        if m and current:
            argv = [a.replace("$$", "$") for a in _split(m.group(1))]
            cmds.setdefault(current, []).append(argv)
    return cmds


def generate(ctr, tmp_path, *args):
    r = ctr("generate", "systemd", "--files", "--dest", str(tmp_path), *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def keys(path):
    with open(path) as f:
        return [line.rstrip("\n") for line in f if "=" in line and not line.startswith("#")]


@pytest.mark.parametrize("policy", ["no", "on-failure", "always", "on-abnormal"])
def test_plain_units_pass_verify(ctr, tmp_path, policy):
    ctr("create", "--name", "web", "--network", "none", "busybox", "sleep", "1000", check=True)
    path = generate(ctr, tmp_path, "--restart-policy", policy, "--stop-timeout", "3", "web")
    assert path == str(tmp_path / "ctr-web.service")
    assert verify(path) == (0, "")
    lines = keys(path)
    assert f"Restart={policy}" in lines and "TimeoutStopSec=63" in lines
    assert "KillMode=mixed" in lines and "Delegate=yes" in lines and "Type=notify" in lines
    cmds = parsed_commands(path)
    real = os.path.abspath(CTR)
    assert cmds["ExecStart"] == [[real, "--root", ctr.root, "start", "-a", "--cgroup-parent",
                                  "self", "web"]]
    assert cmds["ExecStop"] == [[real, "--root", ctr.root, "stop", "-t", "3", "web"]]


@pytest.mark.parametrize("policy", ["on-success", "on-watchdog", "on-abort"])
def test_new_units_pass_verify(ctr, tmp_path, policy):
    src = tmp_path / "data"
    src.mkdir()
    ctr("create", "--name", "app", "--network", "none", "-e", "A=1 2", "-m", "32m",
        "--pids-limit", "50", "--read-only", "-v", f"{src}:/data:ro", "--cap-drop", "ALL",
        "--ulimit", "nofile=64", "busybox", "sh", "-c", "echo ok", check=True)
    path = generate(ctr, tmp_path, "--new", "--restart-policy", policy, "app")
    assert verify(path) == (0, "")
    cmds = parsed_commands(path)
    assert set(cmds) == {"ExecStartPre", "ExecStart", "ExecStop", "ExecStopPost"}
    assert f"Restart={policy}" in keys(path)


def test_the_argv_systemd_parses_runs_the_same_instance(ctr, tmp_path):
    """--new with arguments full of quotes, %, $, backslashes, newlines: what
    systemd parses from ExecStart= is ctr's own rebuilt `run`, and running the
    unit's commands in order (as the manager would) gives the original's output,
    READY=1 from the unit's main process, and leaves nothing."""
    script = 'for a in "$@"; do printf "[%s]" "$a"; done; printf "|%s|%s" "$V" "$W"'
    ctr("create", "--name", "odd", "--network", "none", "-e", "V=x %i $y \\z \"q\"",
        "-e", "W=two\nlines", "-w", "/tmp", "busybox", "sh", "-c", script, "sh", *NASTY,
        check=True)
    want = ctr("start", "-a", "odd")
    assert want.returncode == 0, want.stderr
    path = generate(ctr, tmp_path, "--new", "--restart-policy", "always", "odd")
    assert verify(path) == (0, "")
    cmds = parsed_commands(path)
    run_argv = cmds["ExecStart"][0]
    assert run_argv[-len(NASTY):] == NASTY
    # as the manager: pre, start (notify socket), stop ($MAINPID), post
    pre = subprocess.run(cmds["ExecStartPre"][0], capture_output=True, text=True)
    assert pre.returncode == 0, pre.stderr  # the instance generated from goes (podman --replace)
    notify = Systemd(str(tmp_path))
    try:
        env = dict(os.environ, NOTIFY_SOCKET=notify.name)
        env.pop("CTR_ROOT", None)  # the unit names its root itself
        p = subprocess.Popen(run_argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out == want.stdout
        got = notify.receive(1)
        assert got and got[1] == {"MAINPID": str(p.pid), "READY": "1"} and got[0] == p.pid
    finally:
        notify.close()
    for step in ("ExecStop", "ExecStopPost"):  # '-' prefixed: the instance is gone already
        subprocess.run(cmds[step][0], capture_output=True, env=dict(os.environ, MAINPID=str(p.pid)))
    assert not os.path.exists(ctr.path("instances", "odd"))


def test_a_unit_stops_its_instance_cleanly(ctr, tmp_path):
    """A plain unit's start and stop, played: ExecStart runs the instance nested in
    its own cgroup (--cgroup-parent self), ExecStop stops it within the timeout,
    the main process exits 143 (SuccessExitStatus) and the cgroup is gone."""
    ctr("create", "--name", "svc", "--network", "none", "busybox", "sleep", "1000", check=True)
    path = generate(ctr, tmp_path, "--stop-timeout", "2", "svc")
    cmds = parsed_commands(path)
    notify = Systemd(str(tmp_path))
    try:
        env = dict(os.environ, NOTIFY_SOCKET=notify.name)
        p = subprocess.Popen(cmds["ExecStart"][0], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        assert notify.receive()[1].get("READY") == "1"
        state = ctr.state("svc")
        with open("/proc/self/cgroup") as f:
            mine = {line.split(":")[1]: line.strip().split(":", 2)[2] for line in f}
        memory = next(c for c in state["cgroups"] if "/memory/" in c)
        assert memory.startswith(f"/sys/fs/cgroup/memory{mine['memory'].rstrip('/')}/")
        stop = subprocess.run(cmds["ExecStop"][0], capture_output=True, text=True,
                              env=dict(env, MAINPID=str(p.pid)))
        assert stop.returncode == 0, stop.stderr
        assert notify.receive()[1] == {"STOPPING": "1"}
        # `sleep` as pid 1 ignores SIGTERM: SIGKILL after -t 2, status 137
        assert p.wait(30) == 137
        assert not os.path.exists(memory)
    finally:
        notify.close()
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)


def test_refusals(ctr, tmp_path):
    os.makedirs(ctr.path("instances"))
    assert_refused(ctr, ctr("generate", "systemd", "nope"), "no such instance: nope")
    ctr("create", "--name", "web", "--network", "none", "busybox", "true", check=True)
    ctr("create", "--name", "once", "--rm", "--network", "none", "busybox", "true", check=True)
    for args, message in (
            (["--restart-policy", "sometimes", "web"], "invalid --restart-policy 'sometimes'"),
            (["--dest", str(tmp_path), "web"], "--dest needs --files"),
            (["--files", "--dest", str(tmp_path / "absent"), "web"], "no such folder"),
            (["--stop-timeout", "-1", "web"], "--stop-timeout"),
            (["once"], "use --new")):
        r = ctr("generate", "systemd", *args)
        assert r.returncode == 125, (args, r.stderr)
        assert r.stderr.startswith("ctr: error: ") and message in r.stderr, r.stderr
        assert len(r.stderr.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["root"]  # no unit file written


def test_the_relay_binds_below_a_deep_state_root(ctr, tmp_path, notify_tool):
    """The container mode's relay is bound through the record's folder fd: a
    state root deeper than sun_path allows (108 bytes) still works."""
    root = str(tmp_path / ("d" * 60) / ("e" * 60) / "root")
    shutil.copytree(ctr.root, root, symlinks=True)
    notify = Systemd(str(tmp_path))
    try:
        p = subprocess.Popen([CTR, "--root", root, "run", "--rm", "--network", "none",
                              "--sd-notify", "container", "-v", f"{notify_tool}:/bin/notify:ro",
                              "busybox", "notify", "READY=1"],
                             env=dict(os.environ, NOTIFY_SOCKET=notify.name),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert notify.receive(1)[1] == {"MAINPID": str(p.pid)}
        assert notify.receive(1)[1] == {"READY": "1"}
    finally:
        notify.close()
        shutil.rmtree(root, ignore_errors=True)
