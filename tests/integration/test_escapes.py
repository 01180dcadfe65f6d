"""Escape attempts: each must fail inside a default container, and the
legitimate way to allow it (a capability, --privileged, an unconfined seccomp)
must work, which shows the attempt itself was real. The syscalls busybox has no
applet for are made by escapes/probe.c, built static and bound in read-only."""

import json
import os
import signal
import subprocess

import pytest
from helpers import assert_refused, compile_static

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return compile_static(os.path.join(HERE, "escapes", "probe.c"),
                          str(tmp_path_factory.mktemp("probe") / "probe"))


def sh(ctr, *opts, script, probe=None):
    bind = ("-v", f"{probe}:/probe:ro") if probe else ()
    return ctr("run", "--rm", "--network", "none", *bind, *opts, "busybox", "sh", "-c", script)


def lines(r):
    return (r.stdout + r.stderr).strip().splitlines()


def test_kernel_modules_cannot_be_loaded(ctr):
    script = "head -c 256 /dev/urandom > /m.ko; insmod /m.ko"
    r = sh(ctr, script=script)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
    # with the capability the kernel gets as far as reading the (garbage) module
    r = sh(ctr, "--cap-add", "SYS_MODULE", script=script)
    assert r.returncode != 0 and "Operation not permitted" not in r.stderr, r.stderr


def test_reboot_reaches_only_the_container(ctr):
    r = sh(ctr, script="reboot -f; echo still here")
    assert "still here" in r.stdout, r.stderr
    # CAP_SYS_BOOT in a pid namespace: reboot ends the container's init, not the host
    r = sh(ctr, "--cap-add", "SYS_BOOT", script="reboot -f; sleep 5; echo still here")
    assert r.returncode == 128 + signal.SIGHUP and "still here" not in r.stdout


def host_disk():
    for name in sorted(os.listdir("/sys/block")):
        with open(f"/sys/block/{name}/size") as f:
            if int(f.read()) > 0 and not name.startswith(("loop", "ram", "zram")):
                with open(f"/sys/block/{name}/dev") as f:
                    return name, f.read().strip()
    pytest.fail("no block device on this host")


def test_a_block_device_node_does_not_open_the_host_disk(ctr):
    _, dev = host_disk()
    major, minor = dev.split(":")
    r = sh(ctr, script=f"mknod /disk b {major} {minor} && echo made; "
           "mknod /loop b 7 0 && dd if=/loop of=/dev/null count=1 2>&1 | head -1; "
           "head -c 512 /disk | wc -c")
    # CAP_MKNOD makes the nodes (as in docker); the devices cgroup refuses to open them
    assert r.stdout.splitlines()[0] == "made", r.stderr
    assert "Operation not permitted" in r.stdout.splitlines()[1]
    assert r.stdout.splitlines()[2] == "0" and "Operation not permitted" in r.stderr
    # --privileged opens them (the disk itself may be closed to the host too,
    # as in a sandboxed CI VM: the loop device shows it)
    r = sh(ctr, "--privileged", script="dd if=/dev/loop0 of=/dev/null count=1")
    assert r.returncode == 0, r.stderr
    # the devices ctr made itself still work
    r = sh(ctr, script="head -c 4 /dev/urandom | wc -c; echo > /dev/null && echo ok")
    assert r.stdout.split() == ["4", "ok"]


def test_kcore_and_the_keyring(ctr, probe):
    r = sh(ctr, probe=probe, script="head -c 1 /proc/kcore | wc -c; wc -c < /proc/keys; "
           "/probe keyctl")
    assert r.stdout.split()[:2] == ["0", "0"]  # absent (or masked), masked
    assert r.stdout.splitlines()[-1] == "Operation not permitted"
    r = sh(ctr, "--security-opt", "seccomp=unconfined", probe=probe, script="/probe keyctl")
    assert r.stdout.strip() == "ok"


def test_proc_sys_and_sys_cannot_be_written(ctr):
    r = sh(ctr, script="v=$(cat /proc/sys/kernel/printk_ratelimit) && echo read; "
           "echo $v > /proc/sys/kernel/printk_ratelimit; "
           "echo > /sys/kernel/uevent_helper")
    assert r.stdout.strip() == "read"
    assert r.stderr.count("Read-only file system") == 2, r.stderr


def test_host_processes_are_out_of_reach(ctr, probe):
    host = subprocess.Popen(["sleep", "300"])
    try:
        r = sh(ctr, probe=probe, script=f"/probe ptrace {host.pid}; kill -9 {host.pid}")
        # ptrace is refused outright (seccomp); the pid is not in its namespace
        assert lines(r)[0] == "Operation not permitted" and "No such process" in lines(r)[1]
        r = sh(ctr, "--cap-add", "SYS_PTRACE", probe=probe,
               script=f"/probe ptrace {host.pid}")
        assert r.stdout.strip() == "No such process"
        assert host.poll() is None
        # its own processes: ptrace needs CAP_SYS_PTRACE (seccomp and capability)
        script = "sleep 30 & /probe ptrace $!; kill $!"
        assert sh(ctr, probe=probe, script=script).stdout.strip() == "Operation not permitted"
        assert sh(ctr, "--cap-add", "SYS_PTRACE", probe=probe,
                  script=script).stdout.strip() == "ok"
    finally:
        host.kill()
        host.wait()


def test_open_by_handle_at_shocker(ctr, probe, tmp_path):
    """A bind mount's filesystem is the host's: a guessed handle (inode 2, the
    root) would open the host's / from inside."""
    vol = tmp_path / "vol"
    vol.mkdir()
    r = sh(ctr, "-v", f"{vol}:/vol", probe=probe, script="/probe shocker /vol")
    assert r.stdout.strip() == "Operation not permitted"
    r = sh(ctr, "-v", f"{vol}:/vol", "--cap-add", "DAC_READ_SEARCH", probe=probe,
           script="/probe shocker /vol")
    assert r.stdout.strip() == "ok"  # which is why the default withholds it


def test_no_new_user_namespace_to_regain_capabilities(ctr, probe):
    r = sh(ctr, probe=probe, script="/probe userns; unshare -U -r id -u")
    assert lines(r)[0] == "Operation not permitted" and r.returncode != 0
    r = sh(ctr, "--cap-add", "SYS_ADMIN", probe=probe, script="/probe userns")
    assert r.stdout.strip() == "ok"


def test_a_symlink_in_a_bind_mount_resolves_inside_the_container(ctr, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    os.symlink("/etc", vol / "etc")
    r = sh(ctr, "-v", f"{vol}:/vol", "--hostname", "inside", script="cat /vol/etc/hostname")
    assert r.stdout.strip() == "inside"


def test_seccomp_profile_from_a_file(ctr, tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    r = sh(ctr, "--security-opt", f"seccomp={profile}",
           script="grep Seccomp: /proc/self/status; mkdir /d")
    assert r.stdout.split() == ["Seccomp:", "2"] and "Permission denied" in r.stderr
    r = sh(ctr, "--security-opt", "seccomp=unconfined", script="grep Seccomp: /proc/self/status")
    assert r.stdout.split() == ["Seccomp:", "0"]
    r = sh(ctr, "--privileged", script="grep Seccomp: /proc/self/status")
    assert r.stdout.split() == ["Seccomp:", "0"]


def test_no_new_privileges_can_be_turned_off(ctr):
    script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"
    r = sh(ctr, "--security-opt", "no-new-privileges", script=script)
    assert r.stdout.split() == ["NoNewPrivs:", "1", "Seccomp:", "2"]
    r = sh(ctr, "--security-opt", "no-new-privileges=false", script=script)
    assert r.stdout.split() == ["NoNewPrivs:", "0", "Seccomp:", "2"]  # still filtered


def test_ulimits_for_the_command_and_exec(ctr):
    r = ctr("run", "-d", "--name", "lim", "--network", "none", "--ulimit", "nofile=100:200",
            "--ulimit", "core=0", "busybox", "sleep", "30")
    assert r.returncode == 0, r.stderr
    for cmd in (["cat", "/proc/1/limits"], ["cat", "/proc/self/limits"]):
        out = ctr("exec", "lim", *cmd).stdout
        row = {line[:26].strip(): line[26:].split()[:2] for line in out.splitlines()[1:]}
        assert row["Max open files"] == ["100", "200"]
        assert row["Max core file size"] == ["0", "0"]


@pytest.mark.parametrize("opts, message", [
    (("--security-opt", "apparmor=x"), "invalid --security-opt 'apparmor=x'"),
    (("--security-opt", "seccomp=/nonexistent.json"), "No such file or directory"),
    (("--security-opt", "no-new-privileges=maybe"), "invalid --security-opt"),
    (("--ulimit", "nofile"), "expected NAME=SOFT[:HARD]"),
    (("--ulimit", "files=1"), "unknown limit 'files'"),
    (("--ulimit", "nofile=20:10"), "soft limit is above the hard one"),
    (("--vm", "--ulimit", "nofile=10"), "for containers, not VMs"),
])
def test_bad_hardening_options(ctr, opts, message):
    assert_refused(ctr, ctr("run", "--rm", *opts, "busybox", "true"), message)


@pytest.mark.parametrize("profile, message", [
    ("{", "is not JSON"),
    ('{"defaultAction": "SCMP_ACT_MAYBE"}', "unknown action 'SCMP_ACT_MAYBE'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}',
     "syscalls[0] names no system call"),
])
def test_bad_seccomp_profiles(ctr, tmp_path, profile, message):
    path = tmp_path / "bad.json"
    path.write_text(profile)
    r = ctr("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "true")
    assert_refused(ctr, r, message)


def test_proc_self_exe_is_never_the_host_runtime(ctr):
    """CVE-2019-5736: a command "#!/proc/self/exe" (or /proc/self/exe itself)
    makes the kernel run whatever the exec'ing process is. ctr's is a copy of
    its exec stub in a sealed memfd, never the host's Python, so a process in
    the container cannot reach a host binary through /proc/PID/exe."""
    ctr("run", "-d", "--name", "cve", "--network", "none", "busybox", "sleep", "60", check=True)
    upper = ctr.inspect("cve")["paths"]["upper"]
    evil = os.path.join(upper, "evil")
    with open(evil, "w") as f:
        f.write("#!/proc/self/exe\n")
    os.chmod(evil, 0o755)
    for cmd in (("exec", "cve", "/evil"), ("exec", "cve", "/proc/self/exe"),
                ("run", "--rm", "--network", "none", "busybox", "/proc/self/exe")):
        r = ctr(*cmd)
        assert r.returncode == 126 and "ctr-exec: ctr's exec stub" in r.stderr, r.stderr
        assert "Python" not in r.stderr


def test_ctr_exec_never_shows_the_host_runtime_to_the_container(ctr, probe):
    """While `ctr exec` sets a process up inside the container (it is the host's
    Python until it execs), a process of the container scanning /proc must not
    be able to open its /proc/PID/exe: the process is non-dumpable. (Without
    that, this test sees the host's python3.11 open.)"""
    ctr("run", "-d", "--name", "watch", "--network", "none", "-v", f"{probe}:/probe:ro",
        "busybox", "sleep", "60", check=True)
    watcher = ctr.popen("exec", "watch", "/probe", "exe-watch", "4")
    for _ in range(12):
        ctr("exec", "watch", "true", check=True)
    out, _ = watcher.communicate(timeout=30)
    assert out.splitlines()[-1].startswith("denied ")
    # the sealed stub (between the exec of the stub and the command's) is fine
    opened = [line for line in out.splitlines() if line.startswith("opened")
              and not line.startswith("opened /memfd:ctr-exec")]
    assert not opened, out


def test_the_exec_stub_cannot_be_written():
    from ctr.native import sealed_exec_stub

    fd = sealed_exec_stub()
    try:
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"\0", 0)
        # nor through a new open of it, as /proc/PID/exe would give
        rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        try:
            with pytest.raises(PermissionError):
                os.pwrite(rw, b"\0", 0)
        finally:
            os.close(rw)
    finally:
        os.close(fd)
