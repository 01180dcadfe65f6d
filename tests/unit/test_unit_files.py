"""Unit generation (ctr.systemd) and the notify protocol's pure parts (ctr.sdnotify).
The same units against systemd's own parser: tests/integration/test_systemd.py."""

import errno
import os
import socket

import pytest

from ctr import sdnotify, systemd
from ctr.cli.run import run
from ctr.cli.runflags import _command
from ctr.errors import CgroupError, InvalidSpec
from ctr.host import HostFacts
from ctr.spec import build_spec as _build_spec
from ctr.spec import check_sd_notify

IMAGE = {"name": "busybox", "id": "sha256:abc", "cmd": ["sh"], "env": ["IMG=1"],
         "workdir": "/"}
CTR = "/usr/local/bin/ctr"


def build_spec(**options):
    """ctr.spec.build_spec with this host's facts, as the CLI passes them."""
    return _build_spec(host=HostFacts(), **options)


def block_device():
    for devno in sorted(os.listdir("/sys/dev/block")):
        try:
            return systemd._device_path(devno)
        except InvalidSpec:
            continue
    return None


@pytest.mark.parametrize("arg, expected", [
    ("plain", "plain"),
    ("/a/b:c,d=e", "/a/b:c,d=e"),
    ("50%", "50%%"),
    ("$HOME", "$$HOME"),
    ("a b", '"a b"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("line\nnext\ttab", '"line\\nnext\\ttab"'),
    ("\x01", '"\\x01"'),
    (";", '";"'),
    ("", '""'),
    ("it's", '"it\'s"'),
    ("% $ \\", '"%% $$ \\\\"'),
])
def test_escape_arg(arg, expected):
    assert systemd.escape_arg(arg) == expected


def _rebuild(spec, image=IMAGE):
    """What ctr's own CLI makes of the generated run arguments."""
    argv = systemd.run_args(spec, image)
    assert argv[0] == "run"
    params = run.make_context("run", argv[1:]).params
    for key in ("detach", "interactive", "pull", "platform", "tls_verify"):
        params.pop(key)
    params.pop("image")
    return build_spec(image=image, command=_command(params.pop("command")), **params)


def _comparable(spec, default_hostname):
    d = spec.to_dict()
    for key in ("id", "cgroup_parent", "remove"):
        d.pop(key)
    if default_hostname:
        d.pop("hostname")
        d["env"] = [e for e in d["env"] if not e.startswith("HOSTNAME=")]
    return d


def test_new_rebuilds_the_spec(tmp_path):
    """Round trip: spec -> generated `run` argv -> ctr's CLI parser -> the same spec."""
    src = tmp_path / "data"
    src.mkdir()
    dev = block_device()
    spec = build_spec(
        image=IMAGE, name="web", command=["sh", "-c", 'echo "$A" 50% \\ done', "", ";"],
        env=["A=a b $X %p", "IMG=2", "NL=x\ny"], workdir="/srv", user="1000:1000",
        hostname="web.example", network="none", memory="64m", memory_swap="128m",
        cpus="0.5", cpu_shares="512", cpuset_cpus="0", pids_limit="100",
        blkio_weight="300", cap_add=["SYS_PTRACE"], cap_drop=["NET_RAW", "MKNOD"],
        read_only=True, tmpfs=["/cache:size=1m,noexec"],
        volumes=[f"{src}:/data:ro", f"{src}:/data2"],
        security_opt=["seccomp=unconfined", "no-new-privileges=false"],
        ulimit=["nofile=100:200", "core=0"], sd_notify="container",
        device_read_bps=[f"{dev}:1m"] if dev else ())
    again = _rebuild(spec)
    assert _comparable(again, False) == _comparable(spec, False)
    assert again.remove and again.cgroup_parent == "self"


def test_new_rebuilds_defaults_ports_privileged_and_userns():
    for kw in ({}, {"publish": ["8080:80", "127.0.0.1:53:53/udp"], "ip": "10.1.0.9"},
               {"privileged": True, "cap_drop": ["SYS_ADMIN"]},
               {"userns": "auto", "tty": True, "remove": True},
               {"vm": True, "memory": "128m", "accel": "tcg"},
               {"health_cmd": "curl -f x || exit 1", "health_interval": "1m30s",
                "health_timeout": "500ms", "health_retries": "4",
                "health_start_period": "2s"},
               {"no_healthcheck": True}):
        spec = build_spec(image=IMAGE, name="n", command=["true"], **kw)
        assert _comparable(_rebuild(spec), True) == _comparable(spec, True), kw


def test_new_refuses_a_seccomp_profile_from_a_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    spec = build_spec(image=IMAGE, name="n", command=["true"],
                      security_opt=[f"seccomp={path}"])
    with pytest.raises(InvalidSpec, match="seccomp profile"):
        systemd.run_args(spec, IMAGE)


def _lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_plain_unit():
    spec = build_spec(image=IMAGE, name="web", command=["sleep", "1000"])
    text = systemd.unit(spec, IMAGE, ctr=CTR, stop_timeout=5, restart="always")
    lines = _lines(text)
    for want in ("Type=notify", "NotifyAccess=all", "Delegate=yes", "KillMode=mixed",
                 "Restart=always", "TimeoutStopSec=65", "SuccessExitStatus=143",
                 f"ExecStart={CTR} start -a --cgroup-parent self web",
                 f"ExecStop={CTR} stop -t 5 web", "RequiresMountsFor=/var/lib/ctr",
                 "WantedBy=default.target"):
        assert want in lines, want
    assert not any(line.startswith(("ExecStartPre", "ExecStopPost")) for line in lines)


def test_new_unit_with_a_root_of_its_own():
    spec = build_spec(image=IMAGE, name="web", command=["sleep", "1000"])
    text = systemd.unit(spec, IMAGE, ctr=CTR, root="/srv/my root", new=True)
    lines = _lines(text)
    base = f'{CTR} --root "/srv/my root"'
    assert f"ExecStartPre=-{base} rm -f web" in lines
    assert f"ExecStart={base} run --rm --name web --cgroup-parent self busybox -- sleep 1000" \
        in lines
    assert f"ExecStop=-{base} stop -t 10 web" in lines
    assert f"ExecStopPost=-{base} rm -f web" in lines
    assert not any(line.startswith("RequiresMountsFor") for line in lines)  # not plain


def test_ignore_mode_is_not_type_notify():
    spec = build_spec(image=IMAGE, name="web", command=["true"], sd_notify="ignore")
    lines = _lines(systemd.unit(spec, IMAGE, ctr=CTR))
    assert "Type=exec" in lines and "NotifyAccess=all" not in lines


@pytest.mark.parametrize("kw, message", [
    ({"restart": "sometimes"}, "invalid --restart-policy 'sometimes'"),
    ({"ctr": "ctr"}, "absolute path"),
    ({"stop_timeout": -1}, "invalid --stop-timeout"),
])
def test_unit_refuses(kw, message):
    spec = build_spec(image=IMAGE, name="web", command=["true"])
    with pytest.raises(InvalidSpec, match=message):
        systemd.unit(spec, IMAGE, **{"ctr": CTR, **kw})


def test_a_rm_instance_needs_new():
    spec = build_spec(image=IMAGE, name="web", command=["true"], remove=True)
    with pytest.raises(InvalidSpec, match="use --new"):
        systemd.unit(spec, IMAGE, ctr=CTR)
    assert "ExecStart=" in systemd.unit(spec, IMAGE, ctr=CTR, new=True)


# -- sd_notify ---------------------------------------------------------------------

def test_notify_addresses():
    assert sdnotify.address("/run/systemd/notify") == "/run/systemd/notify"
    assert sdnotify.address("@abstract") == "\0abstract"
    for bad in ("", None, "relative"):
        assert sdnotify.address(bad) is None


def test_the_relay_drops_mainpid():
    assert sdnotify.filter_relayed(b"READY=1\nMAINPID=1\nSTATUS=ok\n") == b"READY=1\nSTATUS=ok"
    assert sdnotify.filter_relayed(b"MAINPID=1") == b""


def test_modes():
    assert check_sd_notify(None) == "conmon"
    with pytest.raises(InvalidSpec, match="invalid --sd-notify 'x'"):
        check_sd_notify("x")
    with pytest.raises(InvalidSpec, match="for containers"):
        build_spec(image=IMAGE, command=["true"], vm=True, sd_notify="container")


def _receiver(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "n"))
    s.settimeout(0.2)
    return s


def test_send_to_a_path_and_to_nothing(tmp_path):
    with _receiver(tmp_path) as s:
        assert sdnotify.send("READY=1", str(tmp_path / "n"))
        assert s.recv(100) == b"READY=1"
    assert not sdnotify.send("READY=1", "")
    assert not sdnotify.send("READY=1", str(tmp_path / "absent"))


def test_ctr_stop_speaks_only_for_its_own_unit(tmp_path, monkeypatch):
    """ExecStop's `ctr stop` sends STOPPING=1 only when systemd's $MAINPID is the
    instance's foreground ctr."""
    with _receiver(tmp_path) as s:
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n"))
        monkeypatch.setenv("MAINPID", "4242")
        sdnotify.stopping_for({"reaper_pid": 4243})
        with pytest.raises(socket.timeout):
            s.recv(100)
        sdnotify.stopping_for({"reaper_pid": 4242})
        assert s.recv(100) == b"STOPPING=1"


def test_ctr_leaves_a_cgroup_it_must_delegate_from(tmp_path, monkeypatch):
    """v2's no-internal-processes rule: enabling controllers in the cgroup ctr
    itself sits in (EBUSY) moves ctr into a 'supervisor' leaf, then succeeds."""
    from ctr.cgroups import v2

    unit = tmp_path / "unit"
    (unit / "inst").mkdir(parents=True)
    (unit / "cgroup.controllers").write_text("memory pids\n")
    (unit / "cgroup.subtree_control").write_text("")
    (unit / "cgroup.procs").write_text(f"{os.getpid()}\n")
    writes = []

    def write(op, path, value):
        if path.endswith("subtree_control") and not writes:
            writes.append(("refused", path))
            raise CgroupError("busy", op=op, path=path, value=value, errno=errno.EBUSY)
        writes.append((path, str(value)))
        with open(path, "w") as f:
            f.write(str(value))

    monkeypatch.setattr(v2, "write", write)
    monkeypatch.setattr(os.path, "dirname", lambda p, d=os.path.dirname: (
        d(p) if str(p).startswith(str(unit)) else "/nonexistent"))
    v2.V2Cgroup({("unified",): str(unit / "inst")})._delegate()
    assert writes[1] == (str(unit / "supervisor" / "cgroup.procs"), str(os.getpid()))
    assert writes[2] == (str(unit / "cgroup.subtree_control"), "+memory +pids")


def test_ctr_run_d_moves_the_waiting_ctr_too(tmp_path, monkeypatch):
    """`run -d`: the monitor (this process) creates the cgroup while the `ctr`
    that forked it (its parent) still waits in the unit's cgroup: both move, or
    the unit would keep a process of its own and the EBUSY would stay. A process
    of the unit's that is not ctr's is left where it is."""
    from ctr.cgroups import v2

    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "cgroup.procs").write_text(f"{os.getppid()}\n{os.getpid()}\n999999999\n")
    moved = []
    monkeypatch.setattr(v2, "write", lambda op, path, value: moved.append((path, value)))
    assert v2.leave_for_supervisor(str(unit))
    leaf = str(unit / "supervisor" / "cgroup.procs")
    assert moved == [(leaf, os.getpid()), (leaf, os.getppid())]


def test_a_cgroup_ctr_is_not_in_is_left_alone(tmp_path, monkeypatch):
    from ctr.cgroups import v2

    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "cgroup.procs").write_text(f"{os.getppid()}\n")  # only the parent: not ctr's call
    monkeypatch.setattr(v2, "write", lambda *a: pytest.fail("nothing may move"))
    assert not v2.leave_for_supervisor(str(unit))
    assert not (unit / "supervisor").exists()
