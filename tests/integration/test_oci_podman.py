"""podman (the distribution's 4.3, with conmon) driving ctr-oci by absolute path:
run --rm and exit codes, -d + exec + stop + rm, -t on a terminal, pause and
unpause, limits enforced, a failing command's error shown. podman keeps all
its state in folders of this module's own (--root, --runroot, --tmpdir,
cgroupfs, file events), so the host's podman state is never touched."""

import json
import os
import shlex
import shutil
import subprocess
import tempfile

import pytest
from oci_helpers import OCI, make_rootfs, mounts_of, remove_cgroup_tree

pytestmark = pytest.mark.skipif(shutil.which("podman") is None,
                                reason="podman is not installed (make dev installs it)")

ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")
STATE_ROOT = "/run/ctr-oci"  # podman calls the runtime with no --root
# What podman makes on the host whatever its options say (its blob-info cache is
# always root's /var/lib/containers/cache), and ctr-oci's default state root,
# deepest first: each is removed after the tests if they made it and it is then
# empty (another session may use podman or skopeo meanwhile: never more).
HOST_PATHS = ("/var/lib/containers/cache/blob-info-cache-v1.boltdb",
              "/var/lib/containers/cache", "/var/lib/containers",
              "/run/containers/networks", "/run/containers", STATE_ROOT)


class Podman:
    def __init__(self, base):
        self.base = base
        self.argv = ["podman", "--root", f"{base}/root", "--runroot", f"{base}/run",
                     "--tmpdir", f"{base}/tmp", "--network-config-dir", f"{base}/net",
                     "--storage-driver", "vfs",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                     "--runtime", OCI]

    def __call__(self, *args, timeout=120, check=False):
        # conmon writes an `oom` file into its working directory: podman's own here
        r = subprocess.run([*self.argv, *args], capture_output=True, text=True,
                           timeout=timeout, cwd=self.base)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {r.returncode}: {r.stderr}")
        return r

    def run(self, *args, **kw):
        return self("run", "--network", "none", *ULIMITS, *args, **kw)


@pytest.fixture(scope="module")
def podman():
    # Not under pytest's folders (0700): a user namespace's root (a host nobody)
    # must walk to its root filesystem (--uidmap).
    base = tempfile.mkdtemp(prefix="ctr-oci-podman-")
    os.chmod(base, 0o711)
    had_libpod_parent = os.path.isdir("/sys/fs/cgroup/memory/libpod_parent")
    had = {p for p in HOST_PATHS if os.path.exists(p)}
    rootfs = make_rootfs(os.path.join(base, "rootfs"))
    subprocess.run(["tar", "-C", rootfs, "-cf", f"{base}/bb.tar", "."], check=True)
    p = Podman(base)
    p("import", f"{base}/bb.tar", "localhost/ctr-oci-bb", check=True)
    yield p
    p("rm", "--all", "--force", "--time", "0")
    p("rmi", "--all", "--force")
    left = mounts_of(base)
    if not had_libpod_parent:
        remove_cgroup_tree("libpod_parent")  # podman's own (conmon's cgroup)
    shutil.rmtree(base, ignore_errors=True)
    if STATE_ROOT not in had and os.path.isdir(STATE_ROOT):
        left += [f"{STATE_ROOT}/{c}" for c in os.listdir(STATE_ROOT)]
    for path in HOST_PATHS:
        if path not in had:
            try:
                (os.unlink if path.endswith(".boltdb") else os.rmdir)(path)
            except OSError:
                pass
    assert not left, f"podman's containers left mounts: {left}"


IMAGE = "localhost/ctr-oci-bb"


def test_run_rm_output_and_exit_codes(podman):
    r = podman.run("--rm", IMAGE, "sh", "-c", "echo hello; echo err >&2; exit 4")
    assert r.returncode == 4, r.stderr
    assert r.stdout == "hello\n" and "err" in r.stderr
    assert podman.run("--rm", IMAGE, "true").returncode == 0
    assert podman("ps", "-aq", check=True).stdout == ""


def test_a_failing_command_s_error_is_shown(podman):
    r = podman.run("--rm", IMAGE, "no-such-command")
    assert r.returncode == 127
    assert "no-such-command: executable file not found" in r.stderr, r.stderr
    assert podman("ps", "-aq", check=True).stdout == ""


def test_detached_exec_stop_rm(podman):
    cid = podman.run("-d", IMAGE, "sh", "-c", "trap 'exit 0' TERM; sleep 100 & wait",
                     check=True).stdout.strip()
    assert os.path.isdir(f"{STATE_ROOT}/{cid}")
    r = podman("exec", cid, "sh", "-c", "echo in $(hostname); exit 5")
    assert r.returncode == 5 and r.stdout == f"in {cid[:12]}\n", r
    r = podman("exec", "-e", "X=1", "-u", "65534", "-w", "/tmp", cid, "sh", "-c",
               "echo $X $(id -u) $(pwd)")
    assert r.stdout == "1 65534 /tmp\n", r
    inspect = json.loads(podman("inspect", cid, check=True).stdout)[0]
    assert inspect["State"]["Status"] == "running"
    podman("stop", "-t", "5", cid, check=True)
    inspect = json.loads(podman("inspect", cid, check=True).stdout)[0]
    assert inspect["State"]["Status"] == "exited" and inspect["State"]["ExitCode"] == 0
    podman("rm", cid, check=True)
    assert not os.path.exists(f"{STATE_ROOT}/{cid}")
    assert not [d for d in os.listdir("/sys/fs/cgroup/memory/libpod_parent")
                if cid in d] if os.path.isdir("/sys/fs/cgroup/memory/libpod_parent") else True


def test_terminal_under_script(podman):
    cmd = shlex.join([*podman.argv, "run", "--rm", "-t", "--network", "none", *ULIMITS, IMAGE,
                      "sh", "-c", "tty; echo $TERM; exit 3"])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       timeout=120, cwd=podman.base)
    assert r.returncode == 3, r
    assert "/dev/pts/0" in r.stdout and "xterm" in r.stdout, r.stdout


def test_exec_with_a_terminal(podman):
    cid = podman.run("-d", IMAGE, "sleep", "100", check=True).stdout.strip()
    cmd = shlex.join([*podman.argv, "exec", "-t", cid, "sh", "-c", "tty; exit 2"])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       timeout=120, cwd=podman.base)
    assert r.returncode == 2 and "/dev/pts/" in r.stdout, r
    podman("rm", "-f", "-t", "0", cid, check=True)


def test_pause_unpause(podman):
    cid = podman.run("-d", IMAGE, "sleep", "100", check=True).stdout.strip()
    podman("pause", cid, check=True)
    assert json.loads(podman("inspect", cid, check=True).stdout)[0]["State"]["Status"] == \
        "paused"
    podman("unpause", cid, check=True)
    assert json.loads(podman("inspect", cid, check=True).stdout)[0]["State"]["Status"] == \
        "running"
    podman("rm", "-f", "-t", "0", cid, check=True)
    assert not os.path.exists(f"{STATE_ROOT}/{cid}")


def test_pids_limit_is_enforced(podman):
    r = podman.run("--rm", "--pids-limit", "10", IMAGE, "sh", "-c",
                   "for i in $(seq 20); do sleep 5 & done; echo done")
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr, r


def test_memory_limit_is_enforced(podman):
    r = podman.run("--rm", "--memory", "16m", "--memory-swap", "16m", IMAGE, "sh", "-c",
                   "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived")
    assert r.returncode == 137 and "survived" not in r.stdout, r
    r = podman.run("--rm", "--memory", "32m", IMAGE, "sh", "-c", "echo fits")
    assert r.returncode == 0 and r.stdout == "fits\n", r


def test_devices_and_block_io_reach_the_container(podman):
    r = podman.run("--rm", "--device", "/dev/null:/dev/xnull", IMAGE, "sh", "-c",
                   "ls -l /dev/xnull; echo x > /dev/xnull && echo wrote")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "crw-rw-rw-" and r.stdout.split()[4:6] == ["1,", "3"]
    assert r.stdout.split()[-1] == "wrote"
    disk = next((d for d in ("/dev/vda", "/dev/sda", "/dev/nvme0n1") if os.path.exists(d)),
                None)
    if disk is not None and os.path.isdir("/sys/fs/cgroup/blkio"):
        st = os.stat(disk)
        r = podman.run("--rm", "--device-read-bps", f"{disk}:1mb", "--device-write-iops",
                       f"{disk}:50", IMAGE, "cat",
                       "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device",
                       "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device")
        devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        assert r.returncode == 0 and r.stdout.split() == [devno, str(1 << 20), devno, "50"], r
    # (--blkio-weight: podman itself discards it on a kernel without blkio.weight,
    # as here; ctr-oci's error for that case is in test_oci_linux)
    assert podman("ps", "-aq", check=True).stdout == ""


def test_podman_hooks_dir_hooks_run(podman, tmp_path):
    """An OCI hook podman adds to config.json from --hooks-dir (its hooks format
    1.0.0) runs in the stage it names, with the container's state on stdin."""
    out = tmp_path / "prestart.json"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ncat > {out}\n")
    hook.chmod(0o755)
    hooks_dir = tmp_path / "hooks.d"
    hooks_dir.mkdir()
    (hooks_dir / "ctr-test.json").write_text(json.dumps({
        "version": "1.0.0", "hook": {"path": str(hook)}, "when": {"always": True},
        "stages": ["prestart"]}))
    r = podman("--hooks-dir", str(hooks_dir), "run", "--rm", "--network", "none", *ULIMITS,
               IMAGE, "true")
    assert r.returncode == 0, r.stderr
    state = json.loads(out.read_text())
    assert state["status"] == "creating" and state["pid"] > 0 and state["id"]


def test_uidmap_runs_in_a_user_namespace(podman):
    r = podman.run("--rm", "--uidmap", "0:300000:65536", "--gidmap", "0:300000:65536", IMAGE,
                   "sh", "-c", "id -u; cat /proc/self/uid_map", check=True)
    assert r.stdout.split() == ["0", "0", "300000", "65536"]
