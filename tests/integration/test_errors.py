"""Bad input: one line `ctr: error: ...`, a documented exit code, nothing left.

The `ctr` fixture already fails a test that leaves a mount, a cgroup or a process;
these tests also check that no instance record is left.
"""

import json
import os

import pytest


def instances(ctr):
    path = ctr.path("instances")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def assert_error(r, code, *fragments):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ctr: error: "), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,code,fragment", [
    (["--name", "-bad", "busybox", "true"], 125, "invalid name"),
    (["--name", "a/b", "busybox", "true"], 125, "invalid name"),
    (["--name", "x" * 64, "busybox", "true"], 125, "invalid name"),
    (["nosuchimage", "true"], 125, "no such image: nosuchimage"),
    (["busybox", "nosuchcommand"], 127, "nosuchcommand: executable file not found in $PATH"),
    (["busybox", "/nosuch/cmd"], 127, "no such file or directory"),
    (["busybox", "/etc/passwd"], 126, "permission denied"),
    (["busybox", "/etc"], 126, "permission denied"),
    (["-e", "=x", "busybox", "true"], 125, "invalid environment variable"),
    (["-u", "nosuchuser", "busybox", "true"], 125, "unable to find user nosuchuser"),
    (["-u", "root:nosuchgroup", "busybox", "true"], 125, "unable to find group"),
    (["-u", "bad user", "busybox", "true"], 125, "invalid user"),
    (["-w", "relative/dir", "busybox", "true"], 125, "must be an absolute path"),
    (["-w", "/etc/passwd", "busybox", "true"], 125, "not a directory"),
    (["--hostname", "bad_host!", "busybox", "true"], 125, "invalid hostname"),
    (["--env-file", "/nonexistent", "busybox", "true"], 125, "cannot read env file"),
    (["--no-such-flag", "busybox"], 125, "no such option"),
    ([], 125, "missing argument"),
])
def test_run_refuses_and_leaves_nothing(ctr, args, code, fragment):
    for mode in ([], ["--rm"], ["-d"]):
        r = ctr("run", *mode, *args)
        assert_error(r, code, fragment)
        assert instances(ctr) == []


def test_duplicate_name(ctr):
    ctr("create", "--name", "dup", "busybox", "true", check=True)
    assert_error(ctr("create", "--name", "dup", "busybox", "true"), 125, "already in use")
    assert_error(ctr("run", "--name", "dup", "busybox", "true"), 125, "already in use")
    assert instances(ctr) == ["dup"]


def test_rm_running_without_force(ctr):
    ctr("run", "-d", "--name", "busy", "busybox", "sleep", "30", check=True)
    assert_error(ctr("rm", "busy"), 125, "is running")
    assert ctr.state("busy")["status"] == "running"
    ctr("rm", "-f", "busy", check=True)
    assert instances(ctr) == []


def test_start_running(ctr):
    ctr("run", "-d", "--name", "up", "busybox", "sleep", "30", check=True)
    assert_error(ctr("start", "up"), 125, "already running")
    assert_error(ctr("start", "-a", "up"), 125, "already running")
    ctr("rm", "-f", "up", check=True)


def test_exec_into_stopped_or_created(ctr):
    ctr("create", "--name", "idle", "busybox", "true", check=True)
    assert_error(ctr("exec", "idle", "true"), 125, "is not running")
    ctr("start", "-a", "idle", check=True)
    assert_error(ctr("exec", "idle", "true"), 125, "is not running")
    assert_error(ctr("kill", "idle"), 125, "is not running")


def test_exec_errors(ctr):
    ctr("run", "-d", "--name", "ex", "busybox", "sleep", "30", check=True)
    assert_error(ctr("exec", "ex", "nosuch"), 127, "not found")
    assert_error(ctr("exec", "-u", "ghost", "ex", "true"), 125, "unable to find user ghost")
    assert_error(ctr("exec", "-w", "rel", "ex", "true"), 125, "absolute path")
    assert_error(ctr("exec", "-w", "/etc/passwd", "ex", "true"), 125, "working directory")
    ctr("rm", "-f", "ex", check=True)


def test_unknown_instance(ctr):
    for verb in (["start"], ["stop"], ["kill"], ["rm"], ["inspect"], ["logs"], ["exec"]):
        args = [*verb, "ghost"] + (["true"] if verb == ["exec"] else [])
        assert_error(ctr(*args), 125, "no such instance: ghost")


def test_bad_signal(ctr):
    ctr("run", "-d", "--name", "s", "busybox", "sleep", "30", check=True)
    assert_error(ctr("kill", "-s", "NOPE", "s"), 125, "invalid signal")
    assert_error(ctr("kill", "-s", "99", "s"), 125, "invalid signal")
    ctr("rm", "-f", "s", check=True)


def test_state_root_not_writable(ctr, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for root in (str(blocker / "root"), "/proc/ctr-root"):
        r = ctr("--root", root, "run", "--rm", "busybox", "true")
        assert_error(r, 125, "state root", "is not usable")
    # root ignores file modes: a read-only filesystem is what refuses root
    r = ctr("--root", "/sys/ctr-root", "create", "busybox", "true")
    assert_error(r, 125, "is not usable")


def test_corrupt_state(ctr):
    ctr("create", "--name", "bad", "busybox", "true", check=True)
    ctr("create", "--name", "good", "busybox", "true", check=True)
    with open(ctr.path("instances", "bad", "state.json"), "w") as f:
        f.write("{not json")
    assert_error(ctr("inspect", "bad"), 125, "state of bad is corrupt")
    assert_error(ctr("start", "bad"), 125, "corrupt")
    # ls still lists everything, saying which record is broken
    rows = {r["name"]: r for r in json.loads(ctr("ls", "-a", "--format", "json").stdout)}
    assert rows["bad"]["status"] == "corrupt"
    assert rows["good"]["status"] == "created"
    assert "corrupt" in ctr("ls", "-a").stdout
    # and rm cleans it fully
    ctr("rm", "bad", check=True)
    assert instances(ctr) == ["good"]


def test_corrupt_spec(ctr):
    ctr("create", "--name", "bad", "busybox", "true", check=True)
    with open(ctr.path("instances", "bad", "spec.json"), "w") as f:
        f.write('{"name": 1}')
    assert_error(ctr("start", "bad"), 125, "spec of bad is corrupt")
    ctr("rm", "bad", check=True)
    assert instances(ctr) == []


def test_image_missing_for_an_existing_instance(ctr):
    ctr("create", "--name", "orphan", "busybox", "true", check=True)
    assert_error(ctr("image", "rm", "busybox"), 125, "used by", "orphan")
    ctr("rm", "orphan", check=True)
    ctr("image", "rm", "busybox", check=True)
