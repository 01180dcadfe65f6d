import pytest

from ctr.errors import InvalidSpec
from ctr.host import HostFacts
from ctr.spec import (
    InstanceSpec,
    build_resources,
    build_spec,
    check_cgroup_parent,
    check_name,
    check_workdir,
    generate_name,
    merge_env,
    parse_env,
    parse_size,
    read_env_file,
)

IMAGE = {"name": "busybox", "id": "sha256:abc", "cmd": ["sh"], "env": []}
# The host's facts are passed in (ctr.host): two CPUs online.
HOST = HostFacts(cpus_online=(0, 1))


@pytest.mark.parametrize("name", ["a", "web-1", "A.b_c", "x" * 63, "0abc"])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "_a", "a/b", "a b", "x" * 64, "é", "a\n"])
def test_invalid_names(name):
    with pytest.raises(InvalidSpec, match="invalid name"):
        check_name(name)


def test_generated_names_are_valid():
    for _ in range(50):
        check_name(generate_name())


def test_parse_env():
    assert parse_env(["A=1", "B=", "C=x=y"]) == ["A=1", "B=", "C=x=y"]
    assert parse_env(["HOME", "UNSET"], environ={"HOME": "/h"}) == ["HOME=/h"]
    for bad in ["=x", "", "A\0=1"]:
        with pytest.raises(InvalidSpec, match="invalid environment variable"):
            parse_env([bad])


def test_env_file(tmp_path):
    f = tmp_path / "env"
    f.write_text("# c\n\nA=1\n  B=2  \n")
    assert read_env_file(str(f)) == ["A=1", "B=2"]
    f.write_text("=bad\n")
    with pytest.raises(InvalidSpec, match="env"):
        read_env_file(str(f))
    with pytest.raises(InvalidSpec, match="cannot read env file"):
        read_env_file(str(tmp_path / "missing"))


def test_merge_env_later_wins():
    assert merge_env(["A=1", "B=2"], ["A=3"]) == ["A=3", "B=2"]


def test_workdir():
    assert check_workdir("/a/../b/") == "/b"
    with pytest.raises(InvalidSpec):
        check_workdir("rel")


def test_build_spec_defaults():
    spec = build_spec(image=IMAGE, command=(), name="n")
    assert spec.command == ("sh",)
    assert spec.hostname == spec.id[:12]
    assert any(e.startswith("PATH=") for e in spec.env)
    assert spec.workdir == "/"


def test_build_spec_tty_term_and_user_env_wins():
    spec = build_spec(image=IMAGE, command=["true"], tty=True, env=["PATH=/x"])
    assert "TERM=xterm" in spec.env
    assert "PATH=/x" in spec.env


def test_spec_round_trip():
    spec = build_spec(image=IMAGE, command=["echo", "hi"], name="n", env=["A=1"])
    assert InstanceSpec.from_dict(spec.to_dict()) == spec


def test_cgroupns_and_lxcfs():
    spec = build_spec(image=IMAGE, command=["true"])
    assert spec.cgroupns == "private" and spec.lxcfs is True
    # left out of spec.json while they hold their defaults: written as before
    assert "cgroupns" not in spec.to_dict() and "lxcfs" not in spec.to_dict()
    spec = build_spec(image=IMAGE, command=["true"], cgroupns="host", lxcfs="false")
    assert (spec.cgroupns, spec.lxcfs) == ("host", False)
    assert InstanceSpec.from_dict(spec.to_dict()) == spec
    for kw, match in (({"cgroupns": "shared"}, "invalid --cgroupns 'shared'"),
                      ({"lxcfs": "maybe"}, "invalid --lxcfs 'maybe'"),
                      ({"cgroupns": "host", "init": True}, "--init needs a cgroup namespace"),
                      ({"cgroupns": "host", "vm": True}, "--cgroupns is for containers"),
                      ({"cgroupns": "host", "userns": "auto"}, "--userns=auto")):
        with pytest.raises(InvalidSpec, match=match):
            build_spec(image=IMAGE, command=["true"], **kw)


def test_spec_rejects_unknown_fields():
    spec = build_spec(image=IMAGE, command=["true"], name="n").to_dict()
    spec["bogus"] = 1
    with pytest.raises(ValueError):
        InstanceSpec.from_dict(spec)


@pytest.mark.parametrize("kw,match", [
    ({"user": "a b"}, "invalid user"),
    ({"hostname": "a_b"}, "invalid hostname"),
    ({"command": ["a\0b"]}, "NUL"),
    ({"kind": "toaster"}, "kind"),
])
def test_build_spec_rejects(kw, match):
    args = {"image": IMAGE, "command": ["true"], **kw}
    with pytest.raises(InvalidSpec, match=match):
        build_spec(**args)


# -- resources ----------------------------------------------------------------------

@pytest.mark.parametrize("text,n", [("64m", 64 << 20), ("1g", 1 << 30), ("512k", 512 << 10),
                                    ("100", 100), ("10b", 10), ("1.5g", 3 << 29),
                                    ("64MB", 64 << 20), ("2GiB", 2 << 30)])
def test_sizes_in_dockers_units(text, n):
    assert parse_size(text, "size") == n


@pytest.mark.parametrize("text", ["", "m", "-1m", "64x", "1e3", "64 mb x"])
def test_bad_sizes(text):
    with pytest.raises(InvalidSpec, match="invalid size"):
        parse_size(text, "size")


def test_build_resources():
    r = build_resources(memory="64m", cpus="0.5", pids_limit="20", cpuset_cpus="0-1",
                        cpu_shares="512", ncpus=2, host=HOST)
    assert r == {"memory": 64 << 20, "cpus": 0.5, "cpu_shares": 512, "cpuset_cpus": "0,1",
                 "pids_limit": 20}
    assert build_resources(pids_limit="0") == {"pids_limit": -1}
    assert build_resources(memory="64m", memory_swap="-1")["memory_swap"] == -1


def test_update_keeps_what_is_not_given():
    cur = {"memory": 64 << 20, "pids_limit": 20, "cpu_shares": 512}
    r = build_resources(cur, memory="128m", cpu_weight="100")
    assert r == {"memory": 128 << 20, "pids_limit": 20, "cpu_weight": 100}


@pytest.mark.parametrize("opts,msg", [
    ({"memory": "1m"}, "minimum is 6m"),
    ({"memory": "lots"}, "invalid memory limit"),
    ({"memory_swap": "1g"}, "needs --memory"),
    ({"memory": "64m", "memory_swap": "32m"}, "at least --memory"),
    ({"cpus": "0"}, "between 0.01"),
    ({"cpus": "3"}, "between 0.01 and 2"),
    ({"cpus": "half"}, "invalid --cpus"),
    ({"cpu_shares": "1"}, "between 2 and 262144"),
    ({"cpu_shares": "2", "cpu_weight": "2"}, "not both"),
    ({"cpu_weight": "0"}, "between 1 and 10000"),
    ({"cpuset_cpus": "0-"}, "invalid cpuset"),
    ({"cpuset_cpus": "7"}, "CPU 7 is not online"),
    ({"pids_limit": "many"}, "expected an integer"),
    ({"blkio_weight": "5"}, "between 10 and 1000"),
    ({"device_read_bps": ["/dev/null:1m"]}, "not a block device"),
    ({"device_read_bps": ["/nonexistent:1m"]}, "No such file"),
    ({"device_write_bps": ["sda"]}, "expected DEVICE:RATE"),
])
def test_bad_resources(opts, msg):
    with pytest.raises(InvalidSpec, match=msg):
        build_resources(**opts, host=HOST)


@pytest.mark.parametrize("value,out", [(None, None), ("self", "self"), ("/a/b", "/a/b"),
                                       ("a//b/", "/a/b")])
def test_cgroup_parent(value, out):
    assert check_cgroup_parent(value) == out


@pytest.mark.parametrize("value", ["/", "/a/../b", "a b", "/./x"])
def test_bad_cgroup_parent(value):
    with pytest.raises(InvalidSpec, match="invalid --cgroup-parent"):
        check_cgroup_parent(value)


def test_capabilities_docker_style():
    from ctr.spec import ALL_CAPS, DEFAULT_CAPS, build_caps

    assert build_caps() == tuple(c for c in ALL_CAPS if c in DEFAULT_CAPS)
    assert build_caps(cap_drop=["ALL"]) == ()
    assert build_caps(cap_drop=["ALL"], cap_add=["net_raw"]) == ()  # drop wins, as docker
    assert "SYS_ADMIN" in build_caps(cap_add=["CAP_SYS_ADMIN"])
    assert "CHOWN" not in build_caps(cap_drop=["chown"])
    assert build_caps(privileged=True) == ALL_CAPS
    with pytest.raises(InvalidSpec, match="unknown capability NOPE"):
        build_caps(cap_add=["nope"])


def test_tmpfs_and_read_only():
    from ctr.spec import check_tmpfs

    (t,) = check_tmpfs(["/data/:size=1m,noexec,mode=700"])
    assert t == {"path": "/data", "flags": ["noexec"], "data": "size=1m,mode=700"}
    paths = [m["path"] for m in check_tmpfs(["/run:size=1m"], read_only=True)]
    assert paths == ["/run", "/tmp"]
    for bad in ("rel", "/", "/x:bogus=1"):
        with pytest.raises(InvalidSpec):
            check_tmpfs([bad])


def test_volumes(tmp_path):
    from ctr.spec import check_volumes

    (v,) = check_volumes([f"{tmp_path}:/data/:ro"])
    assert v == {"source": str(tmp_path), "target": "/data", "readonly": True}
    for bad in ("x", f"{tmp_path}:rel", f"{tmp_path}:/", f"{tmp_path}:/d:rx",
                "/nonexistent-ctr:/d"):
        with pytest.raises(InvalidSpec):
            check_volumes([bad])


def test_security_opts():
    from ctr.spec import check_security_opts

    assert check_security_opts(()) == ("default", True)
    assert check_security_opts(["seccomp=unconfined", "no-new-privileges=false"]) == (
        "unconfined", False)
    assert check_security_opts(["seccomp:unconfined", "no-new-privileges"]) == (
        "unconfined", True)
    assert check_security_opts([], privileged=True) == ("unconfined", True)


def test_security_opt_profile_file(tmp_path):
    from ctr.spec import check_security_opts

    path = tmp_path / "a:b.json"  # a colon in the path is not a separator
    path.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": '
                    '[{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}')
    profile, _ = check_security_opts([f"seccomp={path}"], host=HostFacts())
    assert profile["syscalls"][0]["names"] == ["read"]


def test_ulimits():
    from ctr.spec import check_ulimits

    assert check_ulimits(["nofile=10:20", "core=0", "nofile=5"]) == (
        {"name": "nofile", "soft": 5, "hard": 5}, {"name": "core", "soft": 0, "hard": 0})
    assert check_ulimits(["stack=unlimited"])[0]["hard"] == -1
    for bad in ("nofile", "nofile=x", "nofile=-2", "nofile=-1:10", "x=1"):
        with pytest.raises(InvalidSpec):
            check_ulimits([bad])


@pytest.mark.parametrize("opt", ["no-new-privileges", "seccomp=unconfined"])
def test_a_vm_refuses_every_security_opt(opt):
    with pytest.raises(InvalidSpec, match="for containers, not VMs"):
        build_spec(image=IMAGE, command=("true",), vm=True, security_opt=(opt,), host=HOST)
