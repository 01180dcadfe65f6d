"""Image references normalized as docker does, and platforms."""

import pytest

from ctr.errors import InvalidSpec
from ctr.images.reference import is_local_name, normalize, parse, parse_platform

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, want", [
    ("alpine", "docker.io/library/alpine:latest"),
    ("alpine:3.19", "docker.io/library/alpine:3.19"),
    ("user/app", "docker.io/user/app:latest"),
    ("index.docker.io/library/alpine", "docker.io/library/alpine:latest"),
    ("host:5000/x/y:tag", "host:5000/x/y:tag"),
    ("localhost/app", "localhost/app:latest"),
    ("quay.io/a/b", "quay.io/a/b:latest"),
    (f"quay.io/a/b@{D}", f"quay.io/a/b@{D}"),
    (f"alpine:3@{D}", f"docker.io/library/alpine:3@{D}"),
    ("127.0.0.1:5000/t/layered:v1", "127.0.0.1:5000/t/layered:v1"),
])
def test_normalize(text, want):
    assert normalize(text) == want


@pytest.mark.parametrize("text", ["", "UPPER/x", "a//b", "a:b:c/d", "x@sha256:12",
                                  "-lead", "a b", "x:" + "t" * 200, "bad_/x"])
def test_refused(text):
    with pytest.raises(InvalidSpec, match="invalid reference format"):
        parse(text)


def test_parts():
    ref = parse("host:5000/x/y:tag")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("host:5000", "x/y", "tag", None)
    assert ref.repository == "host:5000/x/y"


def test_local_names():
    assert is_local_name("busybox") and not is_local_name("x/y") and not is_local_name("a:b")


def test_platform():
    assert parse_platform("linux/arm64/v8") == ("linux", "arm64", "v8")
    assert parse_platform("linux/amd64") == ("linux", "amd64", None)
    for bad in ("linux", "linux/", "a/b/c/d", "Linux/AMD64"):
        with pytest.raises(InvalidSpec, match="invalid platform"):
            parse_platform(bad)
