from ctr.cgroups import hierarchies

MOUNTINFO = """\
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
"""


def test_hierarchies(tmp_path):
    f = tmp_path / "mountinfo"
    f.write_text(MOUNTINFO)
    assert hierarchies(str(f)) == [
        ("/sys/fs/cgroup/memory", ("memory",)),
        ("/sys/fs/cgroup/cpu,cpuacct", ("cpu", "cpuacct")),
        ("/sys/fs/cgroup/unified", ("unified",)),
    ]


def test_a_covered_cgroup_mount_is_not_used(tmp_path):
    f = tmp_path / "mountinfo"
    f.write_text(MOUNTINFO + "40 33 0:40 / /sys/fs/cgroup/unified rw - tmpfs none rw\n")
    assert ("/sys/fs/cgroup/unified", ("unified",)) not in hierarchies(str(f))


def test_pure_v2(tmp_path):
    f = tmp_path / "mountinfo"
    f.write_text("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")
    assert hierarchies(str(f)) == [("/sys/fs/cgroup", ("unified",))]
