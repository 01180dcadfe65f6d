"""ctr-oci driven directly, as root against the real kernel: the lifecycle and
its rules, the create/start split, pid files, the console socket, exec, the
errors callers match, bad configs, and nothing left after delete."""

import json
import os
import socket
import subprocess
import time

import pytest
from helpers import processes, wait_for
from oci_helpers import (
    CGROUP_PARENT,
    cgroup_dirs,
    make_bundle,
    make_rootfs,
    mounts_of,
    oci,
    remove_cgroup_tree,
)


class Env:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.root = str(tmp_path / "state")
        self.rootfs = make_rootfs(str(tmp_path / "rootfs"))

    def bundle(self, cid, *args, **changes):
        return make_bundle(str(self.tmp / f"bundle-{cid}"), self.rootfs, args, cid, **changes)

    def __call__(self, *args, **kw):
        return oci(*args, root=self.root, **kw)

    def state(self, cid):
        return json.loads(self("state", cid, check=True).stdout)

    def leftovers(self):
        left = mounts_of(str(self.tmp))
        for top in cgroup_dirs(CGROUP_PARENT):
            left += [os.path.join(top, d) for d in os.listdir(top)
                     if os.path.isdir(os.path.join(top, d))]
        if os.path.isdir(self.root):
            left += os.listdir(self.root)
        left += processes(str(self.tmp))
        return left


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    if os.path.isdir(e.root):
        for cid in os.listdir(e.root):
            e("delete", "--force", cid)
    left = e.leftovers()
    remove_cgroup_tree(CGROUP_PARENT)
    assert not left, f"the test left things behind: {left}"


def _error(r, message):
    assert r.returncode == 1, r
    assert r.stderr.startswith("ctr-oci: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_run_prints_and_exits_with_the_commands_status(env):
    b = env.bundle("r1", "sh", "-c", "echo hello from $(hostname); echo oops >&2; exit 3",
                   hostname="box")
    r = env("run", "--bundle", b, "r1")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "hello from box\n" and r.stderr == "oops\n"
    assert env.leftovers() == []


def test_create_waits_until_start_then_the_command_runs(env, tmp_path):
    b = env.bundle("c1", "sh", "-c", "echo started; sleep 100")
    out = tmp_path / "out"
    with open(out, "w") as f:
        r = env("create", "-b", b, "--pid-file", str(tmp_path / "pid"), "c1", stdout=f)
    assert r.returncode == 0, r.stderr
    pid_text = (tmp_path / "pid").read_text()
    assert pid_text.isdigit()  # digits only, no newline
    s = env.state("c1")
    assert s["status"] == "created" and s["pid"] == int(pid_text)
    assert s["bundle"] == b and s["rootfs"] == env.rootfs and s["id"] == "c1"
    assert set(s) >= {"ociVersion", "created", "annotations", "owner"}
    time.sleep(0.2)
    assert out.read_text() == ""  # waiting before the exec
    env("start", "c1", check=True)
    assert env.state("c1")["status"] == "running"
    assert wait_for(lambda: out.read_text() == "started\n")
    _error(env("start", "c1"), "only a created one")
    _error(env("delete", "c1"), "not stopped")
    env("kill", "c1", "KILL", check=True)
    assert wait_for(lambda: env.state("c1")["status"] == "stopped")
    _error(env("kill", "c1"), "container not running")
    env("delete", "c1", check=True)
    _error(env("state", "c1"), "container does not exist")
    assert env.leftovers() == []


def test_unknown_ids_and_delete_force(env):
    _error(env("state", "nope"), "container does not exist")
    _error(env("start", "nope"), "container does not exist")
    _error(env("kill", "nope"), "container does not exist")
    _error(env("delete", "nope"), "container does not exist")
    assert env("delete", "--force", "nope").returncode == 0


def test_delete_of_a_created_container_kills_it(env):
    b = env.bundle("c2", "sleep", "100")
    env("create", "--bundle=" + b, "c2", check=True)
    pid = env.state("c2")["pid"]
    env("delete", "c2", check=True)
    assert not os.path.exists(f"/proc/{pid}/cmdline") or wait_for(
        lambda: not os.path.exists(f"/proc/{pid}/cmdline"))


def test_the_process_s_groups_umask_and_oom_score(env):
    def edit(c):
        c["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [5, 7],
                                "umask": 0o027}
        c["process"]["oomScoreAdj"] = 321
    b = env.bundle("g1", "sh", "-c", "id -G; umask; cat /proc/self/oom_score_adj", edit=edit)
    r = env("run", "-b", b, "g1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["65534", "5", "7", "0027", "321"], r.stdout


def test_kill_all_reaches_processes_left_after_the_init_ended(env):
    # No pid namespace: the command's child outlives it in the cgroup.
    b = env.bundle("k1", "sh", "-c", "sleep 100 >/dev/null 2>&1 & echo $! > /tmp/child",
                   edit=lambda c: (c.pop("hostname"),
                                   c["linux"].update(namespaces=[{"type": "mount"}])))
    env("run", "--keep", "-b", b, "k1", check=True)
    child = int(open(os.path.join(env.rootfs, "tmp", "child")).read())
    assert os.path.exists(f"/proc/{child}")
    assert env.state("k1")["status"] == "stopped"
    env("kill", "--all", "k1", "SIGKILL", check=True)
    assert wait_for(lambda: not os.path.exists(f"/proc/{child}/cmdline"))
    env("delete", "k1", check=True)


def test_a_pods_containers_share_namespaces_given_by_path(env):
    env("run", "-d", "-b", env.bundle("pod", "sleep", "100", hostname="podhost"), "pod",
        check=True)
    pid = env.state("pod")["pid"]
    shared = [{"type": t, "path": f"/proc/{pid}/ns/{n}"}
              for t, n in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"), ("pid", "pid"))]
    b = env.bundle("member", "sh", "-c", "hostname; cat /proc/1/cmdline; echo",
                   edit=lambda c: (c.pop("hostname"), c["linux"].update(
                       namespaces=[{"type": "mount"}, *shared])))
    r = env("run", "-b", b, "member")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["podhost", "sleep\x00100\x00"], r.stdout
    for ns in ("net", "ipc", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    env("delete", "-f", "pod", check=True)


def test_pause_resume_ps(env):
    b = env.bundle("p1", "sleep", "100")
    env("run", "-d", "-b", b, "p1", check=True)
    pid = env.state("p1")["pid"]
    assert json.loads(env("ps", "--format", "json", "p1", check=True).stdout) == [pid]
    env("pause", "p1", check=True)
    assert env.state("p1")["status"] == "paused"
    _error(env("pause", "p1"), "container not running")
    listed = json.loads(env("list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["status"]) for c in listed] == [("p1", "paused")]
    env("resume", "p1", check=True)
    assert env.state("p1")["status"] == "running"
    ev = json.loads(env("events", "--stats", "p1", check=True).stdout)
    assert ev["type"] == "stats" and ev["id"] == "p1" and ev["data"]["pids"]["current"] == 1
    _error(env("events", "--interval", "0", "p1"), "invalid interval")
    env("delete", "-f", "p1", check=True)


def test_exec_foreground_detached_and_from_a_process_file(env, tmp_path):
    b = env.bundle("e1", "sleep", "100")
    env("run", "--detach", "-b", b, "e1", check=True)
    r = env("exec", "e1", "sh", "-c", "echo $FOO; id -u; exit 6", )
    assert r.returncode == 6 and r.stdout == "\n0\n", r
    r = env("exec", "-e", "FOO=bar", "--user", "65534:65534", "--cwd", "/tmp", "e1",
            "sh", "-c", "echo $FOO $(id -u) $(pwd)")
    assert r.stdout == "bar 65534 /tmp\n", r
    proc = {"args": ["sleep", "50"], "env": ["PATH=/bin"], "cwd": "/", "terminal": False,
            "user": {"uid": 0, "gid": 0}}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    env("exec", "--process", str(tmp_path / "p.json"), "--detach", "--pid-file",
        str(tmp_path / "epid"), "e1", check=True)
    epid = int((tmp_path / "epid").read_text())
    assert open(f"/proc/{epid}/cmdline").read().startswith("sleep")  # outlived exec -d
    assert epid in json.loads(env("ps", "-f", "json", "e1", check=True).stdout)
    _error(env("exec", "e1", "no-such-command"), "executable file not found")
    env("delete", "--force", "e1", check=True)
    _error(env("exec", "e1", "true"), "container does not exist")


def _console_server(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return s


def test_terminal_goes_to_the_console_socket(env, tmp_path):
    b = env.bundle("t1", "sh", "-c", "tty; sleep 100",
                   edit=lambda c: c["process"].update(terminal=True))
    sock_path = str(tmp_path / "console.sock")
    server = _console_server(sock_path)
    r = subprocess.Popen([*_oci_argv(env), "create", "-b", b, "--console-socket", sock_path,
                          "t1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    conn, _ = server.accept()
    data, fds, _, _ = socket.recv_fds(conn, 1024, 4)
    assert r.wait(30) == 0, r.stderr.read()
    assert data and len(fds) == 1
    env("start", "t1", check=True)
    master = fds[0]
    out = b""
    deadline = time.monotonic() + 10
    while b"/dev/pts/" not in out and time.monotonic() < deadline:
        out += os.read(master, 1024)
    assert b"/dev/pts/0" in out
    os.close(master)
    conn.close()
    server.close()
    env("delete", "-f", "t1", check=True)


def _oci_argv(env):
    from oci_helpers import OCI

    return [OCI, "--root", env.root]


def test_terminal_and_console_socket_go_together(env, tmp_path):
    b = env.bundle("t2", "true", edit=lambda c: c["process"].update(terminal=True))
    _error(env("create", "-b", b, "t2"), "give --console-socket")
    b = env.bundle("t3", "true")
    _error(env("create", "-b", b, "--console-socket", str(tmp_path / "s"), "t3"),
           "process.terminal is not set")
    assert env.leftovers() == []


def test_limits_are_in_the_cgroup(env):
    b = env.bundle("l1", "sleep", "100", edit=lambda c: c["linux"].update(resources={
        "memory": {"limit": 32 << 20}, "pids": {"limit": 7}}))
    env("run", "-d", "-b", b, "l1", check=True)
    mem = [d for d in cgroup_dirs(CGROUP_PARENT) if "/memory/" in d + "/"]
    pids = [d for d in cgroup_dirs(CGROUP_PARENT) if "/pids/" in d + "/"]
    if mem:
        assert open(os.path.join(mem[0], "l1", "memory.limit_in_bytes")).read().strip() == \
            str(32 << 20)
    if pids:
        assert open(os.path.join(pids[0], "l1", "pids.max")).read().strip() == "7"
    r = env("exec", "l1", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait")
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr, r
    r = env("update", "--resources", "-", "l1", input=json.dumps({"pids": {"limit": 50}}))
    assert r.returncode == 0, r.stderr
    if pids:
        assert open(os.path.join(pids[0], "l1", "pids.max")).read().strip() == "50"
    if mem:  # the memory limit stays
        assert open(os.path.join(mem[0], "l1", "memory.limit_in_bytes")).read().strip() == \
            str(32 << 20)
    _error(env("update", "--resources", "-", "l1", input='{"memory": {"limit": "x"}}'),
           "--resources: memory.limit")
    env("delete", "-f", "l1", check=True)
    _error(env("update", "--resources", "-", "l1", input="{}"), "container does not exist")


def test_bad_configs_leave_nothing_and_log_json(env, tmp_path):
    log = tmp_path / "log.json"
    b = env.bundle("b1", "true", edit=lambda c: c["process"]["capabilities"].update(
        bounding=["CAP_NOPE"]))
    r = env("--log", str(log), "--log-format", "json", "create", "-b", b, "b1")
    _error(r, "config.json: process.capabilities.bounding: unknown capability")
    line = json.loads(log.read_text())
    assert line["level"] == "error" and "CAP_NOPE" in line["msg"] and line["time"].endswith("Z")
    b = env.bundle("b2", "no-such-command")
    _error(env("create", "-b", b, "b2"), "executable file not found")
    b = env.bundle("b3", "true", edit=lambda c: c["mounts"].append(
        {"destination": "/x", "type": "bind", "source": "/no/such/dir"}))
    _error(env("create", "-b", b, "b3"), "does not exist")
    b = env.bundle("b4", "true", edit=lambda c: c["process"].update(cwd="relative"))
    _error(env("run", "-b", b, "b4"), "process.cwd")
    (tmp_path / "bundle-b5").mkdir()
    _error(env("create", "-b", str(tmp_path / "bundle-b5"), "b5"), "config.json")
    _error(env("create", "-b", b, "bad/id"), "invalid container id")
    _error(env("--systemd-cgroup", "create", "-b", b, "b6"), "systemd")
    b = env.bundle("b8", "true", edit=lambda c: c["linux"].update(devices=[
        {"path": "/dev/x", "type": "c", "major": 1}]))
    _error(env("create", "-b", b, "b8"), "config.json: linux.devices[0].minor")
    if os.path.isdir("/sys/fs/cgroup/memory"):  # v1/hybrid: refused once the cgroup exists
        b = env.bundle("b9", "true", edit=lambda c: c["linux"]["resources"].update(
            unified={"memory.high": "1000000"}))
        _error(env("create", "-b", b, "b9"), "linux.resources.unified: cgroup v2 files")
    _error(env("create", "--bogus", "b7"), "unrecognized arguments")
    assert env.leftovers() == []


def test_a_duplicate_id_is_refused_and_the_first_kept(env):
    b = env.bundle("d1", "sleep", "100")
    env("create", "-b", b, "d1", check=True)
    _error(env("create", "-b", b, "d1"), "already exists")
    assert env.state("d1")["status"] == "created"
    env("delete", "-f", "d1", check=True)


def test_a_mount_through_a_symlink_stays_in_the_root(env, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(env.rootfs, "escape"))
    b = env.bundle("h1", "sh", "-c", "ls -d /escape/x",
                   edit=lambda c: c["mounts"].append(
                       {"destination": "/escape/x", "type": "tmpfs", "source": "tmpfs"}))
    r = env("run", "-b", b, "h1")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(outside / "x")  # made inside the root, not on the host
    os.unlink(os.path.join(env.rootfs, "escape"))


def test_spec_features_version(env, tmp_path):
    env("spec", "-b", str(tmp_path), check=True)
    assert json.loads((tmp_path / "config.json").read_text())["root"]["path"] == "rootfs"
    _error(env("spec", "-b", str(tmp_path)), "exists")
    f = json.loads(env("features", check=True).stdout)
    assert f["ociVersionMax"] and f["linux"]["namespaces"]
    assert "ctr-oci version" in env("--version", check=True).stdout
