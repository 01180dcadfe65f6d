"""docker's run flags beyond the basics (ctr.spec.options), without root:
parsing, the checks between them and the rest of a spec, spec.json, the
/etc files they write, and the cgroup files of the new limits."""

import json

import pytest

from ctr import net
from ctr.cgroups.v2 import V2Cgroup
from ctr.errors import InvalidSpec
from ctr.host import HostFacts
from ctr.spec import InstanceSpec, RunOptions, build_spec, new_spec, parse_options

HOST = HostFacts(cpus_online=(0, 1), memory=8 << 30)
IMAGE = {"name": "busybox", "id": "sha256:" + "0" * 64, "cmd": ["sh"]}


class FakeHost:
    cpus_online = (0, 1)
    memory = 8 << 30

    @staticmethod
    def device(path):
        if path == "/dev/missing":
            raise FileNotFoundError(2, "No such file or directory")
        if path == "/etc/passwd":
            return None
        return {"type": "c", "major": 10, "minor": 229, "mode": 0o600, "uid": 0, "gid": 0}


def spec(**kw):
    return build_spec(image=IMAGE, command=["true"], network=kw.pop("network", "none"),
                      host=FakeHost(), **kw)


def test_options_given_are_parsed_into_typed_values():
    opts = parse_options(add_host=["a:10.0.0.1", "b=fd00::1", "gw:host-gateway"],
                         dns=["9.9.9.9"], dns_search=["x.example"], dns_option=["ndots:2"],
                         device=["/dev/fuse", "/dev/fuse:/dev/f:r", "/dev/fuse:rw"],
                         shm_size="16m", sysctl=["net/ipv4/ip_forward=1"], pid="host",
                         ipc="shareable", group_add=["wheel", "10"], oom_score_adj="-5",
                         host=FakeHost())
    assert opts.extra_hosts == (("a", "10.0.0.1"), ("b", "fd00::1"), ("gw", "host-gateway"))
    assert [(d.target, d.access) for d in opts.devices] == [
        ("/dev/fuse", "rwm"), ("/dev/f", "r"), ("/dev/fuse", "rw")]
    assert opts.shm_size == 16 << 20 and opts.sysctls == {"net.ipv4.ip_forward": "1"}
    assert (opts.pid, opts.ipc, opts.uts) == ("host", "shareable", None)
    assert opts.group_add == ("wheel", "10") and opts.oom_score_adj == -5
    assert parse_options() == RunOptions()  # none given: empty


def test_spec_json_keeps_them_and_leaves_them_out_when_none():
    plain = spec()
    assert "options" not in plain.to_dict()  # as an older ctr wrote it, and reads it
    s = spec(add_host=["a:10.0.0.1"], device=["/dev/fuse:/dev/f:rw"], sysctl=["kernel.sem=1"],
             cpu_period="50000", cpu_quota="25000", memory_reservation="32m")
    again = InstanceSpec.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and again.options.devices[0]["access"] == "rw"
    assert again.resources.cpu_quota == 25000


def test_uts_host_has_no_hostname_of_its_own():
    s = spec(uts="host")
    assert s.hostname == "" and not any(e.startswith("HOSTNAME=") for e in s.env)
    with pytest.raises(InvalidSpec, match="--hostname and --uts host conflict"):
        spec(uts="host", hostname="x")


@pytest.mark.parametrize("kw, match", [
    ({"sysctl": ["kernel.pid_max=1"]}, "would change the host's"),
    ({"sysctl": ["net.core.somaxconn=1"], "network": "host"}, "--network host"),
    ({"sysctl": ["kernel.msgmax=1"], "ipc": "container:x"}, "--ipc container:x"),
    ({"device": ["/dev/missing"]}, "No such file"),
    ({"device": ["/etc/passwd"]}, "is not a device node"),
    ({"device": ["/dev/fuse:/srv/f"]}, "under /dev"),
    ({"shm_size": "1m", "ipc": "host"}, "--shm-size needs"),
    ({"cpus": "1", "cpu_period": "50000"}, "not both"),
    ({"memory": "64m", "memory_reservation": "65m"}, "at most --memory"),
    ({"userns": "auto", "pid": "host"}, "--userns=auto needs"),
    ({"dns": ["1.1.1.1"], "network": "container:web"}, "cannot be used with --network"),
])
def test_what_cannot_hold_is_refused(kw, match):
    with pytest.raises(InvalidSpec, match=match):
        spec(**kw)


def test_a_vm_takes_the_etc_files_and_refuses_the_kernels_knobs():
    vm = spec(vm=True, add_host=["a:10.0.0.1"], dns=["1.1.1.1"], oom_score_adj="100")
    assert vm.kind == "vm" and vm.options.dns == ("1.1.1.1",)
    with pytest.raises(InvalidSpec, match="--device, --pid: for containers only"):
        spec(vm=True, device=["/dev/fuse"], pid="host")


def test_typed_options_are_checked_too():
    with pytest.raises(InvalidSpec, match="--oom-score-adj"):
        new_spec(image=IMAGE, network="none", options=RunOptions(oom_score_adj=5000),
                 host=HOST)
    with pytest.raises(InvalidSpec, match="--device"):
        new_spec(image=IMAGE, network="none", host=HOST, options=RunOptions(devices=[
            {"source": "/dev/x", "target": "/etc/x", "type": "c", "major": 1, "minor": 1,
             "access": "rwm"}]))


def test_resolv_conf_lines_replace_the_hosts_of_their_kind(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 10.0.0.2\nsearch lan\noptions edns0\n")
    text = net.resolv_conf(str(host), dns=("9.9.9.9",), search=("a.example", "b.example"))
    assert text.splitlines()[1:] == ["nameserver 9.9.9.9", "options edns0",
                                     "search a.example b.example"]
    assert "nameserver 10.0.0.2" in net.resolv_conf(str(host), options=("ndots:1",))


def test_hosts_file_ends_with_the_added_hosts():
    text = net.hosts_file("h", "n", "10.88.0.5", [("10.88.0.6", "peer")],
                          (("db", "10.1.1.1"),))
    assert text.splitlines()[-2:] == ["10.88.0.6\tpeer", "10.1.1.1\tdb"]
    assert "127.0.1.1\tn" in net.hosts_file("", "n")  # --uts host: no hostname of its own


def test_v2_cgroup_files_of_the_new_limits(tmp_path):
    cg = V2Cgroup({("unified",): str(tmp_path)})
    cg.apply({"cpu_period": 50000, "cpu_quota": 25000, "memory_reservation": 32 << 20})
    assert (tmp_path / "cpu.max").read_text() == "25000 50000"
    assert (tmp_path / "memory.low").read_text() == str(32 << 20)
    cg.apply({"cpu_period": 20000})
    assert (tmp_path / "cpu.max").read_text() == "max 20000"


def _run_filter(code, kind, access, major, minor):
    """The device filter's program (ctr.cgroups.devicefilter) run on one
    request, by a small interpreter of the few eBPF instructions it uses."""
    import struct

    ctx = (("bc".index(kind) + 1) | (sum({"m": 1, "r": 2, "w": 4}[a] for a in access) << 16),
           major, minor)
    regs, pc = [0] * 11, 0
    while True:
        op, regs_byte, off, imm = struct.unpack_from("<BBhI", code, pc * 8)
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if op == 0x61:
            regs[dst] = ctx[off // 4]
        elif op == 0xBF:
            regs[dst] = regs[src]
        elif op == 0xB7:
            regs[dst] = imm
        elif op == 0x57:
            regs[dst] &= imm
        elif op == 0x77:
            regs[dst] >>= imm
        elif op == 0x56:
            pc += off if regs[dst] & 0xFFFFFFFF != imm else 0
        elif op == 0x15:
            pc += off if regs[dst] == imm else 0
        elif op == 0x05:
            pc += off
        elif op == 0x95:
            return regs[0] == 1
        else:
            raise AssertionError(f"unknown instruction {op:#x}")


def test_v2_device_filter_lets_the_last_matching_rule_decide_each_access():
    from ctr.cgroups.common import device_rules
    from ctr.cgroups.devicefilter import program

    code = program(device_rules(rules=[(False, "a *:* rwm"), (True, "c 10:229 rwm"),
                                       (False, "c 10:229 w"), (True, "b 8:* r")]))
    assert _run_filter(code, "c", "r", 10, 229) and _run_filter(code, "c", "m", 10, 229)
    assert not _run_filter(code, "c", "w", 10, 229)
    assert not _run_filter(code, "c", "rw", 10, 229)  # each access asked must be allowed
    assert _run_filter(code, "b", "r", 8, 16) and not _run_filter(code, "b", "w", 8, 16)
    assert _run_filter(code, "c", "rw", 1, 3)  # ctr's own, appended: /dev/null
    assert _run_filter(code, "b", "m", 9, 9)  # mknod of anything (useless without access)
    assert not _run_filter(code, "c", "r", 1, 11)  # /dev/kmsg: nothing allows it
    everything = program(device_rules(rules=[(True, "a *:* rwm")]))
    assert _run_filter(everything, "c", "rwm", 1, 11)
    plain = program(device_rules(devices=[{"type": "c", "major": 10, "minor": 229,
                                           "access": "r"}]))
    assert _run_filter(plain, "c", "r", 10, 229) and not _run_filter(plain, "c", "w", 10, 229)


