import pytest

from ctr.errors import InvalidSpec
from ctr.spec import (
    InstanceSpec,
    build_spec,
    check_name,
    check_workdir,
    generate_name,
    merge_env,
    parse_env,
    read_env_file,
)

IMAGE = {"name": "busybox", "id": "sha256:abc", "cmd": ["sh"], "env": []}


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
