"""--userns=auto: the container's root is an unprivileged host uid from a block
of ctr's subordinate range, a block no other instance holds."""

import os

import pytest
from helpers import assert_refused


def host_ids(ctr, name):
    pid = ctr.inspect(name)["state"]["pid"]
    with open(f"/proc/{pid}/status") as f:
        rows = dict(line.split(":", 1) for line in f)
    return int(rows["Uid"].split()[0]), int(rows["Gid"].split()[0])


def test_root_inside_is_a_host_uid_of_its_own(ctr, subids):
    r = ctr("run", "-d", "--name", "u1", "--userns", "auto", "--network", "none", "busybox",
            "sleep", "60", env=subids)
    assert r.returncode == 0, r.stderr
    assert host_ids(ctr, "u1") == (1500000000, 1500000000)
    r = ctr("exec", "u1", "sh", "-c", "id -u; cat /proc/self/uid_map; "
            "echo x > /etc/made && chown 7:7 /etc/made && ls -ln /etc/made /etc/passwd")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "0" and out[1].split() == ["0", "1500000000", "65536"]
    assert out[2].split()[2:4] == ["7", "7"] and out[3].split()[2:4] == ["0", "0"]
    # on the host, the container's files belong to its block
    st = os.stat(os.path.join(ctr.inspect("u1")["paths"]["upper"], "etc", "made"))
    assert (st.st_uid, st.st_gid) == (1500000007, 1500000007)
    # a second instance gets the next block; the first one's is free after rm
    ctr("run", "-d", "--name", "u2", "--userns", "auto", "--network", "none", "busybox",
        "sleep", "60", env=subids, check=True)
    assert host_ids(ctr, "u2") == (1500065536, 1500065536)
    ctr("rm", "-f", "u1", check=True)
    r = ctr("run", "--rm", "--userns", "auto", "--network", "none", "busybox",
            "cat", "/proc/self/uid_map", env=subids)
    assert r.stdout.split() == ["0", "1500000000", "65536"], r.stderr


def test_a_host_file_cannot_be_chowned(ctr, subids, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("host\n")
    os.chown(vol / "f", 1234, 1234)
    r = ctr("run", "--rm", "--userns", "auto", "--network", "none", "-v", f"{vol}:/vol",
            "busybox", "sh", "-c", "ls -ln /vol/f; chown 0:0 /vol/f; echo x >> /vol/f",
            env=subids)
    assert "Operation not permitted" in r.stderr and "Permission denied" in r.stderr
    assert r.stdout.split()[2:4] == ["65534", "65534"]  # unmapped: nobody
    st = os.stat(vol / "f")
    assert (st.st_uid, st.st_gid) == (1234, 1234) and (vol / "f").read_text() == "host\n"
    # the same container as host root (the default) can
    r = ctr("run", "--rm", "--network", "none", "-v", f"{vol}:/vol", "busybox",
            "chown", "0:0", "/vol/f")
    assert r.returncode == 0 and os.stat(vol / "f").st_uid == 0


def test_capabilities_reach_only_the_container(ctr, subids):
    """In its user namespace the container's root may hold SYS_ADMIN (mount a
    tmpfs, own its network), yet its writes to the host stay an unprivileged
    uid's."""
    r = ctr("run", "--rm", "--userns", "auto", "--network", "none", "--cap-add", "SYS_ADMIN",
            "busybox", "sh", "-c", "mkdir -p /m && mount -t tmpfs none /m && echo mounted; "
            "echo 1 > /proc/sys/kernel/printk_ratelimit", env=subids)
    assert r.stdout.strip() == "mounted", r.stderr
    assert "Read-only file system" in r.stderr or "Permission denied" in r.stderr
    # its network namespace is its own: the bridge's address is configured in it
    r = ctr("run", "--rm", "--userns", "auto", "busybox", "ip", "-4", "-o", "addr", "show",
            "eth0", env=subids)
    assert r.returncode == 0 and " inet 10." in r.stdout, r.stderr
    r = ctr("run", "--rm", "--userns", "host", "--network", "none", "busybox", "cat",
            "/proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "4294967295"]


@pytest.mark.parametrize("opts, message", [
    (("--userns", "private"), "invalid --userns 'private'"),
    (("--userns", "auto", "--privileged"), "exclude each other"),
    (("--userns", "auto", "--vm"), "is for containers"),
    (("--userns", "auto", "--network", "host"), "a network namespace of its own"),
])
def test_bad_userns_options(ctr, subids, opts, message):
    assert_refused(ctr, ctr("run", "--rm", *opts, "busybox", "true", env=subids), message)


def test_an_unreachable_state_root_is_a_clear_error(ctr, subids, tmp_path):
    tmp_path.chmod(0o700)
    r = ctr("run", "--rm", "--userns", "auto", "busybox", "true", env=subids)
    assert_refused(ctr, r, "the container's uid cannot reach")


def test_no_subordinate_range(ctr, subids, tmp_path):
    empty = tmp_path / "none"
    empty.write_text("someone:100000:65536\n")
    r = ctr("run", "--rm", "--userns", "auto", "busybox", "true",
            env={"CTR_SUBUID": str(empty), "CTR_SUBGID": str(empty)})
    assert_refused(ctr, r, "needs a range of at least 65536 ids")
