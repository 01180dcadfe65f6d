"""A container is isolated the way a user would check it, from inside."""

import os
import socket
import subprocess

DOCKER_DEFAULT_CAPS = "00000000a80425fb"


def sh(ctr, script, *opts):
    return ctr("run", "--rm", *opts, "busybox", "sh", "-c", script)


def test_echo_hello(ctr):
    r = ctr("run", "--rm", "busybox", "--", "echo", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello\n", "")


def test_command_is_pid_1_and_sees_only_its_own_processes(ctr):
    r = sh(ctr, "echo $$; ps -o pid,comm > /tmp/ps; tail -n +2 /tmp/ps")
    lines = r.stdout.splitlines()
    assert lines[0] == "1"
    assert {tuple(line.split()) for line in lines[1:]} <= {("1", "sh"), ("2", "ps")}


def test_hostname_is_separate(ctr):
    r = sh(ctr, "hostname")
    assert r.stdout.strip() != socket.gethostname()
    assert len(r.stdout.strip()) == 12
    r = ctr("run", "--rm", "--hostname", "box1", "busybox", "hostname")
    assert r.stdout == "box1\n"
    assert socket.gethostname() != "box1"


def test_ipc_is_separate(ctr):
    shm = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True)
    shmid = shm.stdout.split()[-1]
    try:
        r = sh(ctr, "ipcs -m | tail -n +4 | grep -c . || true")
        assert r.stdout.strip() == "0", r.stdout
        # and what the container makes does not reach the host
        r = sh(ctr, "ipcmk -M 8192 >/dev/null 2>&1 || true; echo done")
        assert r.stdout == "done\n"
        host = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
        assert " 8192 " not in host
    finally:
        subprocess.run(["ipcrm", "-m", shmid], check=True)


def test_network_none_is_loopback_only(ctr):
    r = ctr("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert r.stdout.split() == ["lo"]


def test_writes_land_in_the_upper_dir_only(ctr):
    r = ctr("run", "--name", "w", "busybox", "sh", "-c",
            "echo data > /newfile; rm /bin/vi; echo ok")
    assert r.stdout == "ok\n"
    upper = ctr.path("instances", "w", "upper")
    image = ctr.path("images", "busybox", "rootfs")
    assert open(os.path.join(upper, "newfile")).read() == "data\n"
    assert os.stat(os.path.join(upper, "bin", "vi")).st_rdev == 0  # an overlay whiteout
    assert not os.path.exists(os.path.join(image, "newfile"))
    assert os.path.lexists(os.path.join(image, "bin", "vi"))  # the image is never modified
    assert ctr("rm", "w").returncode == 0
    assert not os.path.exists(ctr.path("instances", "w"))


def test_writes_survive_stop_and_start(ctr):
    ctr("create", "--name", "keep", "busybox", "sh", "-c",
        "cat /counter 2>/dev/null; echo x >> /counter", check=True)
    assert ctr("start", "-a", "keep").stdout == ""
    assert ctr("start", "-a", "keep").stdout == "x\n"
    assert ctr("start", "-a", "keep").stdout == "x\nx\n"


def test_masked_paths_read_empty(ctr):
    r = sh(ctr, "cat /proc/keys /proc/timer_list /proc/sched_debug 2>/dev/null | wc -c;"
                " ls /sys/firmware | wc -l")
    assert r.stdout.split() == ["0", "0"]


def test_readonly_paths(ctr):
    r = sh(ctr, "echo 1 > /proc/sys/kernel/panic_on_oops && echo wrote; "
                "echo h > /proc/sysrq-trigger && echo wrote; touch /sys/x && echo wrote; echo end")
    assert "wrote" not in r.stdout
    assert "Read-only file system" in r.stderr


def test_mounts(ctr):
    r = sh(ctr, "cat /proc/self/mounts")
    mounts = {line.split()[1]: line.split() for line in r.stdout.splitlines()}
    assert mounts["/"][2] == "overlay"
    assert mounts["/proc"][2] == "proc"
    assert mounts["/sys"][3].startswith("ro")
    assert mounts["/dev"][2] == "tmpfs"
    assert mounts["/dev/pts"][2] == "devpts"
    assert mounts["/dev/shm"][2] == "tmpfs"
    assert mounts["/proc/sys"][3].startswith("ro")
    # the host's root is detached: nothing of it is visible
    assert not any(m.startswith("/.old") or "/tmp/pytest" in m for m in mounts)


def test_dev_is_minimal(ctr):
    r = sh(ctr, "ls /dev | tr '\\n' ' '; echo; ls -l /dev/null")
    names = set(r.stdout.splitlines()[0].split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts",
            "shm", "fd", "stdin", "stdout", "stderr"} <= names
    assert not {"sda", "vda", "mem", "kmsg"} & names
    assert r.stdout.splitlines()[1].startswith("crw-rw-rw-")


def test_default_capabilities_and_no_new_privs(ctr):
    r = sh(ctr, "grep -E 'Cap(Eff|Prm|Bnd|Inh)|NoNewPrivs' /proc/self/status")
    status = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert status["CapEff"] == DOCKER_DEFAULT_CAPS
    assert status["CapPrm"] == DOCKER_DEFAULT_CAPS
    assert status["CapBnd"] == DOCKER_DEFAULT_CAPS
    assert status["CapInh"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"


def test_privileged_operations_are_refused(ctr):
    r = sh(ctr, "mount -t tmpfs x /mnt && echo mounted; hostname evil && echo renamed; echo end")
    assert "mounted" not in r.stdout and "renamed" not in r.stdout


def test_cgroup_namespace(ctr):
    r = sh(ctr, "cat /proc/self/cgroup")
    for line in r.stdout.splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls == "name=systemd":
            continue
        assert path == "/", line


def test_instance_cgroup_holds_the_process(ctr):
    ctr("run", "-d", "--name", "cg", "busybox", "sleep", "30", check=True)
    state = ctr.state("cg")
    mem = [p for p in state["cgroups"] if "/memory/" in p or p.startswith("/sys/fs/cgroup/ctr")]
    assert mem, state["cgroups"]
    with open(os.path.join(mem[0], "cgroup.procs")) as f:
        assert str(state["pid"]) in f.read().split()
    ctr("rm", "-f", "cg", check=True)
    assert not any(os.path.exists(p) for p in state["cgroups"])
