"""System containers without root: --init and --stop-signal in the spec, the
init's extra mounts (through a recording fake of the syscall seam), the cgroup
checks, and how the debian recipe finds the host's Debian mirror."""

import os
import signal
import subprocess

import pytest

from ctr import rootfs
from ctr.cgroups.common import _cgroup_of
from ctr.errors import InvalidSpec
from ctr.host import HostFacts
from ctr.images.recipe import recipe_path
from ctr.namespaces import check_own_cgroup2
from ctr.native import MS_BIND, MS_RDONLY, MS_REMOUNT, Syscalls
from ctr.process import InitFailure
from ctr.spec import InstanceSpec, parse_signal, signal_name
from ctr.spec import build_spec as _build_spec


def build_spec(**options):
    """ctr.spec.build_spec with this host's facts, as the CLI passes them."""
    return _build_spec(host=HostFacts(), **options)


# -- signals ------------------------------------------------------------------------


@pytest.mark.parametrize("value,num", [
    ("RTMIN+3", signal.SIGRTMIN + 3), ("SIGRTMIN+3", signal.SIGRTMIN + 3),
    ("sigrtmin", signal.SIGRTMIN), ("RTMAX-1", signal.SIGRTMAX - 1), ("37", 37),
    ("TERM", 15), ("SIGPWR", signal.SIGPWR),
])
def test_parse_signal_real_time_and_named(value, num):
    assert parse_signal(value) == num


@pytest.mark.parametrize("value", ["RTMIN+99", "RTMAX-99", "RTMIN+", "RTMIN-1", "SIGFOO"])
def test_parse_signal_refuses(value):
    with pytest.raises(InvalidSpec, match="invalid --stop-signal"):
        parse_signal(value, "--stop-signal")


def test_signal_names_round_trip():
    assert signal_name(signal.SIGRTMIN + 3) == "SIGRTMIN+3"
    assert signal_name(signal.SIGRTMIN) == "SIGRTMIN"
    assert signal_name(15) == "SIGTERM"
    for num in (1, 9, 15, signal.SIGRTMIN, signal.SIGRTMIN + 3, signal.SIGRTMAX):
        assert parse_signal(signal_name(num)) == num


# -- the spec -----------------------------------------------------------------------


@pytest.fixture
def image(tmp_path):
    """An image whose /sbin/init resolves the way Debian's does: /sbin -> usr/sbin,
    init -> /lib/systemd/systemd (absolute: resolved inside the image)."""
    root = tmp_path / "rootfs"
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/lib/systemd").mkdir(parents=True)
    os.symlink("usr/sbin", root / "sbin")
    os.symlink("usr/lib", root / "lib")
    os.symlink("/lib/systemd/systemd", root / "usr/sbin/init")
    (root / "usr/lib/systemd/systemd").write_text("#!/bin/true\n")
    os.chmod(root / "usr/lib/systemd/systemd", 0o755)
    return {"name": "debian", "id": "sha256:abc", "cmd": ["bash"], "env": [],
            "rootfs": str(root)}


def test_init_boots_sbin_init_with_what_systemd_expects(image):
    spec = build_spec(image=image, command=(), init=True)
    assert spec.init and spec.command == ("/sbin/init",)
    assert "container=ctr" in spec.env
    assert "SYSTEMD_GETTY_AUTO=0" in spec.env  # no terminal: no console getty
    assert "SYSTEMD_GETTY_AUTO=0" not in build_spec(image=image, command=(), init=True,
                                                    tty=True).env
    assert spec.stop_signal == "SIGRTMIN+3"
    assert [t["path"] for t in spec.tmpfs] == ["/run", "/run/lock", "/tmp"]
    assert not spec.no_new_privs  # su, passwd and friends work in a whole system
    assert spec.caps == build_spec(image=image, command=()).caps  # docker's default set


def test_init_keeps_what_the_user_chose(image):
    spec = build_spec(image=image, command=("/lib/systemd/systemd", "--log-level=debug"),
                      init=True, stop_signal="SIGPWR", tmpfs=("/tmp:size=1m",),
                      security_opt=("no-new-privileges",))
    assert spec.command == ("/lib/systemd/systemd", "--log-level=debug")
    assert spec.stop_signal == "SIGPWR"
    assert [t for t in spec.tmpfs if t["path"] == "/tmp"][0]["data"] == "size=1m"
    assert len([t for t in spec.tmpfs if t["path"] == "/tmp"]) == 1
    assert spec.no_new_privs


def test_without_init_nothing_changes(image):
    spec = build_spec(image=image, command=())
    assert not spec.init and spec.command == ("bash",) and spec.stop_signal == "SIGTERM"
    assert not spec.tmpfs and not any(e.startswith("container=") for e in spec.env)
    assert build_spec(image=image, command=(), stop_signal="9").stop_signal == "SIGKILL"


def test_init_refusals(image, tmp_path):
    os.unlink(os.path.join(image["rootfs"], "usr/sbin/init"))
    with pytest.raises(InvalidSpec, match="has no /sbin/init"):
        build_spec(image=image, command=(), init=True)
    with pytest.raises(InvalidSpec, match="--init is for containers"):
        build_spec(image=image, command=("x",), init=True, vm=True)
    with pytest.raises(InvalidSpec, match="--userns=auto is not supported"):
        build_spec(image=image, command=("x",), init=True, userns="auto")
    with pytest.raises(InvalidSpec, match="invalid --stop-signal 'SIGNOPE'"):
        build_spec(image=image, command=("x",), stop_signal="SIGNOPE")


def test_a_spec_written_before_init_existed_still_loads(image):
    d = build_spec(image=image, command=()).to_dict()
    del d["init"], d["stop_signal"]
    spec = InstanceSpec.from_dict(d)
    assert not spec.init and spec.stop_signal == "SIGTERM"


# -- the mounts ----------------------------------------------------------------------


class Recorder(Syscalls):
    def __init__(self, existing=()):
        self.calls = []
        self.existing = set(existing)

    def __getattribute__(self, name):
        if name in ("mount", "umount2", "mknod", "symlink", "makedirs", "touch", "chmod",
                    "plain_file", "write_file", "unlink"):
            return lambda *a, **k: self.calls.append((name, *a))
        return object.__getattribute__(self, name)

    def exists(self, path):
        return path in self.existing

    def isdir(self, path):
        return path == "/r/proc/sys"

    def readlink(self, path):
        return None


BOOT_ID = "/r/proc/sys/kernel/random/boot_id"


def _prepare(sc, **kw):
    rootfs.prepare(sc, lower="/l", upper="/u", work="/w", root="/r",
                   tmpfs=({"path": "/run", "flags": [], "data": "mode=755"},), **kw)
    return [c[1:] for c in sc.calls if c[0] == "mount"]


@pytest.mark.parametrize("privileged", [False, True])
def test_init_mounts(privileged):
    sc = Recorder(existing={"/r/proc/sys", BOOT_ID})
    mounts = _prepare(sc, init=True, privileged=privileged)
    targets = [m[1] for m in mounts]
    # its own cgroup view, writable (the cgroup namespace makes it the container's)
    view = mounts[targets.index("/r/sys/fs/cgroup")]
    assert view[0] == "cgroup2" and view[2] == "cgroup2" and not view[3] & MS_RDONLY
    assert targets.index("/r/sys") < targets.index("/r/sys/fs/cgroup")
    # /proc/sys read-only, even with --privileged; then the boot id over it, read-only
    ro = [m for m in mounts if m[1] == "/r/proc/sys" and m[3] & MS_REMOUNT]
    assert ro and ro[0][3] & MS_RDONLY
    boot = [m for m in mounts if m[1] == BOOT_ID]
    assert targets.index("/r/proc/sys") < targets.index(BOOT_ID)
    assert targets.index("/r/run") < targets.index(BOOT_ID)  # the source is on /run
    assert boot[0] == ("/r/run/.ctr-boot-id", BOOT_ID, None, MS_BIND)
    assert boot[1][3] & (MS_REMOUNT | MS_RDONLY) == MS_REMOUNT | MS_RDONLY
    written = [c for c in sc.calls if c[0] == "write_file"]
    assert written[0][1] == "/r/run/.ctr-boot-id"
    assert ("unlink", "/r/run/.ctr-boot-id") in sc.calls  # nothing left on /run


def test_no_init_no_extra_mounts():
    mounts = _prepare(Recorder(existing={"/r/proc/sys", BOOT_ID}))
    assert not [m for m in mounts if m[1] in ("/r/sys/fs/cgroup", BOOT_ID)]
    mounts = _prepare(Recorder(existing={"/r/proc/sys", BOOT_ID}), privileged=True)
    assert not [m for m in mounts if m[1] == "/r/proc/sys"]  # --privileged alone: writable


def test_boot_ids_are_fresh_uuids():
    import uuid

    ids = {rootfs.new_boot_id() for _ in range(100)}
    assert len(ids) == 100
    for i in ids:
        assert i.endswith("\n") and uuid.UUID(i.strip()).version == 4


# -- cgroup checks -------------------------------------------------------------------


@pytest.mark.parametrize("text,ok", [
    ("4:memory:/x\n0::/ctr/abc\n", True),
    ("0::/\n", False),            # the host's root: the init would see the whole host
    ("4:memory:/ctr/abc\n", False),  # no cgroup2 at all (a v1-only host)
])
def test_check_own_cgroup2(tmp_path, text, ok):
    f = tmp_path / "cgroup"
    f.write_text(text)
    if ok:
        check_own_cgroup2(str(f))
    else:
        with pytest.raises(InitFailure, match="no cgroup2 folder of its own"):
            check_own_cgroup2(str(f))


def test_exec_falls_back_to_the_inits_cgroup_only_within_the_instance(tmp_path):
    found = [("/sys/fs/cgroup/unified", ("unified",))]
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cgroup").write_text("1:cpu:/ctr/a\n0::/ctr/a/init.scope\n")
    inside = "/sys/fs/cgroup/unified/ctr/a"
    assert _cgroup_of(7, inside, str(tmp_path), found) == inside + "/init.scope"
    assert _cgroup_of(7, "/sys/fs/cgroup/unified/ctr/b", str(tmp_path), found) is None
    assert _cgroup_of(8, inside, str(tmp_path), found) is None  # gone


# -- the debian recipe's mirror --------------------------------------------------------


def mirror(tmp_path, files, **env):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (etc / name).write_text(text)
    r = subprocess.run(["sh", recipe_path("debian"), "--print-mirror"], capture_output=True,
                       text=True, env={"PATH": os.environ["PATH"], "APT_ETC": str(etc), **env},
                       check=True)
    return r.stdout.strip()


DEB822 = """\
Types: deb
URIs: http://security.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example.org/debian
Suites: bookworm

Types: deb
URIs: http://off.example.org/debian
Suites: bookworm
Enabled: no

Types: deb
# a comment in a stanza
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
"""


@pytest.mark.parametrize("files,expected", [
    ({"sources.list.d/debian.sources": DEB822}, "http://mirror.example.org/debian"),
    ({"sources.list": "# deb http://commented.example/debian bookworm main\n"
                      "deb [arch=amd64 signed-by=/k.gpg] https://one.example/debian trixie main\n"},
     "https://one.example/debian"),
    # a .list entry comes before a .sources one, as apt reads them
    ({"sources.list": "deb http://list.example/debian stable main\n",
      "sources.list.d/debian.sources": DEB822}, "http://list.example/debian"),
    # not a Debian mirror (Ubuntu's suites), nor one debootstrap can fetch from
    ({"sources.list": "deb http://archive.ubuntu.com/ubuntu jammy main\n"
                      "deb cdrom:[Debian]/ bookworm main\n"}, "http://deb.debian.org/debian"),
    ({}, "http://deb.debian.org/debian"),
])
def test_mirror_from_the_hosts_apt(tmp_path, files, expected):
    assert mirror(tmp_path, files) == expected


def test_mirror_override(tmp_path):
    assert mirror(tmp_path, {"sources.list.d/debian.sources": DEB822},
                  MIRROR="http://x.example/debian") == "http://x.example/debian"
