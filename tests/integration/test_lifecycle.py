"""The instance lifecycle: create, start, stop, kill, rm, ls, inspect, logs, exec,
and the truth after crashes."""

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from helpers import cgroup_dir, in_a_pty, processes, wait_for


def ls(ctr):
    return {r["name"]: r for r in json.loads(ctr("ls", "-a", "--format", "json").stdout)}


def test_exit_status_is_ctrs(ctr):
    assert ctr("run", "--rm", "busybox", "sh", "-c", "exit 7").returncode == 7
    assert ctr("run", "--rm", "busybox", "false").returncode == 1


def test_stdin_stdout_stderr_pass_through(ctr):
    r = ctr("run", "--rm", "busybox", "sh", "-c", "read x; echo out:$x; echo err >&2",
            input="hello\n")
    assert (r.stdout, r.stderr) == ("out:hello\n", "err\n")


def test_env_workdir_user(ctr, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n\nB=file\n")
    r = ctr("run", "--rm", "-e", "A=x y", "-e", "B=flag", "--env-file", str(env_file),
            "-w", "/srv/app", "-u", "nobody", "busybox", "sh", "-c",
            'echo "$A|$B|$FROM_FILE|$HOME|$PATH"; pwd; id -u; id -g')
    lines = r.stdout.splitlines()
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert lines[0] == f"x y|flag|1|/home|{path}"
    assert lines[1:] == ["/srv/app", "65534", "65534"]
    r = ctr("run", "--rm", "-u", "33:100", "busybox", "sh", "-c", "id -u; id -g")
    assert r.stdout.split() == ["33", "100"]
    # a non-root user has no capabilities
    r = ctr("run", "--rm", "-u", "1000", "busybox", "grep", "CapEff", "/proc/self/status")
    assert r.stdout.split()[1] == "0000000000000000"


def test_tty(ctr):
    code, out = in_a_pty(ctr, "run", "--rm", "-t", "busybox", "sh", "-c",
                         "test -t 0 && test -t 1 && echo is-a-tty; echo $TERM; tty; exit 5")
    assert code == 5
    assert b"is-a-tty" in out and b"xterm" in out
    assert b"/dev/pts/0" in out  # a pty of the container's own devpts


def test_signals_are_forwarded_in_the_foreground(ctr):
    p = ctr.popen("run", "--rm", "--name", "fg", "busybox", "sh", "-c",
                  "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.05; done")
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 42
    assert out == "got-term\n"


def test_killed_by_a_signal_is_128_plus_n(ctr):
    p = ctr.popen("run", "--name", "victim", "busybox", "sleep", "30")
    assert wait_for(lambda: ls(ctr).get("victim", {}).get("status") == "running")
    assert ctr("kill", "victim").returncode == 0
    p.communicate(timeout=10)
    assert p.returncode == 137
    assert ls(ctr)["victim"]["exit_code"] == 137


def test_create_start_stop_rm(ctr):
    r = ctr("create", "--name", "c1", "busybox", "sleep", "30")
    assert r.stdout == "c1\n"
    assert ls(ctr)["c1"]["status"] == "created"
    assert ctr("ls").stdout.count("\n") == 1  # only the header: ls shows running ones
    assert ctr("start", "c1").returncode == 0
    row = ls(ctr)["c1"]
    assert row["status"] == "running" and row["pid"]
    assert "c1" in ctr("ls").stdout
    t0 = time.monotonic()
    assert ctr("stop", "-t", "1", "c1").returncode == 0  # sleep as PID 1 ignores SIGTERM
    assert time.monotonic() - t0 < 8
    row = ls(ctr)["c1"]
    assert (row["status"], row["exit_code"]) == ("stopped", 137)
    assert ctr("stop", "c1").returncode == 0  # stopping a stopped instance is fine
    state = ctr.state("c1")
    assert state["finished"] and state["started"]
    assert ctr("rm", "c1").returncode == 0
    assert "c1" not in ls(ctr)


def test_stop_is_graceful_when_the_command_handles_sigterm(ctr):
    ctr("run", "-d", "--name", "g", "busybox", "sh", "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.05; done", check=True)
    t0 = time.monotonic()
    ctr("stop", "g", check=True)
    assert time.monotonic() - t0 < 5
    assert ls(ctr)["g"]["exit_code"] == 0


def test_detached_logs_and_exec(ctr):
    r = ctr("run", "-d", "--name", "d1", "busybox", "sh", "-c",
            "echo line1; echo err1 >&2; while true; do sleep 0.05; done")
    assert r.stdout == "d1\n"
    assert wait_for(lambda: "err1" in ctr("logs", "d1").stderr)
    r = ctr("logs", "d1")
    assert (r.stdout, r.stderr) == ("line1\n", "err1\n")  # each stream where it belongs
    r = ctr("exec", "d1", "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    lines = r.stdout.splitlines()
    assert lines[0] != "1"  # a new process in the same pid namespace
    assert lines[1].startswith("sh -c echo line1")
    assert ctr("exec", "d1", "sh", "-c", "exit 9").returncode == 9
    r = ctr("exec", "-e", "X=1", "-w", "/tmp", "-u", "nobody", "d1", "sh", "-c",
            "echo $X $(pwd) $(id -u)")
    assert r.stdout == "1 /tmp 65534\n"
    # exec joins every namespace of the instance
    spec = json.loads(ctr("inspect", "d1").stdout)["spec"]
    assert ctr("exec", "d1", "hostname").stdout == spec["hostname"] + "\n"
    r = ctr("exec", "d1", "sh", "-c",
            "for n in pid mnt; do readlink /proc/self/ns/$n; readlink /proc/1/ns/$n; done")
    a, b, c, d = r.stdout.split()
    assert a == b and c == d
    ctr("rm", "-f", "d1", check=True)


def test_logs_follow_ends_when_the_instance_stops(ctr):
    ctr("run", "-d", "--name", "f", "busybox", "sh", "-c",
        "for i in 1 2 3; do echo $i; sleep 0.1; done", check=True)
    r = ctr("logs", "-f", "f", timeout=20)
    assert r.stdout == "1\n2\n3\n"


def test_run_d_rm_removes_after_exit(ctr):
    ctr("run", "-d", "--rm", "--name", "tmp", "busybox", "true", check=True)
    assert wait_for(lambda: "tmp" not in ls(ctr))


def test_generated_names_are_unique_and_valid(ctr):
    names = {ctr("create", "busybox", "true", check=True).stdout.strip() for _ in range(5)}
    assert len(names) == 5
    for name in names:
        assert ls(ctr)[name]["status"] == "created"


def test_kill_9_of_the_instance_is_recorded(ctr):
    ctr("run", "-d", "--name", "k", "busybox", "sleep", "30", check=True)
    pid = ctr.state("k")["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: ls(ctr)["k"]["status"] == "stopped")
    assert ls(ctr)["k"]["exit_code"] == 137


def test_kill_9_of_the_monitor_keeps_the_truth(ctr):
    ctr("run", "-d", "--name", "m", "busybox", "sleep", "30", check=True)
    state = ctr.state("m")
    monitor = state["reaper_pid"]
    assert any("ctr-monitor m" in p for p in processes("ctr-monitor"))
    os.kill(monitor, signal.SIGKILL)
    time.sleep(0.2)
    assert ls(ctr)["m"]["status"] == "running"  # the instance lives on, and ls says so
    os.kill(state["pid"], signal.SIGKILL)
    assert wait_for(lambda: ls(ctr)["m"]["status"] == "stopped")
    assert ctr("rm", "m").returncode == 0
    assert not os.path.exists(ctr.path("instances", "m"))


def test_kill_9_of_ctr_in_the_foreground(ctr):
    p = ctr.popen("run", "--rm", "--name", "fg9", "busybox", "sleep", "30")
    assert wait_for(lambda: ls(ctr).get("fg9", {}).get("status") == "running")
    pid = ctr.state("fg9")["pid"]
    p.kill()
    p.wait()
    # The container dies with ctr (it would otherwise run unwatched), and ls says so.
    assert wait_for(lambda: ls(ctr)["fg9"]["status"] == "stopped")
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert ctr("rm", "fg9").returncode == 0  # and rm cleans what nobody removed


def test_restart_after_stop_keeps_the_record(ctr):
    ctr("run", "-d", "--name", "r", "busybox", "sleep", "30", check=True)
    ctr("stop", "-t", "0", "r", check=True)
    ctr("start", "r", check=True)
    assert ls(ctr)["r"]["status"] == "running"
    ctr("rm", "-f", "r", check=True)


def test_inspect(ctr):
    ctr("create", "--name", "i", "-e", "A=1", "busybox", "echo", "hi", check=True)
    info = json.loads(ctr("inspect", "i").stdout)
    assert info["name"] == "i" and info["kind"] == "container" and info["image"] == "busybox"
    assert info["spec"]["command"] == ["echo", "hi"]
    assert "A=1" in info["spec"]["env"]
    assert info["state"]["status"] == "created"
    assert os.path.isdir(info["paths"]["upper"])
    ctr("start", "-a", "i", check=True)
    info = json.loads(ctr("inspect", "i").stdout)
    assert info["state"]["exit_code"] == 0 and info["state"]["finished"]


def test_rm_f_kills_processes_that_escaped_init(ctr):
    # A daemonized child is still in the pid namespace: it dies with the instance.
    ctr("run", "-d", "--name", "esc", "busybox", "sh", "-c",
        "(setsid sleep 300 &); sleep 300", check=True)
    assert wait_for(lambda: len(open(os.path.join(
        cgroup_dir(ctr, "esc", "pids"), "cgroup.procs")).read().split()) >= 2)
    ctr("rm", "-f", "esc", check=True)
    assert not processes("sleep 300")


def test_parallel_runs_share_and_release_the_cgroup_parent(ctr):
    # Each run creates /ctr if needed and removes it when it was the last one:
    # concurrent runs must never fail on that race, and nothing may remain.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: ctr("run", "--rm", "busybox", "sh", "-c", f"exit {i % 3}"), range(16)))
    assert [r.returncode for r in results] == [i % 3 for i in range(16)], \
        [r.stderr for r in results if r.stderr]


def test_exec_with_a_tty(ctr):
    ctr("run", "-d", "--name", "t", "busybox", "sleep", "30", check=True)
    code, out = in_a_pty(ctr, "exec", "-t", "t", "sh", "-c",
                         "test -t 0 && echo is-a-tty; echo $TERM; tty; exit 4")
    assert code == 4
    assert b"is-a-tty" in out and b"xterm" in out
    assert b"/dev/pts/" in out
    ctr("rm", "-f", "t", check=True)


def test_detached_with_a_tty_keeps_running_and_logs(ctr):
    # docker's -dt: the terminal stays open (no end of input) and its output is logged
    ctr("run", "-d", "-t", "--name", "dt", "busybox", "sh", "-c",
        "test -t 1 && echo tty-ok; exec sleep 30", check=True)
    assert wait_for(lambda: "tty-ok" in ctr("logs", "dt").stdout)
    time.sleep(0.3)
    assert ls(ctr)["dt"]["status"] == "running"
    ctr("rm", "-f", "dt", check=True)
