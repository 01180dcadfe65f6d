"""InstanceSpec: the validated, immutable description of an instance.

Every user input is checked here, once; the layers below trust a spec.
"""

import dataclasses
import os
import re

from ctr.errors import InvalidSpec

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
HOSTNAME_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
HOSTNAME_RE = re.compile(rf"{HOSTNAME_LABEL}(\.{HOSTNAME_LABEL})*")
ENV_KEY_RE = re.compile(r"[^=\0]+")
USER_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*(:[a-zA-Z0-9_][a-zA-Z0-9_.-]*)?")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KINDS = ("container",)

# Names generated when none is given: adjective_noun, as users of docker know.
_ADJECTIVES = (
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "young", "zesty",
    "bold", "crisp",
)
_NOUNS = (
    "babbage", "curie", "darwin", "euler", "fermi", "galois", "hopper", "lovelace", "meitner",
    "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "yalow",
    "lamport", "knuth", "hamilton",
)


def generate_name():
    a, b = os.urandom(2)
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}_{_NOUNS[b % len(_NOUNS)]}_{os.urandom(2).hex()}"


def new_id():
    return os.urandom(32).hex()


def check_name(name, what="name"):
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidSpec(
            f"invalid {what} {name!r}: use 1-63 characters from [a-zA-Z0-9_.-], "
            "starting with a letter or digit"
        )
    return name


def parse_env(items, environ=None):
    """-e K=V or -e K (taken from ctr's own environment, dropped when unset)."""
    environ = os.environ if environ is None else environ
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or not ENV_KEY_RE.fullmatch(key) or "\0" in value:
            raise InvalidSpec(f"invalid environment variable {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in environ:
                continue
            value = environ[key]
        out.append(f"{key}={value}")
    return out


def read_env_file(path):
    """docker's --env-file: KEY=VALUE lines; blank lines and # comments are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise InvalidSpec(f"cannot read env file {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise InvalidSpec(f"cannot read env file {path}: not UTF-8 text") from err
    items = [line.strip() for line in lines]
    items = [line for line in items if line and not line.startswith("#")]
    try:
        return parse_env(items)
    except InvalidSpec as err:
        raise InvalidSpec(f"{path}: {err}") from None


def merge_env(*layers):
    """Later layers win; order of first appearance is kept."""
    merged = {}
    for layer in layers:
        for item in layer:
            key, _, value = item.partition("=")
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def check_workdir(path):
    if path is None:
        return None
    if not path.startswith("/") or "\0" in path:
        raise InvalidSpec(f"invalid working directory {path!r}: must be an absolute path")
    return os.path.normpath(path)


def check_user(user):
    if user is None or user == "":
        return None
    if not USER_RE.fullmatch(user):
        raise InvalidSpec(f"invalid user {user!r}: expected NAME, UID, NAME:GROUP or UID:GID")
    return user


def check_hostname(hostname):
    if hostname is None:
        return None
    if len(hostname) > 64 or not HOSTNAME_RE.fullmatch(hostname):
        raise InvalidSpec(f"invalid hostname {hostname!r}")
    return hostname


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    name: str
    id: str
    image: str
    image_id: str
    command: tuple
    kind: str = "container"
    env: tuple = ()
    workdir: str = "/"
    user: str | None = None
    hostname: str = ""
    tty: bool = False
    remove: bool = False
    network: str = "none"

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["command"] = list(self.command)
        d["env"] = list(self.env)
        return d

    @classmethod
    def from_dict(cls, d):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        d = dict(d)
        d["command"] = tuple(d["command"])
        d["env"] = tuple(d.get("env", ()))
        return cls(**d)


def build_spec(*, image, command, name=None, env=(), env_files=(), workdir=None,
               user=None, hostname=None, tty=False, remove=False, kind="container"):
    """Validate CLI-level inputs against an image record and return an InstanceSpec."""
    name = check_name(name) if name is not None else generate_name()
    if kind not in KINDS:
        raise InvalidSpec(f"unknown instance kind {kind!r}")
    env_layers = [read_env_file(p) for p in env_files]
    user_env = merge_env(*env_layers, parse_env(env))
    command = tuple(command) or tuple(image.get("cmd") or ())
    if not command:
        raise InvalidSpec("no command given and the image has no default command")
    if any("\0" in arg for arg in command):
        raise InvalidSpec("the command contains a NUL byte")
    instance_id = new_id()
    hostname = check_hostname(hostname) or instance_id[:12]
    base_env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        base_env.append("TERM=xterm")
    return InstanceSpec(
        name=name,
        id=instance_id,
        kind=kind,
        image=image["name"],
        image_id=image["id"],
        command=command,
        env=tuple(merge_env(image.get("env") or (), base_env, user_env)),
        workdir=check_workdir(workdir) or image.get("workdir") or "/",
        user=check_user(user),
        hostname=hostname,
        tty=bool(tty),
        remove=bool(remove),
    )
