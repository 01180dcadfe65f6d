"""config.json -> InstanceSpec (ctr.oci.config), on configs recorded from
`runc spec` and from what podman 4.3 writes, and the bad configs each refused
with one error naming the field. No root needed."""

import copy
import json
import os
import pathlib

import pytest

from ctr.errors import InvalidSpec
from ctr.host import HostFacts
from ctr.oci import config as oci_config
from ctr.oci.cli import Failure, main, parse_signal
from ctr.oci.documents import default_config, features
from ctr.oci.state import write_pid_file
from ctr.spec import InstanceSpec, Resources

HERE = pathlib.Path(__file__).parent / "oci_configs"
HOST = HostFacts(cpus_online=(0, 1), memory=8 << 30)


def recorded(name):
    return json.loads((HERE / name).read_text())


def runc_spec():
    """`runc spec`'s config as recorded (runc 1.1: its ambient set has no
    inheritable set beside it, so it is left out: see
    test_an_ambient_capability_not_inheritable_is_left_out_as_runc_does)."""
    return recorded("runc_spec.json")


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def convert(bundle, config, cid="c1"):
    return oci_config.to_spec(str(bundle), config, cid, HOST)


def test_runc_spec_becomes_a_spec(bundle):
    spec = convert(bundle, runc_spec())
    assert spec.command == ("sh",)
    assert spec.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "TERM=xterm")
    assert spec.tty and spec.read_only and spec.no_new_privs
    assert spec.caps == ("KILL", "NET_BIND_SERVICE", "AUDIT_WRITE")
    assert [dict(u) for u in spec.ulimits] == [{"name": "nofile", "soft": 1024, "hard": 1024}]
    assert spec.hostname == "runc" and spec.user == "0:0" and spec.workdir == "/"
    assert spec.volumes == () and spec.tmpfs == ()  # /proc, /dev, ... are ctr's own
    assert spec.seccomp == "unconfined"
    assert spec.oci["root"] == os.path.realpath(bundle / "rootfs")
    assert spec.oci["cgroups_path"] == "/ctr-oci/c1"
    assert [n["type"] for n in spec.oci["namespaces"]] == ["pid", "network", "ipc", "uts",
                                                           "mount"]
    assert "/proc/kcore" in spec.oci["masked_paths"]
    assert spec.oci["readonly_paths"][-1] == "/proc/sysrq-trigger"
    assert InstanceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def _podman_config(bundle):
    """podman's config.json with its paths moved into the test's bundle."""
    config = recorded("podman_run.json")
    config["root"]["path"] = str(bundle / "rootfs")
    for m in config["mounts"]:
        if m["type"] == "bind":
            src = bundle / "src" / m["destination"].strip("/").replace("/", "_")
            src.parent.mkdir(exist_ok=True)
            if m["destination"] == "/dev/shm":
                src.mkdir()
            else:
                src.write_text("")
            m["source"] = str(src)
    return config


def test_podmans_config_becomes_a_spec(bundle):
    config = _podman_config(bundle)
    spec = convert(bundle, config, cid="38bacac9fd2f158121b3e212ee85dc791d32115e133c5a4c"
                                       "efd048b3ac35f3bc")
    assert spec.command == ("sh",) and spec.tty
    assert "container=podman" in spec.env and not spec.no_new_privs
    assert spec.resources == Resources(memory=64 << 20, memory_swap=128 << 20, pids_limit=20)
    assert spec.oci["cgroups_path"] == config["linux"]["cgroupsPath"]
    assert [v["target"] for v in spec.volumes] == ["/etc/hostname", "/etc/hosts", "/dev/shm",
                                                   "/run/.containerenv", "/etc/resolv.conf"][
        :len(spec.volumes)]
    assert all(not v["readonly"] for v in spec.volumes)
    assert spec.oci["sysctl"] == {"net.ipv4.ping_group_range": "0 0"}
    assert spec.seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert spec.seccomp["defaultErrnoRet"] == 38
    assert len(spec.seccomp["syscalls"]) == len(config["linux"]["seccomp"]["syscalls"])
    assert {("CAP_" + c) for c in spec.caps} == set(config["process"]["capabilities"]["bounding"])
    assert [u["name"] for u in spec.ulimits] == ["nofile", "nproc"]
    assert spec.name == "38bacac9fd2f158121b3e212ee85dc791d32115e133c5a4cefd048b3ac35f3b"


def test_a_cgroup_mount_gives_the_containers_own_view(bundle):
    # runc's spec and podman's mount cgroup at /sys/fs/cgroup (podman's "ro")
    assert convert(bundle, runc_spec()).oci["cgroup_mount"] == "ro"
    spec = convert(bundle, _podman_config(bundle))
    assert spec.oci["cgroup_mount"] == "ro" and spec.lxcfs is False
    config = runc_spec()
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    assert "cgroup_mount" not in convert(bundle, config).oci
    config["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup2",
                             "source": "cgroup"})
    assert convert(bundle, config).oci["cgroup_mount"] == "rw"


def test_groups_umask_oom_score(bundle):
    config = runc_spec()
    config["process"]["user"] = {"uid": 1, "gid": 2, "additionalGids": [5, 7], "umask": 0o077}
    config["process"]["oomScoreAdj"] = 500
    spec = convert(bundle, config)
    assert spec.user == "1:2"
    assert spec.oci["additional_gids"] == (5, 7) and spec.oci["umask"] == 0o077
    assert spec.oci["oom_score_adj"] == 500
    assert convert(bundle, runc_spec()).oci["additional_gids"] == ()


def test_resources_cpu_and_unlimited_values(bundle):
    config = runc_spec()
    config["linux"]["resources"] = {"memory": {"limit": -1}, "pids": {"limit": -1},
                                    "cpu": {"quota": 50000, "period": 100000, "cpus": "0"}}
    spec = convert(bundle, config)
    assert spec.resources == Resources(cpus=0.5, cpuset_cpus="0", pids_limit=-1)


def test_a_default_config_and_spec_json_of_ctrs_own_instances(bundle):
    spec = convert(bundle, default_config())
    assert spec.command == ("sh",) and spec.oci
    plain = InstanceSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "oci"})
    assert "oci" not in plain.to_dict()  # records of ctr's own instances: as before


def test_the_five_capability_sets_are_carried_to_the_init(bundle):
    config = runc_spec()
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    config["process"]["capabilities"] = {
        "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
        "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
        "effective": ["CAP_KILL"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]}
    spec = convert(bundle, config)
    assert spec.caps == ("CHOWN", "KILL", "NET_BIND_SERVICE")  # the bounding set
    assert dict(spec.oci["capabilities"]) == {
        "bounding": ("CHOWN", "KILL", "NET_BIND_SERVICE"),
        "effective": ("KILL",), "inheritable": ("NET_BIND_SERVICE",),
        "permitted": ("KILL", "NET_BIND_SERVICE"), "ambient": ("NET_BIND_SERVICE",)}
    assert InstanceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # a set not given is empty, as runc has it (an old config's "effective" only too)
    config["process"]["capabilities"] = {"effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
    spec = convert(bundle, config)
    assert spec.caps == () and spec.oci["capabilities"]["ambient"] == ()
    # none at all: no capabilities, and the init's old path (no sets carried)
    del config["process"]["capabilities"]
    spec = convert(bundle, config)
    assert spec.caps == () and "capabilities" not in spec.oci


def test_an_ambient_capability_not_inheritable_is_left_out_as_runc_does(bundle):
    # runc 1.1's spec: ambient without inheritable (runc warns and goes on, crun too)
    spec = convert(bundle, recorded("runc_spec.json"))
    assert spec.oci["capabilities"]["ambient"] == ()
    assert spec.oci["capabilities"]["permitted"] == spec.caps != ()
    assert "ambient" not in default_config()["process"]["capabilities"]  # runc's today
    for sets in ({"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]},
                 {"bounding": ["CAP_KILL"], "inheritable": ["CAP_KILL"],
                  "ambient": ["CAP_KILL"]}):
        config = runc_spec()
        config["process"]["capabilities"] = sets
        assert convert(bundle, config).oci["capabilities"]["ambient"] == ()


def test_an_exec_process_capabilities_are_checked_the_same_way():
    from ctr.oci.runtime import check_process

    process = {"args": ["sh"], "capabilities": {"bounding": ["CAP_KILL"],
                                                "effective": ["CAP_KILL"]}}
    with pytest.raises(InvalidSpec, match=r"^--process p.json: capabilities.effective: CAP_KILL "
                       "is not in the permitted set"):
        check_process(process, "--process p.json")
    process["capabilities"] = {"bounding": ["CAP_NOPE"]}
    with pytest.raises(InvalidSpec, match="capabilities.bounding: unknown capability"):
        check_process(process, "--process p.json")
    process["capabilities"] = {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
    assert check_process(process) is process


def test_relative_and_absolute_cgroups_paths():
    assert oci_config.cgroups_path({"cgroupsPath": "a/b"}, "x") == "/ctr-oci/a/b"
    assert oci_config.cgroups_path({"cgroupsPath": "/k8s/pod1/c"}, "x") == "/k8s/pod1/c"
    assert oci_config.cgroups_path({}, "x") == "/ctr-oci/x"


def _set(path, value):
    def edit(config):
        *parents, last = path.split(".")
        node = config
        for p in parents:
            node = node.setdefault(p, {})
        if value is KeyError:
            node.pop(last, None)
        else:
            node[last] = value
    return edit


BAD = [
    ("root.path", "missing", "root.path"),
    ("process.args", [], "process.args"),
    ("process.args", "sh", "process.args"),
    ("process.env", ["NOEQUALS"], "process.env"),
    ("process.cwd", "relative", "process.cwd"),
    ("process.user", {"uid": -1}, "process.user.uid"),
    ("process.user", {"uid": "0"}, "process.user.uid"),
    ("process.user", {"uid": 0, "gid": 0, "additionalGids": [-1]}, "additionalGids[0]"),
    ("process.user", {"uid": 0, "gid": 0, "umask": 0o1000}, "umask"),
    ("process.oomScoreAdj", 1001, "oomScoreAdj"),
    ("process.capabilities", {"bounding": ["CAP_NOPE"]}, "unknown capability"),
    ("process.capabilities", {"ambient": ["CAP_FLY"]},
     "process.capabilities.ambient: unknown capability 'CAP_FLY'"),
    ("process.capabilities", {"inheritable": "CAP_KILL"},
     "process.capabilities.inheritable: expected a list of strings"),
    ("process.capabilities", ["CAP_KILL"], "process.capabilities: expected an object"),
    ("process.capabilities", {"effective": ["CAP_KILL"]},
     "process.capabilities.effective: CAP_KILL is not in the permitted set"),
    ("process.capabilities", {"inheritable": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
     "process.capabilities.inheritable: CAP_KILL is not in the bounding set"),
    ("process.rlimits", [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}], "unknown rlimit"),
    ("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": -5, "hard": 1}], "out of range"),
    ("process.apparmorProfile", "x", None),
    ("hostname", "bad host!", "hostname"),
    ("mounts", [{"destination": "/x", "type": "nfs", "source": "a"}], "'nfs' at /x"),
    ("mounts", [{"destination": "rel", "type": "tmpfs"}], "destination"),
    ("mounts", [{"destination": "/x", "type": "bind", "source": "/no/such/src"}], "does not"),
    ("mounts", [{"destination": "/x", "type": "tmpfs", "options": ["huge=always"]}],
     "unknown tmpfs option"),
    ("linux.cgroupsPath", "system.slice:ctr:c1", "systemd"),
    ("linux.cgroupsPath", "/a/../b", "invalid path"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "mount"}], "listed twice"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "user"}], "needs its id mappings"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}],
     "joining a user namespace by path"),
    ("linux.namespaces", [{"type": "mount", "path": "/proc/1/ns/mnt"}], "by path"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "ipc", "path": "/no/such/ns"}],
     "does not exist"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "uts", "path": "/proc/self/ns/uts"}],
     "no UTS namespace of its own"),
    ("linux.namespaces", [{"type": "pid"}], "mount namespace is required"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "time"}], "unknown namespace"),
    ("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}], "no user namespace"),
    ("linux.resources", {"memory": {"limit": "64m"}}, "memory.limit"),
    ("linux.resources", {"pids": {"limit": -7}}, "pids.limit"),
    ("linux.sysctl", {"kernel.pid_max": "1"}, "not in the container's namespaces"),
    ("linux.devices", [{"path": "/etc/x", "type": "c", "major": 1, "minor": 3}],
     "linux.devices[0].path"),
    ("linux.devices", [{"path": "/dev/x", "type": "q", "major": 1, "minor": 3}],
     "linux.devices[0].type"),
    ("linux.devices", [{"path": "/dev/x", "type": "c", "major": 1}], "linux.devices[0].minor"),
    ("linux.devices", [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3,
                        "fileMode": 0o200000}], "linux.devices[0].fileMode"),
    ("linux.devices", [{"path": "/dev/x", "type": "p"}, {"path": "/dev/x", "type": "p"}],
     "listed twice"),
    ("linux.resources", {"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow"),
    ("linux.resources", {"devices": [{"allow": True, "type": "p"}]}, "devices[0].type"),
    ("linux.resources", {"devices": [{"allow": True, "access": "rr"}]}, "devices[0].access"),
    ("linux.resources", {"devices": [{"allow": True, "major": -2}]}, "devices[0].major"),
    ("linux.resources", {"blockIO": {"weight": 1001}}, "blockIO.weight"),
    ("linux.resources", {"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 1}]}},
     "blockIO.weightDevice[0].weight"),
    ("linux.resources", {"blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "minor": 0}]}},
     "throttleWriteIOPSDevice[0].rate"),
    ("linux.resources", {"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]},
     "hugepageLimits[0].pageSize"),
    ("linux.resources", {"unified": {"../x": "1"}}, "linux.resources.unified"),
    ("linux.resources", {"unified": {"memory.high": 1}}, "linux.resources.unified"),
    ("linux.resources", {"memory": {"swappiness": 200}}, "memory.swappiness"),
    ("linux.resources", {"memory": {"reservation": 1}}, "memory.reservation"),
    ("linux.rootfsPropagation", "rsideways", "linux.rootfsPropagation"),
    ("mounts", [{"destination": "/x", "type": "tmpfs", "options": ["rsideways"]}],
     "unknown tmpfs option"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_NOPE"}, "linux.seccomp"),
    ("hooks", {"prestart": [{"path": "bin/true"}]}, "hooks.prestart[0].path"),
    ("ociVersion", KeyError, "ociVersion"),
    ("process", KeyError, "process"),
]


@pytest.mark.parametrize("path,value,message", BAD, ids=[f"{b[0]}={b[1]!r}"[:60] for b in BAD])
def test_bad_configs_are_one_clear_error(bundle, path, value, message):
    config = copy.deepcopy(runc_spec())
    _set(path, value)(config)
    with pytest.raises(InvalidSpec) as err:
        convert(bundle, config)
    assert str(err.value).startswith("config.json: ")
    assert "\n" not in str(err.value)
    if message:
        assert message in str(err.value)


def test_devices_rules_limits_and_propagation(bundle):
    config = copy.deepcopy(runc_spec())
    config["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o20600,
         "uid": 1, "gid": 2},
        {"path": "/dev/ttyU", "type": "u", "major": 4, "minor": 64},
        {"path": "/dev/pipe", "type": "p"}]
    config["linux"]["resources"] = {
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": -1, "access": "rw"}],
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swappiness": (1 << 64) - 1,
                   "kernel": 1, "disableOOMKiller": True},
        "blockIO": {"weight": 300, "leafWeight": 10,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 50}]},
        "unified": {"memory.high": "1000000"}}
    config["linux"]["rootfsPropagation"] = "rshared"
    config["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(bundle),
         "options": ["rbind", "rslave", "ro", "nosuid", "nodev"]},
        {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
         "options": ["tmpcopyup", "rprivate", "nosuid"]}]
    spec = convert(bundle, config)
    devs = spec.options.devices
    assert [(d["target"], d["type"], d["major"], d["minor"], d["mode"]) for d in devs] == [
        ("/dev/fuse", "c", 10, 229, 0o600), ("/dev/ttyU", "c", 4, 64, 0o666),
        ("/dev/pipe", "p", 0, 0, 0o666)]
    assert (devs[0]["uid"], devs[0]["gid"], devs[0]["source"]) == (1, 2, "/dev/fuse")
    from ctr.spec import device_rule_text

    assert [(r["allow"], device_rule_text(r)) for r in spec.options.device_rules] == [
        (False, "a *:* rwm"), (True, "c 10:* rw")]
    assert spec.resources == Resources(
        memory=64 << 20, memory_reservation=32 << 20, blkio_weight=300,
        blkio_weight_device=[("8:0", 200)], device_read_bps=[("8:0", 1024)],
        device_write_iops=[("8:16", 50)], unified={"memory.high": "1000000"})
    assert spec.oci["root_propagation"] == "rshared"
    assert spec.volumes[-1]["propagation"] == ("rslave",) and spec.volumes[-1]["readonly"]
    assert spec.volumes[-1]["flags"] == ("nosuid", "nodev")
    assert dict(spec.tmpfs[-1]) == {"path": "/etc", "flags": ("nosuid",), "data": "",
                                    "copyup": True, "propagation": ("rprivate",)}
    assert "root_propagation" not in convert(bundle, runc_spec()).oci
    assert InstanceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_in_a_user_namespace_a_device_is_the_hosts_node_of_its_path(bundle):
    config = copy.deepcopy(runc_spec())
    config["linux"]["namespaces"].append({"type": "user"})
    for kind in ("uid", "gid"):
        config["linux"][f"{kind}Mappings"] = [{"containerID": 0, "hostID": 100000,
                                               "size": 65536}]
    config["linux"]["devices"] = [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]
    assert convert(bundle, config).options.devices[0]["source"] == "/dev/null"
    config["linux"]["devices"] = [{"path": "/dev/null", "type": "c", "major": 1, "minor": 5}]
    with pytest.raises(InvalidSpec, match=r"linux.devices\[0\]: in a user namespace the "
                       "host's /dev/null is bound"):
        convert(bundle, config)


def test_unknown_fields_are_ignored(bundle):
    config = runc_spec()
    config["vm"] = {"hypervisor": {}}
    config["process"]["somethingNew"] = 1
    config["linux"]["intelRdt"] = {"closID": "x"}
    assert convert(bundle, config).command == ("sh",)


def test_read_config_refuses_what_is_not_a_json_object(tmp_path):
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(InvalidSpec, match="expected a JSON object"):
        oci_config.read_config(str(tmp_path))
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(InvalidSpec, match="not JSON"):
        oci_config.read_config(str(tmp_path))
    with pytest.raises(InvalidSpec, match="cannot read"):
        oci_config.read_config(str(tmp_path / "nope"))


@pytest.mark.parametrize("cid", ["", "..", "a/b", "a b", "x\n"])
def test_bad_ids(cid):
    with pytest.raises(InvalidSpec, match="invalid container id"):
        oci_config.check_id(cid)


def test_signals():
    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("9") == 9
    assert parse_signal("term") == 15
    with pytest.raises(InvalidSpec):
        parse_signal("NOPE")


def test_the_command_line(capsys, tmp_path):
    assert main(["--version"]) == 0 and "ctr-oci version" in capsys.readouterr().out
    log = tmp_path / "log"
    assert main(["--log", str(log), "--log-format=json", "events", "--interval", "0s",
                 "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ctr-oci: error: ") and "invalid interval" in err
    assert json.loads(log.read_text())["level"] == "error"
    assert main(["--systemd-cgroup", "state", "x"]) == 1
    assert "systemd is not the cgroup manager" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "state", "nope"]) == 1
    assert capsys.readouterr().err == "ctr-oci: error: container does not exist\n"
    assert main(["--root", str(tmp_path), "delete", "-f", "nope"]) == 0
    assert main([]) == 1 and Failure


def test_pid_file_is_digits_only(tmp_path):
    path = tmp_path / "pid"
    write_pid_file(str(path), 1234)
    assert path.read_bytes() == b"1234"
    assert os.listdir(tmp_path) == ["pid"]


def test_features_document():
    f = features()
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"]
    assert "mount" in f["linux"]["namespaces"] and "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert f["linux"]["seccomp"]["enabled"] and f["linux"]["apparmor"] == {"enabled": False}
    accepted = {*oci_config.TMPFS_FLAGS, *oci_config.PROPAGATION,
                *oci_config.IGNORED_MOUNT_OPTIONS, "tmpcopyup"}
    assert set(f["mountOptions"]) == accepted  # what config.json's mounts may say, all of it
    assert isinstance(f["mountOptions"], list) and f["hooks"][0] == "prestart"
