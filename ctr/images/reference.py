"""Image references as docker normalizes them, and platforms.

    normalize("alpine")                  -> "docker.io/library/alpine:latest"
    normalize("host:5000/x/y:tag")       -> "host:5000/x/y:tag"
    normalize("quay.io/a/b@sha256:...")  -> "quay.io/a/b@sha256:..."

The grammar is distribution's (github.com/distribution/reference): a domain is
the first component when it has a "." or a ":" or is "localhost"; otherwise the
image is on docker.io, where a one-component name lives under library/. A tag
defaults to latest unless a digest is given.
"""

import dataclasses
import re

from ctr import lazyre
from ctr.errors import InvalidSpec

DEFAULT_DOMAIN = "docker.io"
_COMPONENT = lazyre.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = lazyre.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
                         r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?")
_TAG = lazyre.compile(r"[\w][\w.-]{0,127}")
_DIGEST = lazyre.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


@dataclasses.dataclass(frozen=True)
class Reference:
    """A normalized image reference (a docstring also spares dataclasses the
    inspect.signature call it makes to write one)."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self):
        return f"{self.domain}/{self.path}"

    def __str__(self):
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse(text):
    """A Reference, normalized; InvalidSpec names what is wrong with `text`."""
    if not isinstance(text, str) or not text or len(text) > 255 or text != text.strip():
        raise InvalidSpec(f"invalid reference format: {text!r}")
    name, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidSpec(f"invalid reference format: {text!r} (bad digest {digest!r})")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise InvalidSpec(f"invalid reference format: {text!r} (bad tag {tag!r})")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.fullmatch(first):
            raise InvalidSpec(f"invalid reference format: {text!r} (bad domain {first!r})")
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            hint = " (repository names must be lowercase)" if component.lower() != component \
                else ""
            raise InvalidSpec(f"invalid reference format: {text!r}{hint}")
    if tag is None and digest == "":
        tag = "latest"
    return Reference(domain, path, tag, digest or None)


def normalize(text):
    return str(parse(text))


def is_local_name(text):
    """A plain name (busybox, mybox): what the recipes and imports are called."""
    return bool(text) and not any(c in text for c in "/:@")


def parse_platform(text):
    """os/arch[/variant] -> (os, arch, variant or None)."""
    parts = text.split("/") if isinstance(text, str) else []
    if not 2 <= len(parts) <= 3 or not all(re.fullmatch(r"[a-z0-9_]+", p) for p in parts):
        raise InvalidSpec(f"invalid platform {text!r}: expected os/arch[/variant] "
                          "(linux/amd64, linux/arm64/v8)")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def host_platform():
    import os

    machine = os.uname().machine
    return "linux", _ARCHES.get(machine, machine), None
