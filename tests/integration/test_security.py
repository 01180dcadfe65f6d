"""Capabilities, --privileged, --read-only, --tmpfs and -v, as a user checks
them: what fails inside the container by default, and that the legitimate
case still works when asked for."""

import os

import pytest
from helpers import assert_refused


def host_bounding_set():
    """What --privileged can give: every capability ctr itself may hold."""
    with open("/proc/self/status") as f:
        return next(line.split()[1] for line in f if line.startswith("CapBnd"))


def status_caps(ctr, *opts):
    r = ctr("run", "--rm", "--network", "none", *opts, "busybox", "grep", "^Cap",
            "/proc/self/status")
    assert r.returncode == 0, r.stderr
    return dict(line.split(":\t") for line in r.stdout.splitlines())


def sh(ctr, *opts, script):
    return ctr("run", "--rm", "--network", "none", *opts, "busybox", "sh", "-c", script)


def test_cap_drop_and_cap_add(ctr):
    assert status_caps(ctr, "--cap-drop", "ALL")["CapEff"] == "0000000000000000"
    caps = status_caps(ctr, "--cap-drop", "chown", "--cap-add", "CAP_SYS_ADMIN")
    eff = int(caps["CapEff"], 16)
    assert not eff & (1 << 0) and eff & (1 << 21)  # CHOWN gone, SYS_ADMIN there
    assert caps["CapBnd"] == caps["CapEff"]


def test_raw_sockets_need_net_raw(ctr):
    assert sh(ctr, script="ping -c1 -W1 127.0.0.1 >/dev/null").returncode == 0
    r = sh(ctr, "--cap-drop", "NET_RAW", script="ping -c1 -W1 127.0.0.1")
    assert r.returncode != 0 and "permission denied" in (r.stdout + r.stderr).lower()


def test_mount_needs_sys_admin(ctr):
    r = sh(ctr, script="mkdir -p /m && mount -t tmpfs none /m")
    assert r.returncode != 0 and "permission denied" in r.stderr.lower()
    r = sh(ctr, "--cap-add", "SYS_ADMIN",
           script="mkdir -p /m && mount -t tmpfs none /m && grep -c ' /m ' /proc/mounts")
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr


def test_privileged(ctr):
    assert status_caps(ctr, "--privileged")["CapEff"] == host_bounding_set()
    block = sorted(n for n in os.listdir("/dev")
                   if os.path.exists(f"/sys/class/block/{n}"))
    r = sh(ctr, "--privileged", script="grep ' /sys ' /proc/mounts; ls /dev; "
           "head -c 16 /proc/timer_list | wc -c")
    assert r.returncode == 0, r.stderr
    assert " rw," in r.stdout.splitlines()[0]
    assert set(block) <= set(r.stdout.split())  # the host's block devices
    assert r.stdout.split()[-1] == "16"  # not masked
    r = sh(ctr, script="grep ' /sys ' /proc/mounts; head -c 16 /proc/timer_list | wc -c; "
           f"ls /dev/{block[0] if block else 'vda'}")
    assert " ro," in r.stdout.splitlines()[0] and r.stdout.splitlines()[1] == "0"


def test_read_only_root_with_tmpfs_for_tmp_and_run(ctr):
    r = ctr("run", "--name", "ro", "--network", "none", "--read-only", "busybox", "sh", "-c",
            "touch /x 2>&1; touch /tmp/ok /run/ok && echo writable")
    assert r.returncode == 0, r.stderr
    assert "Read-only file system" in r.stdout and "writable" in r.stdout
    upper = ctr.inspect("ro")["paths"]["upper"]
    assert not os.path.exists(os.path.join(upper, "x"))


def test_tmpfs_options(ctr):
    r = sh(ctr, "--tmpfs", "/data:size=1m,noexec,mode=700", script=(
        "grep ' /data ' /proc/mounts; stat -c %a /data; "
        "dd if=/dev/zero of=/data/f bs=1k count=2048 2>&1 | tail -1"))
    assert r.returncode == 0, r.stderr
    mount, mode, dd = r.stdout.splitlines()[:3]
    assert "tmpfs" in mount and "noexec" in mount and "size=1024k" in mount
    assert mode == "700" and dd == "1024+0 records out"  # 1m, not the 2m asked


def test_volumes_rw_and_ro(ctr, tmp_path):
    host = tmp_path / "share"
    host.mkdir()
    (host / "in").write_text("from host\n")
    r = sh(ctr, "-v", f"{host}:/share", script="cat /share/in; echo back > /share/out")
    assert r.returncode == 0 and r.stdout == "from host\n", r.stderr
    assert (host / "out").read_text() == "back\n"
    r = sh(ctr, "-v", f"{host}:/share:ro", script="echo x > /share/out")
    assert r.returncode != 0 and "Read-only" in r.stderr
    assert (host / "out").read_text() == "back\n"
    single = tmp_path / "one.conf"
    single.write_text("k=v\n")
    r = sh(ctr, "-v", f"{single}:/etc/one.conf:ro", script="cat /etc/one.conf")
    assert r.stdout == "k=v\n"


def test_a_symlink_in_the_image_cannot_carry_a_volume_out(ctr, tmp_path):
    """The image (here the instance's upper dir) has /escape -> /<host dir>: the
    mount must land in the container's own /<host dir>, never on the host's."""
    host = tmp_path / "share"
    host.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    ctr("create", "--name", "esc", "--network", "none", "-v", f"{host}:/escape/sub",
        "busybox", "sh", "-c", "ls -d /escape/sub; readlink /escape", check=True)
    upper = ctr.inspect("esc")["paths"]["upper"]
    os.symlink(str(victim), os.path.join(upper, "escape"))
    r = ctr("start", "-a", "esc")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["/escape/sub", str(victim)]
    assert not os.listdir(victim)  # nothing made or mounted on the host's side
    # the mount point was made inside the container's root instead
    assert os.path.isdir(os.path.join(upper, str(victim).lstrip("/"), "sub"))


@pytest.mark.parametrize("opts, message", [
    (("--cap-add", "FLY"), "unknown capability FLY"),
    (("--cap-drop", "cap_"), "unknown capability"),
    (("-v", "relative/dir:/x"), "invalid characters for a local volume name"),
    (("-v", "/tmp:relative"), "must be an absolute path"),
    (("-v", "/nonexistent-ctr:/x"), "does not exist on the host"),
    (("-v", "/tmp:/"), "cannot mount over the root"),
    (("-v", "/tmp:/x:rx"), "unknown option 'rx'"),
    (("--tmpfs", "/t:exotic"), "unknown option 'exotic'"),
    (("--tmpfs", "t"), "expected an absolute PATH"),
    (("--vm", "--privileged"), "for containers, not VMs"),
])
def test_bad_security_options(ctr, opts, message):
    assert_refused(ctr, ctr("run", "--rm", *opts, "busybox", "true"), message)
