"""containerd 1.6 (the distribution's, started here with a private root, state,
sockets and config) runs ctr-oci through its runc shim: its own CLI
(/usr/bin/ctr, not ours) with --runc-binary, a rootfs of the test's, and a
runc root of the test's. The CRI plugin is off here (CRI is another slice)."""

import os
import shutil
import subprocess
import time

import pytest
from oci_helpers import CGROUP_PARENT, OCI, make_rootfs, mounts_of, remove_cgroup_tree

CTR_CLI = "/usr/bin/ctr"  # containerd's own CLI: the same name as ours
pytestmark = pytest.mark.skipif(not (shutil.which("containerd") and os.path.exists(CTR_CLI)),
                                reason="containerd is not installed (make dev installs it)")
# What containerd's client and shim make on the host whatever the config says:
# removed afterwards if the tests made them and they are empty.
HOST_DIRS = ("/run/containerd/s", "/run/containerd/fifo", "/run/containerd")


class Containerd:
    def __init__(self, base):
        self.base = base
        self.rootfs = make_rootfs(f"{base}/rootfs")

    def __call__(self, *args, timeout=60, check=False):
        r = subprocess.run([CTR_CLI, "--address", f"{self.base}/ctd.sock", *args],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} -> {r.returncode}: {r.stderr}")
        return r

    def run(self, cid, *args, detach=False, **kw):
        return self("run", *(["-d"] if detach else ["--rm"]), "--runc-binary", OCI,
                    "--runc-root", f"{self.base}/runc", "--fifo-dir", f"{self.base}/fifo",
                    "--cgroup", f"{CGROUP_PARENT}/{cid}", "--rootfs", self.rootfs, cid,
                    *args, **kw)


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("containerd"))
    had = {d for d in HOST_DIRS if os.path.exists(d)}
    with open(f"{base}/config.toml", "w") as f:
        f.write(f'''version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/ctd.sock"
[ttrpc]
  address = "{base}/ctd-ttrpc.sock"
''')
    log = open(f"{base}/containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", f"{base}/config.toml"], stdout=log,
                              stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not os.path.exists(f"{base}/ctd.sock") and time.monotonic() < deadline:
        time.sleep(0.05)
    c = Containerd(base)
    try:
        c("version", check=True)
        yield c
    finally:
        for line in c("task", "ls", "-q").stdout.split():
            c("task", "kill", "-s", "KILL", line)
            time.sleep(0.2)
            c("task", "delete", "-f", line)
        for line in c("container", "ls", "-q").stdout.split():
            c("container", "delete", line)
        daemon.terminate()
        daemon.wait(20)
        log.close()
        left = mounts_of(base)
        runc_root = f"{base}/runc/default"
        left += os.listdir(runc_root) if os.path.isdir(runc_root) else []
        remove_cgroup_tree(CGROUP_PARENT)
        shutil.rmtree(base, ignore_errors=True)
        for d in HOST_DIRS:
            if d not in had:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
    assert not left, f"containerd's containers left things: {left}"


def test_run_rm_output_and_exit_code(containerd):
    r = containerd.run("r1", "sh", "-c", "echo hi from $(hostname); exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.startswith("hi from ")
    assert containerd("container", "ls", "-q", check=True).stdout == ""


def test_task_exec_ps_pause_kill_delete(containerd):
    containerd.run("d1", "sleep", "100", detach=True, check=True)
    r = containerd("task", "exec", "--exec-id", "e1", "--fifo-dir",
                   f"{containerd.base}/fifo", "d1", "sh", "-c", "echo in exec; exit 4")
    assert r.returncode == 4 and r.stdout == "in exec\n", r
    ps = containerd("task", "ps", "d1", check=True).stdout.split("\n")
    assert len([line for line in ps[1:] if line.strip()]) == 1, ps
    containerd("task", "pause", "d1", check=True)
    assert "PAUSED" in containerd("task", "ls", check=True).stdout
    containerd("task", "resume", "d1", check=True)
    assert "RUNNING" in containerd("task", "ls", check=True).stdout
    containerd("task", "kill", "-s", "KILL", "d1", check=True)
    deadline = time.monotonic() + 10
    while "STOPPED" not in containerd("task", "ls").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    containerd("task", "delete", "d1", check=True)
    containerd("container", "delete", "d1", check=True)
    assert not os.listdir(f"{containerd.base}/runc/default")


def test_a_failing_command_is_an_error(containerd):
    r = containerd.run("f1", "no-such-command")
    assert r.returncode != 0
    assert "executable file not found" in r.stderr, r.stderr
    containerd("container", "delete", "f1")
