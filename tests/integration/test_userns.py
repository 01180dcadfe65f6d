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
    copies = []
    for name in ("c1", "c2"):
        info = ctr.inspect(name)
        assert "idmap" not in info["spec"]["userns"]
        base = info["spec"]["userns"]["uid"]
        folder = os.path.dirname(info["paths"]["upper"])
        assert sorted(os.listdir(os.path.join(folder, "layers"))) == ["0", "1", "2"]
        # each a link to the layer's copy for its block in the layer store
        copies.append(shifted_links(folder))
        assert all(c.startswith(ctr.path("layers", "shifted", "sha256")) and
                   c.endswith(f"/{base}-{base}-65536") for c in copies[-1])
        r = ctr("exec", name, "sh", "-c", VIEW)
        assert r.stdout.split() == SEEN, r.stderr
    assert not set(copies[0]) & set(copies[1])
    assert layer_files(ctr) == before
    ctr("rm", "-f", "c1", "c2", check=True)
    assert mounted_anywhere(ctr.root) == []


def shifted_links(folder):
    """Where an instance's layers/0.. lead (top first)."""
    many = os.path.join(folder, "layers")
    return [os.path.realpath(os.path.join(many, n))
            for n in sorted(os.listdir(many), key=int)]


def shifted_entries(ctr):
    """Every copy (and leftover) in the layer store's shifted tree."""
    top, out = ctr.path("layers", "shifted"), []
    for algo in os.listdir(top) if os.path.isdir(top) else []:
        for layer in os.listdir(os.path.join(top, algo)):
            folder = os.path.join(top, algo, layer)
            out += [os.path.join(folder, e) for e in os.listdir(folder)]
    return sorted(out)


OFF = {"CTR_USERNS_IDMAP": "off"}
CAP = bytes.fromhex("0100000200200000000000000000000000000000")  # v2: cap_net_raw, effective


def special_tar():
    """A layer of everything a copy must keep: set-id files, a hard link, a
    symlink, a device node, a fifo, owners inside and outside 0..65535,
    xattrs (a file capability among them), a whiteout and an opaque dir."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, **kw):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, uid, gid
            info.mtime, info.size = 1700000000, len(data)
            for k, v in kw.items():
                setattr(info, k, v)
            t.addfile(info, io.BytesIO(data) if data else None)

        add("s", tarfile.DIRTYPE, mode=0o755)
        add("s/suid", data=b"#!/bin/sh\n", mode=0o4755)
        add("s/sgid", data=b"x", mode=0o2755, gid=5)
        add("s/hard1", data=b"h")
        add("s/hard2", tarfile.LNKTYPE, linkname="s/hard1")
        add("s/link", tarfile.SYMTYPE, linkname="hard1")
        add("s/chr", tarfile.CHRTYPE, mode=0o600, devmajor=1, devminor=3)
        add("s/fifo", tarfile.FIFOTYPE)
        add("s/owned", data=b"o", uid=7, gid=8)
        add("s/far", data=b"f", uid=100000, gid=100001)
        add("s/caps", data=b"c", mode=0o755, pax_headers={
            "SCHILY.xattr.security.capability": CAP.decode("latin-1"),
            "SCHILY.xattr.user.note": "kept"})
        add("etc/.wh.shadow")
        add("usr/.wh..wh..opq")
        add("usr/only", data=b"u")
    return buf.getvalue()


SPECIAL_VIEW = ("stat -c '%n %a %u:%g %h %Y' /s/suid /s/sgid /s/hard1 /s/owned /s/far; "
                "stat -c '%i' /s/hard1 /s/hard2 | uniq | wc -l; readlink /s/link; "
                "stat -c '%F %t:%T' /s/chr; stat -c %F /s/fifo; ls /usr; "
                "test -e /etc/shadow || echo no-shadow; stat -c %u:%g /bin/busybox; id -u")
SPECIAL_SEEN = ["/s/suid 4755 0:0 1 1700000000", "/s/sgid 2755 0:5 1 1700000000",
                "/s/hard1 644 0:0 2 1700000000", "/s/owned 644 7:8 1 1700000000",
                "/s/far 644 65534:65534 1 1700000000", "1", "hard1",
                "character special file 1:3", "fifo", "only", "no-shadow", "0:0", "0"]


@pytest.fixture(scope="module")
def special_layout(tmp_path_factory, busybox_image):
    from ocilayout import image_manifest, tar_of_tree, write_layout

    lay = str(tmp_path_factory.mktemp("special") / "layout")
    base = tar_of_tree(os.path.join(busybox_image, "rootfs"))
    write_layout(lay, [image_manifest(lay, [base, special_tar()])])
    return lay


def test_shifted_copies_are_made_once_per_layer_and_block(ctr, subids, special_layout):
    """Without idmapped mounts: a copy of each layer per block, in the layer
    store, kept whole (set-id bits, links, devices, xattrs, mtimes, whiteouts),
    shared and reused, and gone with the image."""
    ctr("image", "import", special_layout, "special", check=True)
    env = {**subids, **OFF}
    for name in ("s1", "s2"):
        ctr("run", "-d", "--name", name, "--userns", "auto", "--network", "none", "special",
            "sleep", "60", env=env, check=True)
    bases, copies = [], []
    for name in ("s1", "s2"):
        info = ctr.inspect(name)
        bases.append(info["spec"]["userns"]["uid"])
        copies.append(shifted_links(os.path.dirname(info["paths"]["upper"])))
        r = ctr("exec", name, "sh", "-c", SPECIAL_VIEW)
        assert r.stdout.splitlines() == SPECIAL_SEEN, r.stderr
    assert bases[1] == bases[0] + 65536 and len(copies[0]) == 2
    assert shifted_entries(ctr) == sorted(copies[0] + copies[1])
    # on the host: the copy's owners are the block's, and what chown clears is back
    top = copies[0][0]
    st = os.lstat(f"{top}/s/suid")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (bases[0], bases[0], 0o4755)
    assert os.getxattr(f"{top}/s/caps", "security.capability") == CAP
    assert os.getxattr(f"{top}/s/caps", "user.note") == b"kept"
    assert os.lstat(f"{top}/s/far").st_uid == bases[0] + 65534
    assert os.lstat(f"{top}/s/hard1").st_ino == os.lstat(f"{top}/s/hard2").st_ino
    assert os.lstat(f"{top}/etc/shadow").st_rdev == 0  # the whiteout, a whiteout still
    assert os.getxattr(f"{top}/usr", "user.overlay.opaque") == b"y"
    # s1's block is free after rm; the next instance takes it and the same
    # copies: the very folders (inode, mtime), not made again
    made = [(os.stat(c).st_ino, os.stat(c).st_mtime_ns) for c in copies[0]]
    ctr("rm", "-f", "s1", check=True)
    ctr("run", "-d", "--name", "s3", "--userns", "auto", "--network", "none", "special",
        "sleep", "60", env=env, check=True)
    assert ctr.inspect("s3")["spec"]["userns"]["uid"] == bases[0]
    s3 = shifted_links(os.path.dirname(ctr.inspect("s3")["paths"]["upper"]))
    assert s3 == copies[0]
    assert [(os.stat(c).st_ino, os.stat(c).st_mtime_ns) for c in s3] == made
    assert ctr("exec", "s3", "sh", "-c", SPECIAL_VIEW).stdout.splitlines() == SPECIAL_SEEN
    # diff and export read the instance's copies, owners shifted back
    ctr("exec", "s3", "sh", "-c", "echo n > /s/new", check=True)
    assert "A /s/new" in ctr("diff", "s3", check=True).stdout.splitlines()
    out = ctr.path("..", "s3.tar")
    ctr("export", "-o", out, "s3", check=True)
    import tarfile

    with tarfile.open(out) as t:
        suid, far = t.getmember("s/suid"), t.getmember("s/far")
    os.unlink(out)
    assert (suid.uid, suid.gid, suid.mode) == (0, 0, 0o4755) and far.uid == 65534
    # image prune removes the copies of a block nobody holds, and only those
    ctr("rm", "-f", "s2", check=True)
    ctr("image", "prune", check=True)
    assert shifted_entries(ctr) == sorted(copies[0])
    # rm of every instance and image rm: no copy is left
    ctr("rm", "-f", "s3", check=True)
    ctr("image", "rm", "special", check=True)
    assert not os.path.exists(ctr.path("layers", "shifted"))


def shifted_row(ctr):
    rows = json.loads(ctr("system", "df", "--format", "json", check=True).stdout)
    return {r["type"]: r for r in rows}["Shifted layers"]


def disk_bytes(copies):
    """What coreutils' du says the copies hold (hard links once), without the
    copies' own top folders: the bytes of the layers' files in them."""
    import subprocess

    r = subprocess.run(["du", "-s", "-B1", "-c", *copies], capture_output=True, text=True,
                       check=True)
    return int(r.stdout.splitlines()[-1].split()[0]) - \
        sum(os.lstat(c).st_blocks * 512 for c in copies)


def test_df_and_prune_count_the_shifted_copies(ctr, subids, layered):
    """system df shows the copies (active: a block an instance holds), image
    prune and system prune say which went and the space they freed."""
    from ctr.cli.context import human_size

    ctr("pull", "--tls-verify=false", layered, check=True)
    env = {**subids, **OFF}
    assert shifted_row(ctr) == {"type": "Shifted layers", "total": 0, "active": 0,
                                "size": 0, "reclaimable": 0}
    for name in ("c1", "c2"):
        ctr("run", "-d", "--name", name, "--userns", "auto", "--network", "none", layered,
            "sleep", "60", env=env, check=True)
    held = shifted_links(os.path.dirname(ctr.inspect("c1")["paths"]["upper"]))
    freed = shifted_links(os.path.dirname(ctr.inspect("c2")["paths"]["upper"]))
    row = shifted_row(ctr)
    assert row["total"] == row["active"] == 6 and row["reclaimable"] == 0
    assert row["size"] == disk_bytes(held + freed) > 1000000  # busybox's layer, twice
    table = ctr("system", "df", check=True).stdout.splitlines()
    assert table[-1].split() == ["Shifted", "layers", "6", "6", human_size(row["size"]), "0B"]
    # rm keeps c2's copies; they are reclaimable now, c1's stay active
    ctr("rm", "-f", "c2", check=True)
    row = shifted_row(ctr)
    assert (row["total"], row["active"]) == (6, 3)
    assert row["reclaimable"] == disk_bytes(freed) and row["size"] == disk_bytes(held + freed)
    block = os.path.basename(freed[0])
    out = ctr("image", "prune", check=True).stdout.splitlines()
    layers = json.loads(ctr("image", "inspect", "-f", "{{json .RootFS.Layers}}", layered,
                            check=True).stdout)
    assert sorted(out[:3]) == sorted(f"deleted: {lid} (shifted copy {block})" for lid in layers)
    assert out[3:] == ["removed 0 layer(s), 3 shifted layer(s), 0 blob(s)",
                       f"Total reclaimed space: {human_size(row['reclaimable'])}"]
    assert shifted_entries(ctr) == sorted(held)  # the held block's copies stay
    row = shifted_row(ctr)
    assert (row["total"], row["active"], row["reclaimable"]) == (3, 3, 0)
    assert row["size"] == disk_bytes(held)
    # c1 stopped and removed by system prune: its block is free, its copies go
    ctr("stop", "-t", "0", "c1", check=True)
    assert shifted_row(ctr)["active"] == 3  # a stopped instance still holds its block
    upper = ctr("system", "df", "--format", "json", check=True).stdout
    instances = {r["type"]: r for r in json.loads(upper)}["Instances"]["reclaimable"]
    out = ctr("system", "prune", "-f", check=True).stdout.splitlines()
    assert out == ["deleted instance: c1",
                   "removed 1 item(s), 0 layer(s), 3 shifted layer(s), 0 blob(s)",
                   f"Total reclaimed space: {human_size(instances + row['size'])}"]
    assert not os.path.exists(ctr.path("layers", "shifted"))
    assert shifted_row(ctr) == {"type": "Shifted layers", "total": 0, "active": 0,
                                "size": 0, "reclaimable": 0}
    # image prune --format json: the copies, with their sizes and the total
    ctr("run", "--rm", "--userns", "auto", "--network", "none", layered, "true", env=env,
        check=True)
    row = shifted_row(ctr)
    got = json.loads(ctr("image", "prune", "--format", "json", check=True).stdout)
    assert sorted(c["layer"] for c in got["shifted"]) == sorted(layers)
    assert {c["block"] for c in got["shifted"]} == {"1500000000-1500000000-65536"}
    assert got["reclaimed"] == sum(c["size"] for c in got["shifted"]) == row["reclaimable"]
    assert got["layers"] == [] and got["blobs"] == 0 and shifted_entries(ctr) == []
    ctr("image", "rm", layered, check=True)


@pytest.fixture(scope="module")
def many_files_layout(tmp_path_factory, busybox_image):
    """An image whose top layer has enough files that copying it takes a while."""
    import io
    import tarfile

    from ocilayout import image_manifest, tar_of_tree, write_layout

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in range(40):
            info = tarfile.TarInfo(f"many/{d}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
            for f in range(500):
                t.addfile(tarfile.TarInfo(f"many/{d}/{f}"))
    lay = str(tmp_path_factory.mktemp("many") / "layout")
    base = tar_of_tree(os.path.join(busybox_image, "rootfs"))
    write_layout(lay, [image_manifest(lay, [base, buf.getvalue()])])
    return lay


def test_kill_9_during_a_shifted_copy_leaves_only_what_is_swept(ctr, subids,
                                                                many_files_layout):
    import signal
    import time

    ctr("image", "import", many_files_layout, "many", check=True)
    env = {**subids, **OFF}
    p = ctr.popen("create", "--name", "k", "--userns", "auto", "--network", "none", "many",
                  "true", env=env)
    deadline, partial = time.monotonic() + 60, []
    while not partial and time.monotonic() < deadline and p.poll() is None:
        partial = [e for e in shifted_entries(ctr) if ".tmp-" in e]
        time.sleep(0.002)
    assert partial, "never saw the copy being made"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    # what the kill left: the copy's temporary folder, never a copy that looks whole
    assert [e for e in shifted_entries(ctr) if ".tmp-" in e] == partial
    assert not os.path.exists(partial[0].split(".tmp-")[0])
    ctr("rm", "-f", "k", check=True)
    # the next copy of it sweeps it
    r = ctr("run", "--rm", "--userns", "auto", "--network", "none", "many", "sh", "-c",
            "ls /many/39 | wc -l; stat -c %u /many/0/0", env=env)
    assert r.stdout.split() == ["500", "0"], r.stderr
    assert not [e for e in shifted_entries(ctr) if ".tmp-" in e]
    # and image prune what a kill left where no copy followed
    os.mkdir(partial[0])
    ctr("image", "prune", check=True)
    assert not os.path.exists(ctr.path("layers", "shifted"))
    ctr("image", "rm", "many", check=True)


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
    assert "layers" in r.stdout.split()  # its link to the shifted copy of its one layer
    assert os.listdir(root) == []  # the ramfs went with the namespace
