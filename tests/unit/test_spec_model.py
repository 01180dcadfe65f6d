"""The spec as data: an InstanceSpec built from typed values with no CLI
string (what an OCI config.json or an image's config will do), checked on
typed values, immutable all the way down, spec.json as main's code wrote it,
and the spec package reading nothing of the host nor of ctr but its errors."""

import ast
import dataclasses
import json
import pathlib

import pytest

import ctr
import ctr.spec
from ctr.errors import InvalidSpec
from ctr.host import HostFacts
from ctr.spec import (
    DEFAULT_PATH,
    LOG_DEFAULTS,
    InstanceSpec,
    LogLimits,
    Port,
    Resources,
    Restart,
    Tmpfs,
    Ulimit,
    Userns,
    VmOptions,
    Volume,
    build_spec,
    new_spec,
)
from ctr.store import Store

IMAGE = {"name": "busybox", "id": "sha256:abc", "cmd": ["sh"], "env": ["IMG=1"]}
HOST = HostFacts(cpus_online=(0, 1), memory=1 << 30)

# spec.json as main's code (ctr/spec.py before the package) wrote them:
# `ctr run` with nearly every option, a --userns=auto container once its block
# of ids is allocated, and a VM.
MAIN_CONTAINER = (
    {'caps': ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
              'NET_BIND_SERVICE', 'SYS_CHROOT', 'SYS_PTRACE', 'MKNOD', 'AUDIT_WRITE', 'SETFCAP'],
     'cgroup_parent': '/mine/sub',
     'command': ['sh', '-c', 'echo hi'],
     'env': ['IMG=1', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
             'HOSTNAME=web.example', 'container=ctr', 'SYSTEMD_GETTY_AUTO=0', 'A=1'],
     'hostname': 'web.example',
     'id': '6738e37e599d97eb3c224e6fab83b135334276154c3b9178fbd7436f0a6ede2a',
     'image': 'busybox',
     'image_id': 'sha256:abc',
     'init': True,
     'ip': '10.88.0.9',
     'kind': 'container',
     'log': {'max_files': 2, 'max_size': 1048576},
     'name': 'web',
     'network': 'bridge',
     'no_new_privs': False,
     'ports': [{'host_ip': '0.0.0.0', 'host_port': 8080, 'port': 80, 'proto': 'tcp'},
               {'host_ip': '127.0.0.1', 'host_port': 5353, 'port': 53, 'proto': 'udp'}],
     'privileged': False,
     'read_only': True,
     'remove': False,
     'resources': {'blkio_weight': 300,
                   'cpu_shares': 512,
                   'cpus': 0.5,
                   'cpuset_cpus': '0,1',
                   'device_read_bps': [['7:0', 10485760]],
                   'device_write_bps': [['7:1', 1048576]],
                   'memory': 67108864,
                   'memory_swap': 134217728,
                   'pids_limit': 100},
     'restart': {'max_retries': 3, 'policy': 'on-failure'},
     'sd_notify': 'container',
     'seccomp': {'defaultAction': 'SCMP_ACT_ALLOW',
                 'syscalls': [{'action': 'SCMP_ACT_ERRNO',
                               'args': [{'index': 0, 'op': 'SCMP_CMP_EQ', 'value': 0}],
                               'errnoRet': 1,
                               'names': ['mount', 'umount2']}]},
     'stop_signal': 'SIGPWR',
     'tmpfs': [{'data': 'size=1m', 'flags': ['noexec'], 'path': '/cache'},
               {'data': 'mode=1777', 'flags': ['nosuid', 'nodev'], 'path': '/tmp'},
               {'data': 'mode=1777', 'flags': ['nosuid', 'nodev'], 'path': '/run'},
               {'data': 'mode=1777,size=5m',
                'flags': ['nosuid', 'nodev', 'noexec'],
                'path': '/run/lock'}],
     'tty': False,
     'ulimits': [{'hard': 2048, 'name': 'nofile', 'soft': 1024},
                 {'hard': 0, 'name': 'core', 'soft': 0}],
     'user': '1000:1000',
     'userns': {},
     'vm': {},
     'volumes': [{'readonly': True, 'source': '/tmp/specgen/vol', 'target': '/data'}],
     'workdir': '/srv'}
)

MAIN_USERNS = (
    {'caps': ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
              'NET_BIND_SERVICE', 'NET_RAW', 'SYS_CHROOT', 'MKNOD', 'AUDIT_WRITE', 'SETFCAP'],
     'cgroup_parent': None,
     'command': ['true'],
     'env': ['IMG=1', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
             'HOSTNAME=6deb9c912047'],
     'hostname': '6deb9c912047',
     'id': '6deb9c912047921100cc9c82014260e0dd10f1b9423331ece7046eeca484fed1',
     'image': 'busybox',
     'image_id': 'sha256:abc',
     'init': False,
     'ip': None,
     'kind': 'container',
     'log': {'max_files': 3, 'max_size': 10485760},
     'name': 'shifted',
     'network': 'bridge',
     'no_new_privs': True,
     'ports': [],
     'privileged': False,
     'read_only': False,
     'remove': False,
     'resources': {},
     'restart': {'max_retries': 0, 'policy': 'no'},
     'sd_notify': 'conmon',
     'seccomp': 'default',
     'stop_signal': 'SIGRTMIN+4',
     'tmpfs': [],
     'tty': False,
     'ulimits': [],
     'user': None,
     'userns': {'gid': 1000065536, 'size': 65536, 'uid': 1000065536},
     'vm': {},
     'volumes': [],
     'workdir': '/'}
)

MAIN_VM = (
    {'caps': ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
              'NET_BIND_SERVICE', 'NET_RAW', 'SYS_CHROOT', 'MKNOD', 'AUDIT_WRITE', 'SETFCAP'],
     'cgroup_parent': None,
     'command': ['sh'],
     'env': ['IMG=1', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
             'HOSTNAME=d1d9feac02e8'],
     'hostname': 'd1d9feac02e8',
     'id': 'd1d9feac02e8e2aeeb1ec127cf5f580c2abc43db26ead7babb750f3d0d8b6c16',
     'image': 'busybox',
     'image_id': 'sha256:abc',
     'init': False,
     'ip': None,
     'kind': 'vm',
     'log': {'max_files': 3, 'max_size': 10485760},
     'name': 'vm1',
     'network': 'bridge',
     'no_new_privs': True,
     'ports': [],
     'privileged': False,
     'read_only': False,
     'remove': False,
     'resources': {'cpus': 1.0, 'memory': 536870912},
     'restart': {'max_retries': 0, 'policy': 'no'},
     'sd_notify': 'conmon',
     'seccomp': 'default',
     'stop_signal': 'SIGTERM',
     'tmpfs': [],
     'tty': False,
     'ulimits': [],
     'user': None,
     'userns': {},
     'vm': {'accel': 'tcg', 'kernel': '/tmp/specgen/p.json', 'memory': 536870912},
     'volumes': [],
     'workdir': '/'}
)

MAIN_SPECS = (MAIN_CONTAINER, MAIN_USERNS, MAIN_VM)


# -- typed values in ---------------------------------------------------------------------

def test_a_spec_from_typed_values_only():
    spec = new_spec(
        image=IMAGE, command=("sleep", "1"), name="typed", network="none",
        resources=Resources(memory=64 << 20, cpus=1.5, pids_limit=64),
        caps=("NET_ADMIN", "CHOWN"),
        tmpfs=(Tmpfs(path="/scratch", flags=("noexec",), data="size=1m"),),
        volumes=(Volume(source="/srv", target="/srv", readonly=True),),
        ulimits=(Ulimit(name="nofile", soft=10, hard=20),),
        restart=Restart(policy="on-failure", max_retries=2), host=HOST)
    assert spec.resources == {"memory": 64 << 20, "cpus": 1.5, "pids_limit": 64}
    assert spec.resources.cpus == 1.5 and spec.resources.memory_swap is None
    assert spec.caps == ("CHOWN", "NET_ADMIN")  # kernel order
    assert spec.command == ("sleep", "1") and spec.hostname == spec.id[:12]
    assert spec.env == ("IMG=1", f"PATH={DEFAULT_PATH}", f"HOSTNAME={spec.hostname}")
    assert spec.restart["policy"] == "on-failure" and spec.log == LOG_DEFAULTS
    assert spec.seccomp == "default" and spec.no_new_privs and spec.stop_signal == "SIGTERM"


def test_typed_values_and_cli_strings_make_the_same_spec():
    cli = build_spec(image=IMAGE, command=["true"], name="a", memory="64m", cpus="1.5",
                     network="none", cap_add=["net_admin"], tmpfs=["/x:size=1m"],
                     ulimit=["nofile=10:20"], restart="always", stop_signal="9", host=HOST)
    typed = new_spec(image=IMAGE, command=("true",), name="a", network="none",
                     resources=Resources(memory=64 << 20, cpus=1.5),
                     caps=(*ctr.spec.DEFAULT_CAPS, "NET_ADMIN"),
                     tmpfs=(Tmpfs(path="/x", data="size=1m"),),
                     ulimits=(Ulimit(name="nofile", soft=10, hard=20),),
                     restart=Restart(policy="always"), stop_signal=9, host=HOST)
    assert dataclasses.replace(typed, id=cli.id, hostname=cli.hostname, env=cli.env) == cli


def test_policies_fill_in_what_is_not_given():
    vm = new_spec(image=IMAGE, kind="vm", resources=Resources(memory=128 << 20),
                  vm=VmOptions(accel="tcg"), host=HOST)
    assert vm.vm == {"memory": 128 << 20, "accel": "tcg"} and vm.command == ("sh",)
    assert new_spec(image=IMAGE, kind="vm", host=HOST).vm.memory == 256 << 20
    ro = new_spec(image=IMAGE, read_only=True, tmpfs=({"path": "/run"},))
    assert [t.path for t in ro.tmpfs] == ["/run", "/tmp"]
    privileged = new_spec(image=IMAGE, privileged=True, seccomp="default")
    assert privileged.seccomp == "unconfined" and len(privileged.caps) == len(ctr.spec.ALL_CAPS)


def test_host_facts_are_asked_only_when_needed():
    new_spec(image=IMAGE, resources=Resources(memory=64 << 20))  # no host needed
    with pytest.raises(TypeError, match="needs facts of the host"):
        new_spec(image=IMAGE, resources=Resources(cpus=1.0))


@pytest.mark.parametrize("kw,match", [
    ({"resources": Resources(memory_swap=1 << 30)}, "needs --memory"),
    ({"resources": Resources(memory=1 << 20)}, "minimum is 6m"),
    ({"resources": Resources(cpus=3.0)}, "between 0.01 and 2"),
    ({"resources": Resources(cpuset_cpus="0,5")}, "CPU 5 is not online"),
    ({"resources": Resources(cpu_shares=512, cpu_weight=100)}, "not both"),
    ({"resources": Resources(pids_limit=0)}, "--pids-limit 0"),
    ({"resources": Resources(device_read_bps=(("sda", 1),))}, "MAJOR:MINOR"),
    ({"ports": (Port(host_port=80, port=80),), "network": "none"}, "need a bridge network"),
    ({"ip": "10.0.0.2", "network": "host"}, "need a bridge network"),
    ({"ports": (Port(host_port=80, port=80), Port(host_port=80, port=81))}, "published twice"),
    ({"ports": (Port(host_port=0, port=80),)}, "ports are 1-65535"),
    ({"userns": Userns(mode="auto"), "privileged": True}, "exclude each other"),
    ({"userns": Userns(mode="auto"), "network": "host"}, "network namespace of its own"),
    ({"userns": Userns(mode="auto"), "kind": "vm"}, "--userns=auto is for containers"),
    ({"vm": VmOptions(kernel="/boot/vmlinuz")}, "--kernel: only for VMs"),
    ({"kind": "vm", "volumes": (Volume(source="/srv", target="/srv"),)}, "for containers"),
    ({"kind": "vm", "tty": True}, "-t is not supported for VMs"),
    ({"kind": "vm", "network": "host"}, "not possible for a VM"),
    ({"kind": "vm", "vm": VmOptions(accel="xen")}, "invalid --accel"),
    ({"kind": "vm", "resources": Resources(memory=2 << 30)}, "more than the host has"),
    ({"kind": "vm", "resources": Resources(memory=32 << 20)}, "at least 64m"),
    ({"restart": Restart(policy="always"), "remove": True}, "--restart and --rm conflict"),
    ({"restart": Restart(policy="sometimes")}, "invalid --restart"),
    ({"init": True, "userns": Userns(mode="auto")}, "not supported yet"),
    ({"init": True, "kind": "vm"}, "--init is for containers"),
    ({"sd_notify": "container", "kind": "vm"}, "--sd-notify=container is for containers"),
    ({"sd_notify": "maybe"}, "invalid --sd-notify"),
    ({"caps": ("CHOWN", "FLY")}, "unknown capability FLY"),
    ({"tmpfs": (Tmpfs(path="rel"),)}, "invalid --tmpfs"),
    ({"tmpfs": (Tmpfs(path="/x", flags=("bogus",)),)}, "unknown option"),
    ({"volumes": (Volume(source="/srv", target="/"),)}, "cannot mount over the root"),
    ({"ulimits": (Ulimit(name="nofile", soft=20, hard=10),)}, "soft limit is above"),
    ({"log": LogLimits(max_size=1024)}, "at least 4k"),
    ({"log": LogLimits(max_files=0)}, "--log-max-files"),
    ({"env": ("NOEQUALS",)}, "invalid environment variable"),
    ({"workdir": "rel"}, "absolute path"),
    ({"kind": "toaster"}, "kind"),
    ({"command": ("a\0b",)}, "NUL"),
    ({"stop_signal": "SIGNOPE"}, "invalid --stop-signal"),
    ({"network": "bad name!"}, "invalid network name"),
    ({"seccomp": "strict"}, "invalid seccomp"),
])
def test_invalid_typed_combinations_are_refused(kw, match):
    with pytest.raises(InvalidSpec, match=match):
        new_spec(**{"image": IMAGE, "command": ("true",), "host": HOST, **kw})


def test_a_typed_entry_has_its_fields_and_no_others():
    assert Port(host_port=8080, port=80) == {"host_ip": "0.0.0.0", "host_port": 8080,
                                             "port": 80, "proto": "tcp"}
    with pytest.raises(TypeError, match="unknown fields"):
        Port(host_port=1, port=2, bogus=3)
    with pytest.raises(TypeError, match="host_port is required"):
        Port(port=2)
    with pytest.raises(AttributeError):
        Port(host_port=1, port=2).bogus  # noqa: B018


# -- immutable all the way down ------------------------------------------------------------

def test_nothing_in_a_spec_can_be_changed():
    spec = InstanceSpec.from_dict(MAIN_CONTAINER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"
    changes = (
        lambda: spec.resources.__setitem__("memory", 1),
        lambda: spec.resources.update(memory=1),
        lambda: spec.resources.pop("memory"),
        lambda: spec.resources.__delitem__("memory"),
        lambda: spec.restart.clear(),
        lambda: spec.log.popitem(),
        lambda: spec.userns.setdefault("mode", "auto"),
        lambda: spec.ports[0].__setitem__("port", 1),
        lambda: spec.seccomp["syscalls"][0].update(action="SCMP_ACT_ALLOW"),
        lambda: spec.vm.__ior__({"memory": 1}),
        lambda: spec.resources.__init__(memory=1),
    )
    for change in changes:
        with pytest.raises(TypeError, match="immutable"):
            change()
    for seq in (spec.command, spec.env, spec.ports, spec.caps, spec.tmpfs, spec.volumes,
                spec.ulimits, spec.tmpfs[0]["flags"], spec.seccomp["syscalls"],
                spec.resources["device_read_bps"], spec.resources["device_read_bps"][0]):
        assert isinstance(seq, tuple)
    assert hash(spec) == hash(InstanceSpec.from_dict(MAIN_CONTAINER))


def test_a_changed_spec_is_a_new_one_frozen_too():
    spec = InstanceSpec.from_dict(MAIN_USERNS)
    other = dataclasses.replace(
        spec, resources={"memory": 64 << 20},
        volumes=(*spec.volumes, {"source": "/a", "target": "/b", "readonly": False}))
    assert isinstance(other.resources, Resources) and isinstance(other.volumes[-1], Volume)
    assert spec.resources == {} and other.resources.memory == 64 << 20
    with pytest.raises(TypeError):
        other.volumes[-1]["readonly"] = True


def test_frozen_values_equal_their_plain_json():
    t = Tmpfs(path="/x", flags=("noexec",))
    plain = {"path": "/x", "flags": ["noexec"], "data": ""}
    assert t == plain and plain == t
    assert t != {"path": "/y", "flags": ["noexec"], "data": ""}
    assert json.loads(json.dumps(t)) == t


# -- spec.json ------------------------------------------------------------------------------

def _plain(value):
    if type(value) is dict:
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if type(value) is list:
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


@pytest.mark.parametrize("written", MAIN_SPECS, ids=("container", "userns", "vm"))
def test_spec_json_written_by_main_loads_and_is_written_the_same(written):
    spec = InstanceSpec.from_dict(json.loads(json.dumps(written)))
    assert _plain(spec.to_dict())
    assert json.dumps(spec.to_dict(), sort_keys=True) == json.dumps(written, sort_keys=True)
    assert InstanceSpec.from_dict(spec.to_dict()) == spec


def test_a_spec_through_the_store(tmp_path):
    spec = InstanceSpec.from_dict(MAIN_CONTAINER)
    rec = Store(str(tmp_path)).create_record(spec)
    with open(rec.spec_path) as f:
        assert json.load(f) == MAIN_CONTAINER
    assert Store(str(tmp_path)).record("web").spec == spec


def test_a_new_spec_round_trips():
    for kw in ({}, {"kind": "vm", "vm": VmOptions(accel="kvm")},
               {"init": True, "read_only": True, "ports": (Port(host_port=1, port=2),)}):
        spec = new_spec(image=IMAGE, host=HOST, **kw)
        assert _plain(spec.to_dict())
        assert InstanceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# -- what the package imports ------------------------------------------------------------

def _imports(path):
    """Every module a file imports, at the top or inside functions."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "ctr.spec" if node.level else node.module
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def test_the_spec_package_imports_nothing_of_ctr_but_errors():
    # and ctr.lazyre, which imports nothing of ctr
    for path in pathlib.Path(ctr.spec.__file__).parent.glob("*.py"):
        for name in _imports(path):
            if name == "ctr" or name.startswith("ctr."):
                assert name in ("ctr", "ctr.errors", "ctr.errors.InvalidSpec", "ctr.lazyre") or \
                    name.startswith("ctr.spec"), (path.name, name)
