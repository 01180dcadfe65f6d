"""Long-running detached instances: the monitor's restart policies and backoff,
the log (streams, timestamps, --tail/--since/--until, rotation), and what happens
when the monitor itself is killed."""

import datetime
import json
import os
import signal
import time

from helpers import assert_refused, processes, wait_for


def ls(ctr):
    return {r["name"]: r for r in json.loads(ctr("ls", "-a", "--format", "json").stdout)}


def starts(ctr, name):
    """The times the instance's command started, from its own log lines."""
    lines = ctr("logs", "--timestamps", name).stdout.splitlines()
    return [datetime.datetime.fromisoformat(line.split()[0][:26] + "+00:00").timestamp()
            for line in lines if line.endswith(" start")]


def settled(ctr, name):
    return wait_for(lambda: ls(ctr)[name]["status"] == "stopped", timeout=30)


def test_on_failure_restarts_n_times_with_growing_backoff(ctr):
    ctr("run", "-d", "--name", "f", "--network", "none", "--restart", "on-failure:4",
        "busybox", "sh", "-c", "echo start; exit 1", check=True)
    assert settled(ctr, "f")
    row = ls(ctr)["f"]
    assert (row["restarts"], row["exit_code"]) == (4, 1)
    times = starts(ctr, "f")
    assert len(times) == 5  # the first run and four restarts
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[-1] > gaps[0] * 2, gaps  # 100, 200, 400, 800 ms plus the start itself
    assert gaps[-1] >= 0.8, gaps


def test_on_failure_leaves_a_success_alone_and_always_restarts_it(ctr):
    ctr("run", "-d", "--name", "ok", "--network", "none", "--restart", "on-failure",
        "busybox", "true", check=True)
    assert settled(ctr, "ok")
    assert ls(ctr)["ok"]["restarts"] == 0
    ctr("run", "-d", "--name", "al", "--network", "none", "--restart", "always",
        "busybox", "sh", "-c", "echo start; exit 0", check=True)
    assert wait_for(lambda: ls(ctr)["al"]["restarts"] >= 2, timeout=20)
    assert ctr("stop", "al").returncode == 0
    stopped = ls(ctr)["al"]
    assert stopped["status"] == "stopped"
    time.sleep(1.0)  # longer than the backoff it was in: nothing starts it again
    assert ls(ctr)["al"] == stopped
    assert not processes("ctr-monitor al")
    ctr("rm", "ok", "al", check=True)


def test_stop_of_a_running_instance_is_not_undone(ctr):
    ctr("run", "-d", "--name", "s", "--network", "none", "--restart", "always",
        "busybox", "sh", "-c", "trap 'exit 0' TERM; echo start; while :; do sleep 0.1; done",
        check=True)
    assert wait_for(lambda: starts(ctr, "s"))
    assert ctr("stop", "s").returncode == 0
    time.sleep(1.0)
    row = ls(ctr)["s"]
    assert (row["status"], row["exit_code"], row["restarts"]) == ("stopped", 0, 0)
    assert len(starts(ctr, "s")) == 1
    # a start by hand brings the policy back, with the count reset
    ctr("start", "s", check=True)
    assert ls(ctr)["s"]["status"] == "running"
    ctr("kill", "s", check=True)  # SIGKILL: as docker, a killed instance stays down
    assert settled(ctr, "s")
    time.sleep(0.5)
    assert ls(ctr)["s"]["status"] == "stopped"
    ctr("rm", "s", check=True)


def test_rm_f_ends_a_restart_loop(ctr):
    ctr("run", "-d", "--name", "loop", "--network", "none", "--restart", "always",
        "busybox", "false", check=True)
    assert wait_for(lambda: ls(ctr)["loop"]["restarts"] >= 1)
    r = ctr("rm", "loop")  # running or restarting, either way not without -f
    assert r.returncode == 125 and "stop it first or use rm -f" in r.stderr
    assert ctr("rm", "-f", "loop").returncode == 0
    assert "loop" not in ls(ctr)
    assert wait_for(lambda: not processes("ctr-monitor loop"))


def test_killed_monitor_loses_nothing(ctr):
    ctr("run", "-d", "--name", "m", "--network", "none", "--restart", "always",
        "busybox", "sleep", "1000", check=True)
    state = ctr.state("m")
    os.kill(state["reaper_pid"], signal.SIGKILL)
    time.sleep(0.3)
    row = ls(ctr)["m"]
    assert (row["status"], row["pid"]) == ("running", state["pid"])  # it keeps running
    assert ctr("stop", "-t", "1", "m").returncode == 0
    state = ctr.state("m")
    assert state["status"] == "stopped"
    assert "monitor was gone" in state["reason"]
    ctr("rm", "m", check=True)


def test_killed_monitor_during_backoff_is_reported(ctr):
    ctr("run", "-d", "--name", "b", "--network", "none", "--restart", "always",
        "busybox", "sh", "-c", "exit 3", check=True)
    # after four restarts the backoff is 1.6 s: time to catch it waiting
    assert wait_for(lambda: (lambda r: r["status"] == "restarting" and r["restarts"] >= 4)(
        ls(ctr)["b"]), timeout=20)
    os.kill(ctr.state("b")["reaper_pid"], signal.SIGKILL)
    time.sleep(0.2)
    state = ctr.state("b")
    assert state["status"] == "stopped" and "monitor died" in state["reason"]
    assert state["exit_code"] == 3
    ctr("rm", "b", check=True)


def test_logs_streams_timestamps_tail_since(ctr):
    ctr("run", "-d", "--name", "l", "--network", "none", "busybox", "sh", "-c",
        "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; sleep 1.2; echo late; "
        "printf no-newline", check=True)
    assert settled(ctr, "l")
    r = ctr("logs", "l")
    assert r.stdout == "out1\nout2\nout3\nout4\nout5\nlate\nno-newline"
    assert r.stderr == "err1\nerr2\nerr3\nerr4\nerr5\n"
    assert ctr("logs", "--tail", "2", "l").stdout == "late\nno-newline"
    assert ctr("logs", "--tail", "0", "l").stdout == ""
    stamped = ctr("logs", "-t", "l").stdout.splitlines()
    when = [datetime.datetime.fromisoformat(s.split()[0][:26] + "+00:00") for s in stamped]
    assert when == sorted(when)
    assert abs(when[0].timestamp() - time.time()) < 60
    late = when[-2]
    since = (late - datetime.timedelta(seconds=0.5)).isoformat()
    assert ctr("logs", "--since", since, "l").stdout == "late\nno-newline"
    assert ctr("logs", "--until", since, "l").stdout.startswith("out1\n")
    assert "late" not in ctr("logs", "--until", since, "l").stdout
    assert ctr("logs", "--since", "1h", "l").stdout.startswith("out1")
    assert ctr("logs", "--since", str(time.time() + 60), "l").stdout == ""
    ctr("rm", "l", check=True)


def test_logs_follow_across_restarts(ctr):
    ctr("run", "-d", "--name", "fr", "--network", "none", "--restart", "on-failure:2",
        "busybox", "sh", "-c", "echo start; exit 1", check=True)
    r = ctr("logs", "-f", "fr", timeout=30)
    assert r.stdout == "start\n" * 3


def test_log_rotation_keeps_at_most_the_configured_size(ctr):
    ctr("run", "-d", "--name", "chatty", "--network", "none", "--log-max-size", "64k",
        "--log-max-files", "3", "busybox", "sh", "-c",
        "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done", check=True)
    assert settled(ctr, "chatty")
    folder = ctr.path("instances", "chatty")
    logs = sorted(n for n in os.listdir(folder) if n.startswith("log"))
    assert logs == ["log", "log.1", "log.2"]
    sizes = [os.path.getsize(os.path.join(folder, n)) for n in logs]
    assert all(s <= 64 * 1024 for s in sizes), sizes
    out = ctr("logs", "chatty").stdout.splitlines()
    # what is kept is the end of the output, whole lines, in order, without a gap
    assert out[-1] == "line-19999"
    first = int(out[0].split("-")[1])
    assert out == [f"line-{i}" for i in range(first, 20000)]
    assert first > 10000  # the rest was rotated away
    ctr("rm", "chatty", check=True)
    # a single file: it starts over
    ctr("run", "-d", "--name", "one", "--network", "none", "--log-max-size", "4k",
        "--log-max-files", "1", "busybox", "sh", "-c",
        "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done", check=True)
    assert settled(ctr, "one")
    assert os.path.getsize(ctr.path("instances", "one", "log")) <= 4096
    assert not os.path.exists(ctr.path("instances", "one", "log.1"))
    ctr("rm", "one", check=True)


def test_bad_policy_and_log_options_are_refused(ctr):
    for args, message in (
            (["--restart", "sometimes"], "invalid --restart 'sometimes'"),
            (["--restart", "always:3"], "invalid --restart 'always:3'"),
            (["--restart", "on-failure:x"], "invalid --restart retry count"),
            (["--restart", "on-failure:0"], "invalid --restart retry count 0"),
            (["--restart", "always", "--rm"], "--restart and --rm conflict"),
            (["--log-max-size", "1k"], "invalid --log-max-size '1k'"),
            (["--log-max-size", "lots"], "invalid --log-max-size"),
            (["--log-max-files", "0"], "invalid --log-max-files 0")):
        r = ctr("run", "-d", *args, "busybox", "true")
        assert_refused(ctr, r, message)
    ctr("run", "-d", "--name", "x", "--network", "none", "busybox", "true", check=True)
    for args, message in ((["--tail", "-3"], "invalid --tail '-3'"),
                          (["--since", "yesterday"], "invalid --since 'yesterday'")):
        r = ctr("logs", *args, "x")
        assert r.returncode == 125 and r.stderr.startswith("ctr: error: " + message), r.stderr
    ctr("rm", "-f", "x", check=True)


def test_a_detached_container_is_watched_by_ctr_monitor(ctr):
    ctr("run", "-d", "--name", "c", "busybox", "sleep", "1000", check=True)  # bridge
    state = ctr.state("c")
    monitor = state["reaper_pid"]
    assert os.path.basename(os.readlink(f"/proc/{monitor}/exe")) == "ctr-monitor"
    with open(f"/proc/{monitor}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"ctr-monitor", b"c"]
    ctr("rm", "-f", "c", check=True)


def test_an_exit_reaped_by_ctr_monitor_survives_a_kill_9_before_it_is_recorded(ctr):
    """ctr-monitor writes exit.json as it reaps, then execs Python to record the
    end in the state; kill -9 in between loses no exit status."""
    ctr("run", "-d", "--name", "e", "busybox", "sleep", "1000", check=True)
    state = ctr.state("e")
    monitor = state["reaper_pid"]
    record = ctr.path("instances", "e", "exit.json")
    os.kill(monitor, signal.SIGSTOP)  # the instance's end waits for it, unreaped
    os.kill(state["pid"], signal.SIGKILL)
    os.kill(monitor, signal.SIGCONT)
    deadline = time.monotonic() + 10
    state_file = ctr.path("instances", "e", "state.json")
    while not os.path.exists(record) and json.load(open(state_file))["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.001)
    try:
        os.kill(monitor, signal.SIGKILL)  # while its Python is still importing
    except ProcessLookupError:
        pass
    assert wait_for(lambda: ls(ctr)["e"]["status"] == "stopped")
    state = ctr.state("e")
    assert state["exit_code"] == 137, state
    assert ctr("rm", "e").returncode == 0  # and rm releases what the run held
