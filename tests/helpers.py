"""Helpers shared by the tests. Integration tests (tests/integration) run the real `ctr`
binary as root against the real kernel; each test gets a state root of its own,
and a check after every test fails it if it left a mount, a cgroup or a process.
"""

import os
import subprocess

CTR = os.environ.get("CTR_BIN") or (
    "/opt/ctr/venv/bin/ctr" if os.path.exists("/opt/ctr/venv/bin/ctr") else "ctr")
CGROUP_ROOT = "/sys/fs/cgroup"
# A cgroup2-only host (current distributions; the guest of `make test-cgroup2`):
# /sys/fs/cgroup is the one hierarchy, and an instance has one folder there.
# Elsewhere (the hybrid build hosts) each v1 controller has a hierarchy of its own.
CGROUP2_ONLY = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
# The session's own default cgroup parent (ctr's is /ctr): what another test
# session running at the same time leaves in its parent is not this one's leftover.
PARENT = os.environ.setdefault("CTR_CGROUP_PARENT", f"ctr-test-{os.getpid()}")


def cgroup_parents():
    """Every parent folder ctr may create by default, one per hierarchy."""
    return [os.path.join(CGROUP_ROOT, h, PARENT) for h in os.listdir(CGROUP_ROOT)
            if os.path.isdir(os.path.join(CGROUP_ROOT, h, PARENT))]


def cgroup_path(controller, rel):
    """Where cgroup `rel` (/parent/leaf) holds `controller`'s files: in the one
    hierarchy on a cgroup2-only host, else in that controller's v1 hierarchy."""
    return os.path.normpath(f"{CGROUP_ROOT}/{rel}" if CGROUP2_ONLY
                            else f"{CGROUP_ROOT}/{controller}/{rel}")


def cgroup_dir(ctr, name, controller):
    """Instance `name`'s folder that holds `controller`'s files."""
    paths = ctr.state(name)["cgroups"]
    if CGROUP2_ONLY:
        return paths[0]
    return [p for p in paths if f"/{controller}/" in p][0]


def own_cgroup(controller):
    """The cgroup this process runs in, for `controller` (/proc/self/cgroup)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if (CGROUP2_ONLY and names == "") or controller in names.split(","):
                return path
    raise LookupError(f"no {controller} cgroup in /proc/self/cgroup")


def instance_cgroups():
    found = []
    for parent in cgroup_parents():
        found += [os.path.join(parent, d) for d in os.listdir(parent)
                  if os.path.isdir(os.path.join(parent, d))]
    return found


def mounts_under(path):
    with open("/proc/self/mounts") as f:
        return [line for line in f if path in line]


def _ours(pid):
    """A process started under this session's cgroup parent (what a concurrent
    session runs is not ours)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"CTR_CGROUP_PARENT={PARENT}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def processes(pattern, ours_only=False):
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmd and (not ours_only or _ours(pid)):
            out.append(f"{pid} {cmd}")
    return out


def links(prefix):
    """Network links of ctr's making in the current namespace (veth*, tap*)."""
    try:
        return [n for n in os.listdir("/sys/class/net") if n.startswith(prefix)]
    except FileNotFoundError:
        return []


def leftovers(root):
    left = mounts_under(root)
    left += links("tap")
    left += instance_cgroups()
    left += processes("ctr-monitor", ours_only=True)
    left += processes(root)
    return left


def assert_refused(ctr, r, message):
    """A bad input's contract: exit 125, one line `ctr: error: ...` naming the
    problem, and no instance record left."""
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("ctr: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert not os.listdir(ctr.path("instances"))


class Ctr:
    """Runs the real ctr binary against one state root."""

    def __init__(self, root, prefix=()):
        self.root = root
        self.prefix = list(prefix)  # e.g. nsenter into a test's own network namespace

    def env(self, **extra):
        env = dict(os.environ, CTR_ROOT=self.root)
        env.update(extra)
        return env

    def __call__(self, *args, input=None, timeout=60, env=None, check=False):
        proc = subprocess.run([*self.prefix, CTR, *args], input=input, capture_output=True,
                              text=True, timeout=timeout, env=self.env(**(env or {})))
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def popen(self, *args, env=None, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([*self.prefix, CTR, *args], env=self.env(**(env or {})),
                                text=True, **kw)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def inspect(self, name):
        import json

        return json.loads(self("inspect", name, check=True).stdout)

    def state(self, name):
        return self.inspect(name)["state"]


def wait_for(predicate, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def in_a_pty(ctr, *args, wrapper=()):
    """Run ctr on a terminal of its own, as a person would: (exit status, output).
    `wrapper` goes before ctr, e.g. ("timeout", "-s", "INT", "2")."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.environ["CTR_ROOT"] = ctr.root
        os.execvp((*wrapper, CTR)[0], [*wrapper, CTR, *args])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def compile_static(src, out):
    """A static binary of a test's own C source, to bind into containers."""
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", out, src], check=True)
    return out
