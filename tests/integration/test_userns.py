"""--userns=auto: the container's root is an unprivileged host uid from a block
of ctr's subordinate range, a block no other instance holds."""

import json
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


# -- a layered image: idmapped layers (Linux 5.19+), else shifted copies ----------------

@pytest.fixture(scope="module")
def layered(tmp_path_factory, busybox_image):
    """A three-layer image (busybox, then files, then a whiteout and an opaque
    directory) in a registry of the module's own."""
    from ocilayout import Registry, image_manifest, push, tar_of, tar_of_tree, write_layout

    work = tmp_path_factory.mktemp("registry")
    registry = Registry(str(work / "registry"))
    try:
        base = tar_of_tree(os.path.join(busybox_image, "rootfs"))
        two = tar_of([("etc/l2", "file", b"two\n"), ("etc/gone", "file", b"x"),
                      ("data", "dir", None), ("data/a", "file", b"a"),
                      ("keep", "dir", None), ("keep/k", "file", b"k")])
        three = tar_of([("etc/gone", "whiteout", None), ("data", "opaque", None),
                        ("data/c", "file", b"c")])
        lay = str(work / "layout")
        write_layout(lay, [image_manifest(lay, [base, two, three])])
        ref = f"{registry.addr}/test/layered:v1"
        push(lay, ref)
        yield ref
    finally:
        registry.stop()


VIEW = ("cat /etc/l2; ls /data; test -e /etc/gone || echo gone; id -u; "
        "stat -c '%u:%g' /bin/busybox /etc/l2 /data/c /keep")
SEEN = ["two", "c", "gone", "0", "0:0", "0:0", "0:0", "0:0"]


def layer_files(ctr):
    """{path: (uid, gid, inode)} of every file in the layer store's layers."""
    out = {}
    for top, dirs, files in os.walk(ctr.path("layers", "sha256")):
        for n in dirs + files:
            if top == ctr.path("layers", "sha256") and n.endswith(".json"):
                continue  # the layers' records
            st = os.lstat(os.path.join(top, n))
            out[os.path.join(top, n)] = (st.st_uid, st.st_gid, st.st_ino)
    return out


def mounted_anywhere(path):
    """The mount table lines of any process on the host that name `path`: a
    container's mount namespace is seen through its processes."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                found += [line for line in f if path in line]
        except OSError:
            continue
    return found


def test_idmapped_layers_are_shared_and_never_copied(ctr, subids, layered):
    ctr("pull", "--tls-verify=false", layered, check=True)
    before = layer_files(ctr)
    for name in ("i1", "i2"):
        r = ctr("run", "-d", "--name", name, "--userns", "auto", "--network", "none",
                layered, "sleep", "60", env=subids)
        assert r.returncode == 0, r.stderr
    # the host was probed once, and can
    with open(ctr.path("userns-idmap.json")) as f:
        probed = json.load(f)
    assert probed == {"kernel": os.uname().release, "idmap": True, "reason": ""}
    bases = []
    for name in ("i1", "i2"):
        info = ctr.inspect(name)
        bases.append(info["spec"]["userns"]["uid"])
        assert info["spec"]["userns"]["idmap"] is True
        # its root sees the image's files as its own
        r = ctr("exec", name, "sh", "-c", VIEW)
        assert r.stdout.split() == SEEN, r.stderr
        # no shifted copy: the instance has none, the layer store's files are
        # the very ones it sees (same inode), seen by the host as the block's
        folder = os.path.dirname(info["paths"]["upper"])
        assert not os.path.exists(os.path.join(folder, "layers"))
        assert not os.path.exists(os.path.join(folder, "lower"))
        pid = info["state"]["pid"]
        with open(f"/proc/{pid}/mountinfo") as f:
            root = next(line for line in f if line.split()[4] == "/")
        assert f"lowerdir=0:1:2,upperdir={info['paths']['upper']}," in root
        st = os.stat(f"/proc/{pid}/root/etc/l2")
        layer = next(p for p in before if p.endswith("/etc/l2"))
        assert st.st_ino == before[layer][2]
        assert (st.st_uid, st.st_gid) == (bases[-1], bases[-1])
    assert bases[1] == bases[0] + 65536  # two blocks, one set of layers
    # a write lands in the instance's upper dir, owned by its block
    ctr("exec", "i2", "sh", "-c", "echo w > /data/w && mkdir /keep/d && chown 7:8 /keep/d",
        check=True)
    upper = ctr.inspect("i2")["paths"]["upper"]
    assert os.stat(f"{upper}/data/w").st_uid == bases[1]
    st = os.stat(f"{upper}/keep/d")
    assert (st.st_uid, st.st_gid) == (bases[1] + 7, bases[1] + 8)
    # the layers are as they were: owners, inodes, no file added; the upper two
    # had their opaque dirs marked for userxattr, once, as their records say
    assert layer_files(ctr) == before
    img = json.loads(ctr("image", "inspect", layered, check=True).stdout)
    img = img[0] if isinstance(img, list) else img
    marked = []
    for lid in img["layers"]:
        with open(ctr.path("layers", *lid.split(":")) + ".json") as f:
            marked.append(json.load(f).get("userxattr", False))
    assert marked == [False, True, True]
    assert all(uid < 65536 for uid, _, _ in before.values())
    # nothing mounted anywhere once they are gone: rm of a stopped one, rm -f of
    # a running one
    diff = ctr("diff", "i2", check=True).stdout.splitlines()
    assert "A /data/w" in diff and "A /keep/d" in diff, diff
    # a restart makes its idmapped layers again
    ctr("stop", "-t", "1", "i1", check=True)
    ctr("start", "i1", check=True)
    assert ctr("exec", "i1", "sh", "-c", VIEW).stdout.split() == SEEN
    ctr("stop", "-t", "1", "i1", check=True)
    ctr("rm", "i1", check=True)
    ctr("rm", "-f", "i2", check=True)
    assert mounted_anywhere(ctr.root) == []


def test_kill_9_of_ctr_leaves_no_idmapped_mount(ctr, subids, layered):
    import signal
    import time

    ctr("pull", "--tls-verify=false", layered, check=True)
    p = ctr.popen("run", "--name", "k", "--userns", "auto", "--network", "none", layered,
                  "sleep", "60", env=subids)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = ctr("exec", "k", "true")
        if r.returncode == 0:
            break
        time.sleep(0.1)
    # its root: the overlay on the idmapped layers (which went with the host's
    # paths at pivot_root: the overlay holds them)
    assert any(" overlay " in line and "lowerdir=0:1:2," in line
               for line in mounted_anywhere(ctr.path("instances", "k")))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    ctr("rm", "-f", "k", check=True)
    assert mounted_anywhere(ctr.root) == []


def test_shifted_copies_where_idmap_is_off(ctr, subids, layered):
    """CTR_USERNS_IDMAP=off, or a host whose probe said no: a shifted copy of
    each layer, and the container sees the same root."""
    ctr("pull", "--tls-verify=false", layered, check=True)
    before = layer_files(ctr)
    r = ctr("run", "-d", "--name", "c1", "--userns", "auto", "--network", "none", layered,
            "sleep", "60", env={**subids, "CTR_USERNS_IDMAP": "off"})
    assert r.returncode == 0, r.stderr
    # a recorded "no" for this kernel is obeyed without a new probe
    with open(ctr.path("userns-idmap.json"), "w") as f:
        json.dump({"kernel": os.uname().release, "idmap": False, "reason": "test"}, f)
    ctr("run", "-d", "--name", "c2", "--userns", "auto", "--network", "none", layered,
        "sleep", "60", env=subids, check=True)
    for name in ("c1", "c2"):
        info = ctr.inspect(name)
        assert "idmap" not in info["spec"]["userns"]
        folder = os.path.dirname(info["paths"]["upper"])
        assert sorted(os.listdir(os.path.join(folder, "layers"))) == ["0", "1", "2"]
        r = ctr("exec", name, "sh", "-c", VIEW)
        assert r.stdout.split() == SEEN, r.stderr
    assert layer_files(ctr) == before
    ctr("rm", "-f", "c1", "c2", check=True)
    assert mounted_anywhere(ctr.root) == []


def test_a_bad_idmap_override_is_refused(ctr, subids):
    r = ctr("run", "--rm", "--userns", "auto", "--network", "none", "busybox", "true",
            env={**subids, "CTR_USERNS_IDMAP": "maybe"})
    assert_refused(ctr, r, "CTR_USERNS_IDMAP='maybe'")


def test_a_filesystem_without_idmapped_mounts_gets_shifted_copies(ctr, subids, tmp_path,
                                                                   busybox_image):
    """A state root on ramfs (no FS_ALLOW_IDMAP: mount_setattr says EINVAL), in a
    mount namespace of the test's own: the probe says no, once, with the
    kernel's reason, and the container runs on a shifted copy."""
    import subprocess

    from helpers import CTR

    root = tmp_path / "ramroot"
    root.mkdir()
    script = f"""
        set -e
        mount -t ramfs ramfs {root} && chmod 755 {root}
        mkdir {root}/images && cp -a {busybox_image} {root}/images/busybox
        {CTR} --root {root} run --rm --userns auto --network none busybox \\
            sh -c 'id -u; stat -c %u /bin/busybox; ls /' >&2
        {CTR} --root {root} create --name c --userns auto --network none busybox true >/dev/null
        cat {root}/userns-idmap.json; echo; ls {root}/instances/c
        {CTR} --root {root} rm c >/dev/null
    """
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120, env={**os.environ, **subids})
    assert r.returncode == 0, r.stderr
    assert r.stderr.split()[:2] == ["0", "0"], r.stderr
    probed = json.loads(r.stdout[:r.stdout.index("}") + 1])
    assert probed["idmap"] is False and "mount_setattr" in probed["reason"] \
        and "Invalid argument" in probed["reason"]
    assert "lower" in r.stdout.split()  # the shifted copy of its one layer
    assert os.listdir(root) == []  # the ramfs went with the namespace
