"""What a bundle's config.json asks of Linux, through ctr-oci against the real
kernel: device nodes and the device controller's rules, block I/O and memory
limits, hugepage and unified limits where the host has them (else one clear
error), mount propagation (a mount made on the host appears under an rslave
bind; one made inside an rshared bind appears on the host), tmpcopyup, masked
and read-only paths, sysctls, an OCI seccomp profile, cgroupsPath's forms and
annotations. Each bad value: one error naming the field, nothing left."""

import json
import os
import subprocess

import pytest
import test_oci_runtime
from oci_helpers import CGROUP_PARENT, cgroup_dirs, mounts_of
from test_oci_runtime import _error

env = test_oci_runtime.env  # the fixture: a state root, a busybox root, leftovers checked

DISK = next((d for d in ("/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda")
             if os.path.exists(d)), None)


def _linux(**changes):
    return lambda c: c["linux"].update(changes)


def _resources(**changes):
    return lambda c: c["linux"].setdefault("resources", {}).update(changes)


def _cgroup_file(hierarchy, cid, name):
    top = [d for d in cgroup_dirs(CGROUP_PARENT) if f"/{hierarchy}/" in d + "/"]
    if not top:
        pytest.skip(f"this host has no {hierarchy} cgroup hierarchy")
    with open(os.path.join(top[0], cid, name)) as f:
        return f.read()


def _run(env, cid, script, **changes):
    b = env.bundle(cid, "sh", "-c", script, **changes)
    return env("run", "-b", b, cid)


# -- devices ----------------------------------------------------------------------


def test_device_nodes_are_made_with_their_mode_and_owner(env):
    devices = [
        {"path": "/dev/xnull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o622,
         "uid": 7, "gid": 8},
        {"path": "/dev/sub/xzero", "type": "c", "major": 1, "minor": 5},
        {"path": "/dev/xfifo", "type": "p", "fileMode": 0o600},
    ]
    r = _run(env, "dn1", "ls -ln /dev/xnull /dev/sub/xzero /dev/xfifo; echo hi > /dev/xnull "
             "&& head -c 3 /dev/sub/xzero | od -An -tx1",
             edit=lambda c: (_linux(devices=devices)(c), _resources(devices=[
                 {"allow": False, "access": "rwm"},
                 {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}])(c)))
    assert r.returncode == 0, r.stderr
    lines = {line.split()[-1]: line.split() for line in r.stdout.splitlines() if "/dev/" in line}
    assert lines["/dev/xnull"][0] == "crw--w--w-" and lines["/dev/xnull"][2:4] == ["7", "8"]
    assert lines["/dev/xnull"][4:6] == ["1,", "3"]
    assert lines["/dev/sub/xzero"][0] == "crw-rw-rw-" and lines["/dev/sub/xzero"][2:4] == ["0", "0"]
    assert lines["/dev/xfifo"][0] == "prw-------"
    assert r.stdout.splitlines()[-1].split() == ["00", "00", "00"]


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse on this host")
def test_device_rules_allow_deny_and_narrow_access(env):
    # /dev/fuse (10:229): opened read-only or read-write by any root that the
    # device controller lets (a disk's node may be refused here by the host)
    node = [{"path": "/dev/xfuse", "type": "c", "major": 10, "minor": 229}]
    ro = "exec 3</dev/xfuse && echo opened"
    rw = "exec 3<>/dev/xfuse && echo opened"
    # a node the rules do not allow cannot be opened (runc: listing it is not allowing it)
    r = _run(env, "dr1", ro, edit=_linux(devices=node))
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    # all of it allowed, then writing denied again: read-only opens only
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
             {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "w"}]
    edit = lambda c: (_linux(devices=node)(c), _resources(devices=rules)(c))  # noqa: E731
    r = _run(env, "dr2", ro, edit=edit)
    assert r.returncode == 0 and r.stdout.strip() == "opened", r
    r = _run(env, "dr3", rw, edit=edit)
    assert r.returncode != 0 and "opened" not in r.stdout, r
    assert "Operation not permitted" in r.stderr, r
    # allowed everything ("a"): the default devices stay and the node opens read-write
    r = _run(env, "dr4", rw, edit=lambda c: (_linux(devices=node)(c), _resources(devices=[
        {"allow": True, "access": "rwm"}])(c)))
    assert r.returncode == 0 and r.stdout.strip() == "opened", r
    if [d for d in cgroup_dirs(CGROUP_PARENT) if "/devices/" in d + "/"]:
        env("create", "-b", env.bundle("dr5", "true", edit=edit), "dr5", check=True)
        allowed = _cgroup_file("devices", "dr5", "devices.list").splitlines()
        assert "c 10:229 rm" in allowed and "c 1:3 rwm" in allowed
        env("delete", "-f", "dr5", check=True)


def test_bad_devices_are_refused_naming_the_field(env):
    for cid, edit, message in (
        ("bd1", _linux(devices=[{"path": "/etc/x", "type": "c", "major": 1, "minor": 3}]),
         "linux.devices[0].path: /etc/x is not under /dev"),
        ("bd2", _linux(devices=[{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}]),
         "linux.devices[0].type"),
        ("bd3", _linux(devices=[{"path": "/dev/x", "type": "c", "major": "1", "minor": 3}]),
         "linux.devices[0].major"),
        ("bd4", _resources(devices=[{"allow": "yes"}]), "linux.resources.devices[0].allow"),
        ("bd5", _resources(devices=[{"allow": True, "access": "rwx"}]),
         "linux.resources.devices[0].access"),
    ):
        _error(env("create", "-b", env.bundle(cid, "true", edit=edit), cid), message)
    assert env.leftovers() == []


# -- limits -----------------------------------------------------------------------


@pytest.mark.skipif(DISK is None, reason="no disk block device to name")
def test_block_io_throttles_are_in_the_cgroup(env):
    st = os.stat(DISK)
    dev = {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}
    devno = f"{dev['major']}:{dev['minor']}"
    b = env.bundle("io1", "sleep", "100", edit=_resources(blockIO={
        "throttleReadBpsDevice": [{**dev, "rate": 1 << 20}],
        "throttleWriteBpsDevice": [{**dev, "rate": 2 << 20}],
        "throttleReadIOPSDevice": [{**dev, "rate": 100}],
        "throttleWriteIOPSDevice": [{**dev, "rate": 200}]}))
    env("create", "-b", b, "io1", check=True)
    for name, value in (("read_bps", 1 << 20), ("write_bps", 2 << 20), ("read_iops", 100),
                        ("write_iops", 200)):
        assert _cgroup_file("blkio", "io1", f"blkio.throttle.{name}_device").split() == \
            [devno, str(value)]
    env("delete", "-f", "io1", check=True)


def test_memory_reservation_and_swappiness(env):
    b = env.bundle("m1", "sleep", "100", edit=_resources(memory={
        "limit": 64 << 20, "reservation": 32 << 20, "swappiness": 10, "kernel": 1 << 30}))
    env("create", "-b", b, "m1", check=True)
    assert _cgroup_file("memory", "m1", "memory.soft_limit_in_bytes").strip() == str(32 << 20)
    assert _cgroup_file("memory", "m1", "memory.swappiness").strip() == "10"
    env("delete", "-f", "m1", check=True)


def test_limits_the_host_cannot_set_are_one_clear_error(env):
    v1 = os.path.isdir("/sys/fs/cgroup/memory")
    cases = [
        ("hp1", _resources(hugepageLimits=[{"pageSize": "3MB", "limit": 1 << 21}]),
         "linux.resources.hugepageLimits[0].pageSize: 3MB is not a hugepage size"),
        ("hp2", _resources(hugepageLimits=[{"pageSize": "2MB", "limit": "x"}]),
         "linux.resources.hugepageLimits[0].limit"),
        ("un1", _resources(unified={"cgroup.procs": "1"}), "linux.resources.unified"),
        ("bw1", _resources(blockIO={"weight": 5}), "linux.resources.blockIO.weight"),
        ("bw2", _resources(blockIO={"throttleReadBpsDevice": [{"major": 1, "rate": 1}]}),
         "linux.resources.blockIO.throttleReadBpsDevice[0].minor"),
        ("ms1", _resources(memory={"swappiness": 101}), "linux.resources.memory.swappiness"),
    ]
    if v1:  # this host's own case: cgroup v1 (hybrid)
        cases.append(("un2", _resources(unified={"memory.high": "1000000"}),
                      "unified: cgroup v2 files cannot be set on this host"))
        if not os.path.isdir("/sys/fs/cgroup/hugetlb") and os.path.isdir(
                "/sys/kernel/mm/hugepages/hugepages-2048kB"):
            cases.append(("hp3", _resources(hugepageLimits=[
                {"pageSize": "2MB", "limit": 1 << 21}]), "hugepageLimits: this host has no "
                "hugetlb cgroup hierarchy"))
        if not os.path.exists("/sys/fs/cgroup/blkio/blkio.weight"):
            cases.append(("bw3", _resources(blockIO={"weight": 500}),
                          "linux.resources.blockIO.weight is not supported by this host's "
                          "kernel"))
    for cid, edit, message in cases:
        _error(env("create", "-b", env.bundle(cid, "true", edit=edit), cid), message)
    assert env.leftovers() == []


# -- mounts -----------------------------------------------------------------------


@pytest.fixture
def shared_dir(tmp_path):
    """A folder bound onto itself and made shared on the host, as a volume that
    propagates is; unmounted (with whatever came to lie on it) at the end."""
    d = tmp_path / "shared"
    (d / "sub").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    subprocess.run(["mount", "--make-shared", str(d)], check=True)
    yield d
    subprocess.run(["umount", "-R", "-l", str(d)], check=True)
    assert not mounts_of(str(d))


def _bind(source, options):
    return lambda c: c["mounts"].append({"destination": "/mnt", "type": "bind",
                                         "source": str(source), "options": options})


def _mounted(path):
    return any(line.split()[4] == str(path) for line in mounts_of(str(path)))


def _wait_mounted_inside(env, cid, timeout=10):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = env("exec", cid, "sh", "-c", "cat /mnt/sub/marker 2>/dev/null")
        if r.stdout.strip() == "from-host":
            return True
        time.sleep(0.1)
    return False


def test_a_host_mount_appears_under_an_rslave_bind_not_under_an_rprivate_one(env, shared_dir):
    for cid, opts in (("ps1", ["rbind", "rslave"]), ("pp1", ["rbind", "rprivate"])):
        env("run", "-d", "-b", env.bundle(cid, "sleep", "100", edit=_bind(shared_dir, opts)),
            cid, check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                    str(shared_dir / "sub")], check=True)
    (shared_dir / "sub" / "marker").write_text("from-host")
    assert _wait_mounted_inside(env, "ps1")
    r = env("exec", "pp1", "sh", "-c", "ls /mnt/sub")
    assert r.returncode == 0 and r.stdout.strip() == "", r
    for cid in ("ps1", "pp1"):
        env("delete", "-f", cid, check=True)


def test_a_mount_made_inside_an_rshared_bind_appears_on_the_host(env, shared_dir):
    def edit(c):
        _bind(shared_dir, ["rbind", "rshared"])(c)
        c["linux"]["rootfsPropagation"] = "rshared"
        for kind in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][kind].append("CAP_SYS_ADMIN")
    r = _run(env, "sh1", "mount -t tmpfs -o size=1m inside /mnt/sub && "
             "echo made-inside > /mnt/sub/marker && grep -c ' /mnt/sub ' /proc/self/mountinfo",
             edit=edit)
    assert r.returncode == 0, r.stderr
    assert _mounted(shared_dir / "sub")
    assert (shared_dir / "sub" / "marker").read_text() == "made-inside\n"
    # none of the container's own mounts (its /proc, /dev...) reached the host
    assert [line.split()[4] for line in mounts_of(env.rootfs)] == []
    subprocess.run(["umount", str(shared_dir / "sub")], check=True)


def test_rootfs_propagation_private_and_bad_propagation(env, shared_dir):
    r = _run(env, "rp1", "awk '$5 == \"/\"' /proc/self/mountinfo",
             edit=lambda c: c["linux"].update(rootfsPropagation="private"))
    assert r.returncode == 0 and "shared:" not in r.stdout and "master:" not in r.stdout, r
    r = _run(env, "rp2", "awk '$5 == \"/mnt\"' /proc/self/mountinfo",
             edit=_bind(shared_dir, ["rbind", "rslave"]))
    assert r.returncode == 0 and "master:" in r.stdout, r
    _error(env("create", "-b", env.bundle(
        "rp3", "true", edit=lambda c: c["linux"].update(rootfsPropagation="sideways")), "rp3"),
        "linux.rootfsPropagation")
    _error(env("create", "-b", env.bundle("rp4", "true", edit=lambda c: c["mounts"].append(
        {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["rsideways"]})),
        "rp4"), "mounts[7].options: unknown tmpfs option 'rsideways'")
    assert env.leftovers() == mounts_of(str(shared_dir))  # the test's own, for now


def test_tmpcopyup_copies_the_folder_into_the_tmpfs(env):
    etc = os.path.join(env.rootfs, "etc", "app")
    os.makedirs(os.path.join(etc, "conf.d"))
    with open(os.path.join(etc, "main.conf"), "w") as f:
        f.write("key=value\n")
    os.chmod(os.path.join(etc, "main.conf"), 0o604)
    os.chown(os.path.join(etc, "main.conf"), 7, 8)
    os.symlink("main.conf", os.path.join(etc, "link.conf"))
    os.chmod(etc, 0o750)
    r = _run(env, "tc1", "cat /etc/app/link.conf; stat -c '%a %u %g %F' /etc/app/main.conf "
             "/etc/app /etc/app/conf.d; echo new > /etc/app/new; awk '$5 == \"/etc/app\"' "
             "/proc/self/mountinfo | grep -c tmpfs; ls /etc/app",
             edit=lambda c: c["mounts"].append(
                 {"destination": "/etc/app", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "tmpcopyup", "size=1m"]}))
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "key=value"
    assert out[1:4] == ["604 7 8 regular file", "750 0 0 directory", "755 0 0 directory"]
    assert out[4] == "1"
    assert sorted(out[5:]) == ["conf.d", "link.conf", "main.conf", "new"]
    assert not os.path.exists(os.path.join(etc, "new"))  # written to the tmpfs only


def test_a_binds_nosuid_nodev_noexec_and_ro_are_applied(env, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    r = _run(env, "bf1", "awk '$5 == \"/mnt\" {print $6}' /proc/self/mountinfo",
             edit=_bind(src, ["rbind", "rprivate", "nosuid", "nodev", "noexec", "ro"]))
    assert r.returncode == 0, r.stderr
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(r.stdout.strip().split(",")), r.stdout


# -- process.capabilities -------------------------------------------------------

CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE = 1 << 0, 1 << 5, 1 << 10
# Serve one connection on port 80, then connect to it: "served" only when the
# bind (which needs CAP_NET_BIND_SERVICE, in the container's own network) worked.
SERVE_80 = "nc -l -p 80 -e echo served & sleep 0.3; nc 127.0.0.1 80; wait"


def _caps(**sets):
    def edit(c):
        c["process"]["capabilities"] = {k: v for k, v in sets.items() if v is not None}
    return edit


def _user(uid):
    return lambda c: c["process"].update(user={"uid": uid, "gid": uid})


def _status(text):
    """/proc/self/status's capability masks in `text`, as numbers."""
    return {k: int(v, 16) for k, v in (line.split(":") for line in text.splitlines()
                                      if line.startswith("Cap"))}


def test_a_non_root_user_gets_its_ambient_capabilities(env):
    net = ["CAP_NET_BIND_SERVICE"]
    r = _run(env, "ca1", "grep ^Cap /proc/self/status; id -u; " + SERVE_80,
             edit=lambda c: (_user(1000)(c), _caps(**dict.fromkeys(CAP_SETS, net))(c)))
    assert r.returncode == 0, r.stderr
    assert _status(r.stdout) == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), CAP_NET_BIND_SERVICE)
    assert r.stdout.splitlines()[5:] == ["1000", "served"], r
    # the same without the ambient set: execve leaves the user nothing
    r = _run(env, "ca2", "grep ^Cap /proc/self/status; " + SERVE_80,
             edit=lambda c: (_user(1000)(c), _caps(**{**dict.fromkeys(CAP_SETS, net),
                                                      "ambient": None})(c)))
    assert _status(r.stdout) == {"CapInh": CAP_NET_BIND_SERVICE, "CapPrm": 0, "CapEff": 0,
                                 "CapBnd": CAP_NET_BIND_SERVICE, "CapAmb": 0}
    assert "served" not in r.stdout and "Permission denied" in r.stderr, r
    # ambient without inheritable (runc 1.1's spec): left out, as runc and crun do
    r = _run(env, "ca3", "grep ^Cap /proc/self/status; " + SERVE_80,
             edit=lambda c: (_user(1000)(c), _caps(bounding=net, permitted=net,
                                                   effective=net, ambient=net)(c)))
    assert _status(r.stdout) == {
        "CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": CAP_NET_BIND_SERVICE, "CapAmb": 0}, r
    assert "served" not in r.stdout and "Permission denied" in r.stderr, r
    assert env.leftovers() == []


def test_a_root_process_gets_its_sets(env):
    # effective, permitted and bounding reduced alike: what the command holds
    two = ["CAP_CHOWN", "CAP_KILL"]
    r = _run(env, "cr1", "grep ^Cap /proc/self/status; touch /tmp/f; chown 5 /tmp/f && "
             "echo chowned; " + SERVE_80, edit=_caps(bounding=two, permitted=two,
                                                     effective=two))
    assert _status(r.stdout) == {"CapInh": 0, "CapPrm": CAP_CHOWN | CAP_KILL,
                                 "CapEff": CAP_CHOWN | CAP_KILL,
                                 "CapBnd": CAP_CHOWN | CAP_KILL, "CapAmb": 0}
    assert "chowned" in r.stdout and "served" not in r.stdout, r
    # an effective set within a wider bounding set: execve gives root the bounding
    # and inheritable sets whatever its effective set was (the kernel's rule;
    # runtime-spec issue 979), as with runc
    r = _run(env, "cr2", "grep ^Cap /proc/self/status",
             edit=_caps(bounding=two, permitted=two, effective=["CAP_KILL"]))
    assert _status(r.stdout)["CapEff"] == CAP_CHOWN | CAP_KILL, r
    assert env.leftovers() == []


def test_an_exec_applies_the_containers_sets_or_its_processs_own(env, tmp_path):
    net = ["CAP_NET_BIND_SERVICE"]
    b = env.bundle("ce1", "sleep", "100", edit=_caps(
        **dict.fromkeys(CAP_SETS, ["CAP_KILL", "CAP_NET_BIND_SERVICE"])))
    env("run", "--detach", "-b", b, "ce1", check=True)
    both = CAP_KILL | CAP_NET_BIND_SERVICE
    r = env("exec", "--user", "1000:1000", "ce1", "grep", "^Cap", "/proc/self/status")
    assert _status(r.stdout) == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), both), r
    proc = {"args": ["sh", "-c", "grep ^Cap /proc/self/status; " + SERVE_80],
            "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 1000, "gid": 1000},
            "capabilities": dict.fromkeys(CAP_SETS, net)}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    r = env("exec", "--process", str(tmp_path / "p.json"), "ce1")
    assert r.returncode == 0, r.stderr
    assert _status(r.stdout) == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), CAP_NET_BIND_SERVICE)
    assert r.stdout.splitlines()[-1] == "served", r
    proc["capabilities"] = {"bounding": net, "effective": net}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    _error(env("exec", "--process", str(tmp_path / "p.json"), "ce1"),
           f"--process {tmp_path / 'p.json'}: capabilities.effective: CAP_NET_BIND_SERVICE "
           "is not in the permitted set")
    env("delete", "-f", "ce1", check=True)
    assert env.leftovers() == []


def test_bad_capability_sets_are_one_error_and_leave_nothing(env):
    net = ["CAP_NET_BIND_SERVICE"]
    for cid, sets, message in (
            ("cb1", dict(bounding=net, effective=net),
             "config.json: process.capabilities.effective: CAP_NET_BIND_SERVICE is not in "
             "the permitted set (capset(2) refuses an effective capability that is not "
             "permitted)"),
            ("cb2", dict(bounding=net, inheritable=["CAP_SYS_FLY"]),
             "config.json: process.capabilities.inheritable: unknown capability "
             "'CAP_SYS_FLY'")):
        b = env.bundle(cid, "true", edit=lambda c, sets=sets: (_user(1000)(c),
                                                               _caps(**sets)(c)))
        for verb in ("create", "run"):
            _error(env(verb, "-b", b, cid), message)
        assert env.leftovers() == []


# -- the rest of linux.* ----------------------------------------------------------


def test_masked_and_readonly_paths_as_given(env):
    r = _run(env, "mk1", "wc -c < /proc/meminfo; ls /sys/kernel | wc -l; "
             "echo x > /proc/sys/kernel/domainname && echo wrote; cat /proc/uptime >/dev/null "
             "&& echo uptime", edit=_linux(maskedPaths=["/proc/meminfo", "/sys/kernel"],
                                           readonlyPaths=["/proc/sys"]))
    out = r.stdout.split()
    assert out[:2] == ["0", "0"] and "wrote" not in out and "uptime" in out, r
    assert "Read-only file system" in r.stderr


def test_sysctls_are_set_in_the_containers_namespaces(env):
    r = _run(env, "sc1", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax",
             edit=_linux(sysctl={"net.ipv4.ip_forward": "1", "kernel.msgmax": "4242"},
                         readonlyPaths=[]))
    assert r.returncode == 0 and r.stdout.split() == ["1", "4242"], r
    with open("/proc/sys/kernel/msgmax") as f:
        assert f.read().strip() != "4242"  # the host's stays
    _error(env("create", "-b", env.bundle("sc2", "true", edit=_linux(
        sysctl={"kernel.hostname": "x"})), "sc2"), "linux.sysctl: kernel.hostname")


def test_an_oci_seccomp_profile_is_enforced(env):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 13}]}
    r = _run(env, "sp1", "mkdir /tmp/d || echo refused; touch /tmp/f && echo touched",
             edit=_linux(seccomp=profile))
    assert r.stdout.split() == ["refused", "touched"] and "Permission denied" in r.stderr, r
    _error(env("create", "-b", env.bundle("sp2", "true", edit=_linux(
        seccomp={**profile, "defaultAction": "SCMP_ACT_NOPE"})), "sp2"), "linux.seccomp")


def test_cgroups_path_forms_and_annotations(env):
    leaf = f"ctr-oci-test-rel-{os.getpid()}"
    b = env.bundle("cp1", "sleep", "100", annotations={"io.example/owner": "team-a"},
                   edit=_linux(cgroupsPath=f"{leaf}/c1"))
    env("create", "-b", b, "cp1", check=True)
    assert env.state("cp1")["annotations"] == {"io.example/owner": "team-a"}
    with open(f"/proc/{env.state('cp1')['pid']}/cgroup") as f:
        groups = f.read()
    assert f"/ctr-oci/{leaf}/c1\n" in groups  # relative: under ctr-oci's own parent
    env("delete", "-f", "cp1", check=True)
    assert not cgroup_dirs(f"ctr-oci/{leaf}")  # the parents it made went with it
    b = env.bundle("cp2", "sleep", "100")  # absolute (the helper's)
    env("create", "-b", b, "cp2", check=True)
    with open(f"/proc/{env.state('cp2')['pid']}/cgroup") as f:
        assert f"{CGROUP_PARENT}/cp2\n" in f.read()
    env("delete", "-f", "cp2", check=True)
    for cid, value in (("cp3", "a/../../b"), ("cp4", "slice:prefix:name")):
        _error(env("create", "-b", env.bundle(cid, "true", edit=_linux(cgroupsPath=value)),
                   cid), "linux.cgroupsPath")
    _error(env("create", "-b", env.bundle("cp5", "true", annotations={"a": 1}), "cp5"),
           "annotations")
    assert env.leftovers() == []
