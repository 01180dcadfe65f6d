"""The container's mount sequence, checked through a recording fake of the
syscall seam: what would be mounted, where, with which flags, in which order."""

import pytest

from ctr import rootfs
from ctr.native import MNT_DETACH, MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, Syscalls


class Recorder(Syscalls):
    def __init__(self, existing=(), dirs=(), links=None):
        self.calls = []
        self.existing = set(existing)
        self.dirs = set(dirs)
        self.links = links or {}  # folder -> where it resolves

    def __getattribute__(self, name):
        if name in ("mount", "umount2", "pivot_root", "mknod", "symlink", "makedirs", "touch",
                    "chdir", "chmod", "chown", "unlink", "sethostname", "plain_file",
                    "attach_tree", "close"):
            return lambda *a, **k: self.calls.append((name, *a))
        if name == "open_pty":
            return lambda *a: self.calls.append((name, *a)) or (99, 0)
        return object.__getattribute__(self, name)

    def exists(self, path):
        return path in self.existing or path in self.dirs

    def isdir(self, path):
        return path in self.dirs

    def realpath(self, path):
        return self.links.get(path, path)

    def mounts(self):
        return [c[1:] for c in self.calls if c[0] == "mount"]


def test_prepare_sequence():
    r = "/r"
    sc = Recorder(existing={"/r/proc/kcore", "/r/proc/sys"}, dirs={"/r/sys/firmware",
                                                                     "/r/proc/sys"})
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root=r)
    mounts = sc.mounts()
    # first: nothing propagates back to the host
    assert mounts[0] == (None, "/", None, MS_REC | MS_PRIVATE)
    assert mounts[1] == ("overlay", r, "overlay", 0, "lowerdir=/img,upperdir=/u,workdir=/w")
    targets = [m[1] for m in mounts]
    assert targets.index("/r/proc") < targets.index("/r/proc/kcore")
    assert ("/r/dev/null", "/r/proc/kcore", None, MS_BIND) in mounts  # masked file
    assert ("tmpfs", "/r/sys/firmware", "tmpfs", MS_RDONLY, None) in mounts  # masked dir
    sysfs = next(m for m in mounts if m[0] == "sysfs")
    assert sysfs[3] & MS_RDONLY
    ro = [m for m in mounts if m[1] == "/r/proc/sys"]
    assert ro[0][3] == MS_BIND | MS_REC
    assert ro[1][3] & (MS_BIND | MS_REMOUNT | MS_RDONLY) == MS_BIND | MS_REMOUNT | MS_RDONLY
    # paths that do not exist are skipped, not created
    assert not any(m[1] == "/r/proc/keys" for m in mounts)
    nodes = sorted(c[1].rsplit("/", 1)[1] for c in sc.calls if c[0] == "mknod")
    assert nodes == ["full", "null", "random", "tty", "urandom", "zero"]
    links = {c[2].rsplit("/", 1)[1]: c[1] for c in sc.calls if c[0] == "symlink"}
    assert links["ptmx"] == "pts/ptmx" and links["fd"] == "/proc/self/fd"
    console = next(m for m in mounts if m[1] == "/r/dev/console")
    assert console[0] == "/r/dev/null"  # no terminal: the console goes nowhere


def test_idmapped_layers_are_attached_privately_before_the_overlay_on_them():
    sc = Recorder()
    rootfs.prepare(sc, lower=("/i/idmap", "0:1"), upper="/u", work="/w", root="/r",
                   userns=True, idmapped=[(7, "/i/idmap/0"), (8, "/i/idmap/1")])
    calls = [c for c in sc.calls if c[0] in ("mount", "attach_tree", "close", "chdir")][:7]
    assert calls == [
        ("mount", None, "/", None, MS_REC | MS_PRIVATE),  # nothing reaches the host
        ("attach_tree", 7, "/i/idmap/0"), ("close", 7),
        ("attach_tree", 8, "/i/idmap/1"), ("close", 8),
        ("chdir", "/i/idmap"),  # the lowerdirs are relative to it
        ("mount", "overlay", "/r", "overlay", 0,
         "lowerdir=0:1,upperdir=/u,workdir=/w,userxattr")]


def test_console_is_a_pty_of_the_containers_own_devpts():
    sc = Recorder()
    pty = rootfs.prepare(sc, lower="/l", upper="/u", work="/w", root="/r", tty=True)
    assert pty == (99, "/r/dev/pts/0")
    assert ("open_pty", "/r/dev/pts/ptmx") in sc.calls
    devpts = next(i for i, c in enumerate(sc.calls) if c[0] == "mount" and c[1] == "devpts")
    assert devpts < sc.calls.index(("open_pty", "/r/dev/pts/ptmx"))
    assert ("/r/dev/pts/0", "/r/dev/console", None, MS_BIND) in sc.mounts()


def test_pivot_detaches_the_old_root():
    sc = Recorder()
    rootfs.pivot(sc, "/r")
    assert sc.calls == [("chdir", "/r"), ("pivot_root", ".", "."), ("umount2", ".", MNT_DETACH),
                        ("chdir", "/")]


def test_etc_files_are_bound_as_plain_files():
    sc = Recorder()
    rootfs.bind_files(sc, "/r", [("/rec/hosts", "/etc/hosts")])
    assert ("plain_file", "/r/etc/hosts") in sc.calls
    assert sc.mounts() == [("/rec/hosts", "/r/etc/hosts", None, MS_BIND)]


def test_an_etc_that_leads_out_of_the_root_is_refused():
    sc = Recorder(links={"/r/etc": "/etc"})
    with pytest.raises(OSError, match="leads out of the image's root"):
        rootfs.bind_files(sc, "/r", [("/rec/hosts", "/etc/hosts")])
    assert sc.mounts() == []


class Symlinks(Recorder):
    def __init__(self, symlinks):
        super().__init__()
        self.symlinks = symlinks

    def readlink(self, path):
        return self.symlinks.get(path)


@pytest.mark.parametrize("path, links, expected", [
    ("/a/b", {}, "/r/a/b"),
    ("/etc/x", {"/r/etc": "/host/etc"}, "/r/host/etc/x"),  # absolute: from the root
    ("/l/x", {"/r/l": "../../../.."}, "/r/x"),  # .. stops at the root
    ("/l/x", {"/r/l": "d/e"}, "/r/d/e/x"),  # relative: from the link's folder
    ("/a/../../b", {}, "/r/b"),
])
def test_resolve_in_root_never_leaves_the_root(path, links, expected):
    assert rootfs.resolve_in_root(Symlinks(links), "/r", path) == expected


def test_resolve_in_root_loops_are_an_error():
    with pytest.raises(OSError, match="too many levels"):
        rootfs.resolve_in_root(Symlinks({"/r/a": "/b", "/r/b": "/a"}), "/r", "/a/x")


def test_read_only_root_is_remounted_last():
    sc = Recorder()
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r", read_only=True,
                   tmpfs=({"path": "/tmp", "flags": ["nosuid"], "data": "mode=1777"},))
    mounts = sc.mounts()
    assert mounts[-1] == (None, "/r", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    assert ("tmpfs", "/r/tmp", "tmpfs", rootfs.MS_NOSUID, "mode=1777") in mounts


def test_a_volume_below_a_tmpfs_is_mounted_after_it():
    sc = Recorder()
    vol = {"source": "/host/s", "target": "/run/notify/notify.sock", "readonly": False}
    tmp = [{"path": "/run", "flags": ["nosuid"], "data": "mode=1777"},
           {"path": "/tmp", "flags": [], "data": ""}]
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r", volumes=[vol],
                   tmpfs=tmp)
    targets = [m[1] for m in sc.mounts()]
    assert targets.index("/r/run") < targets.index("/r/run/notify/notify.sock")
    assert targets.index("/r/tmp") < targets.index("/r/run/notify/notify.sock")


# -- errors: a refused mount names source, target, fstype and flags ----------------------

def test_a_refused_mount_names_source_target_fstype_and_flags(monkeypatch):
    import errno
    import types

    from ctr import native

    def refuse(*args):
        raise OSError(errno.ENOENT, "No such file or directory", args[1])

    monkeypatch.setattr(native, "_native", types.SimpleNamespace(mount=refuse, umount2=refuse))
    with pytest.raises(native.MountError) as info:
        Syscalls().mount("/vol", "/r/data", None, MS_BIND | MS_REC)
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOENT
    assert str(err) == ("mount source='/vol' target='/r/data' flags=MS_BIND|MS_REC: "
                        "No such file or directory")
    assert (err.source, err.target, err.fstype, err.flags) == ("/vol", "/r/data", None,
                                                               MS_BIND | MS_REC)
    # what reads an OSError's strerror and filename (the init's report) gets it all
    assert err.strerror == str(err) and err.filename is None
    with pytest.raises(OSError, match="^mount source='overlay' target='/r' fstype='overlay' "
                                      "flags=0 data='lowerdir=/l': No such file"):
        Syscalls().mount("overlay", "/r", "overlay", 0, "lowerdir=/l")
    with pytest.raises(OSError, match=r"^mount target='/' flags=MS_REC\|MS_PRIVATE\|0x4000000:"):
        Syscalls().mount(None, "/", None, MS_REC | MS_PRIVATE | 0x4000000)
    with pytest.raises(native.MountError, match="^umount2 target='.' flags=MNT_DETACH: No such"):
        Syscalls().umount2(".", MNT_DETACH)



# -- the container's cgroup view and lxcfs -------------------------------------------------

V1_VIEW = {"binds": [("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/ctr/x"),
                     ("memory", "/sys/fs/cgroup/memory/ctr/x")],
           "links": [("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")], "readonly": True}


def test_v1_view_binds_each_hierarchy_read_only_on_a_read_only_tmpfs():
    sc = Recorder()
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r", cgroup_view=V1_VIEW)
    mounts = sc.mounts()
    cg = [m for m in mounts if m[1].startswith("/r/sys/fs/cgroup")]
    assert cg[0][:3] == ("tmpfs", "/r/sys/fs/cgroup", "tmpfs")
    assert ("/sys/fs/cgroup/memory/ctr/x", "/r/sys/fs/cgroup/memory", None, MS_BIND) in cg
    ro = MS_BIND | MS_REMOUNT | MS_RDONLY
    for target in ("/r/sys/fs/cgroup/memory", "/r/sys/fs/cgroup/cpu,cpuacct"):
        remount = [m for m in cg if m[1] == target and m[0] is None]
        assert remount and remount[0][3] & ro == ro
    # the tmpfs itself last, once the binds are in place
    assert cg[-1][:2] == (None, "/r/sys/fs/cgroup") and cg[-1][3] & ro == ro
    links = {c[2]: c[1] for c in sc.calls if c[0] == "symlink"}
    assert links["/r/sys/fs/cgroup/cpu"] == "cpu,cpuacct"
    # mounted after /sys itself, which is read-only
    targets = [m[1] for m in mounts]
    assert targets.index("/r/sys") < targets.index("/r/sys/fs/cgroup")


def test_a_writable_view_is_not_remounted():
    sc = Recorder()
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r",
                   cgroup_view={**V1_VIEW, "readonly": False})
    assert not [m for m in sc.mounts() if m[1].startswith("/r/sys/fs/cgroup") and m[3] & MS_RDONLY]


def test_v2_view_is_cgroup2_read_only_and_an_init_gets_it_writable():
    sc = Recorder()
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r",
                   cgroup_view={"cgroup2": True, "readonly": True})
    cg = [m for m in sc.mounts() if m[1] == "/r/sys/fs/cgroup"]
    assert len(cg) == 1 and cg[0][2] == "cgroup2" and cg[0][3] & MS_RDONLY
    sc = Recorder()
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r", init=True,
                   cgroup_view=V1_VIEW)  # an init's own view wins
    cg = [m for m in sc.mounts() if m[1].startswith("/r/sys/fs/cgroup")]
    assert len(cg) == 1 and cg[0][2] == "cgroup2" and not cg[0][3] & MS_RDONLY


def test_no_view_mounts_nothing_at_sys_fs_cgroup():
    sc = Recorder()
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r")
    assert not [m for m in sc.mounts() if m[1].startswith("/r/sys/fs/cgroup")]


def test_lxcfs_files_are_bound_over_procs_where_both_are():
    present = {"/r" + p for p in rootfs.LXCFS_FILES if p != "/proc/swaps"}
    sc = Recorder(existing=present)
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r", lxcfs="/lx")
    binds = [m for m in sc.mounts() if m[0] and m[0].startswith("/lx/")]
    assert ("/lx/proc/meminfo", "/r/proc/meminfo", None, MS_BIND) in binds
    assert ("/lx/sys/devices/system/cpu/online", "/r/sys/devices/system/cpu/online", None,
            MS_BIND) in binds
    assert len(binds) == len(rootfs.LXCFS_FILES) - 1  # none where the kernel has no file
    targets = [m[1] for m in sc.mounts()]
    assert targets.index("/r/proc") < targets.index("/r/proc/meminfo")


def test_lxcfs_root_is_found_with_one_stat(tmp_path):
    assert rootfs.lxcfs_root({"CTR_LXCFS_ROOT": str(tmp_path)}) is None  # not running
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text("MemTotal: 1 kB\n")
    assert rootfs.lxcfs_root({"CTR_LXCFS_ROOT": str(tmp_path) + "/"}) == str(tmp_path)
    assert rootfs.lxcfs_root({"CTR_LXCFS_ROOT": str(tmp_path / "none")}) is None


def test_a_bundles_propagation_root_first_then_each_mount_then_after_the_pivot():
    from ctr.native import MS_SHARED, MS_SLAVE

    class Bundle(Recorder):
        def mount_point(self, path):
            self.calls.append(("mount_point", path))
            return "/host"

    sc = Bundle()
    vol = {"source": "/data", "target": "/mnt", "propagation": ("rslave", "shared")}
    rootfs.prepare(sc, lower=None, upper=None, work=None, root="/host/r", volumes=[vol],
                   root_propagation="rshared")
    mounts = sc.mounts()
    assert mounts[0] == (None, "/", None, MS_REC | MS_SHARED)
    # the mount the root lies on is made private before the root is bound: nothing
    # mounted inside the root can reach the host
    assert mounts[1] == (None, "/host", None, MS_PRIVATE)
    assert mounts[2] == ("/host/r", "/host/r", None, MS_BIND | MS_REC)
    i = mounts.index(("/data", "/host/r/mnt", None, MS_BIND | MS_REC))
    assert mounts[i + 1:i + 3] == [(None, "/host/r/mnt", None, MS_SLAVE | MS_REC),
                                   (None, "/host/r/mnt", None, MS_SHARED)]
    sc.calls.clear()
    rootfs.finish_propagation(sc, "rshared")
    rootfs.finish_propagation(sc, "private")
    rootfs.finish_propagation(sc, None)
    assert sc.mounts() == [(None, "/", None, MS_REC | MS_SHARED)]
    # ctr's own containers: rprivate, and no look at the root's mount
    sc = Bundle()
    rootfs.prepare(sc, lower="/img", upper="/u", work="/w", root="/r")
    assert sc.mounts()[0] == (None, "/", None, MS_REC | MS_PRIVATE)
    assert not any(c[0] == "mount_point" for c in sc.calls)
