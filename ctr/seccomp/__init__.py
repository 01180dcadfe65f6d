"""Seccomp profiles in docker's JSON format, compiled for the C helper.

A profile is checked when the instance is created (`check`), kept in its spec,
and turned at start into the rules of this instance (`build`): the entries
whose `includes`/`excludes` match its capabilities and this machine's arch and
kernel. The C helper hands them to libseccomp, which knows each arch's syscall
numbers and emits the BPF program (ctr/native/_native.c: seccomp_compile), loaded
as the process's last step before its exec (seccomp_install).

The default profile (default.json) allows every system call but the dangerous
ones, which fail with EPERM unless the instance holds the capability that makes
them legitimate (docker's default profile, read as a denylist).
"""

import json
import os

DEFAULT = "default"
UNCONFINED = "unconfined"

ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG")
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
       "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
EPERM = 1
# uname -m -> docker's arch name
MACHINE_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64",
                "i686": "SCMP_ARCH_X86", "armv7l": "SCMP_ARCH_ARM",
                "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
                "riscv64": "SCMP_ARCH_RISCV64"}


class ProfileError(ValueError):
    pass


def default_profile():
    with open(os.path.join(os.path.dirname(__file__), "default.json")) as f:
        return json.load(f)


def load_file(path):
    """A docker-format profile from a file, checked; ProfileError says what is wrong."""
    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError as err:
        raise ProfileError(f"seccomp profile {path}: {err.strerror}") from err
    except ValueError as err:
        raise ProfileError(f"seccomp profile {path} is not JSON: {err}") from err
    try:
        check(profile)
    except ProfileError as err:
        raise ProfileError(f"seccomp profile {path}: {err}") from err
    return profile


def _action(entry, where):
    action = entry.get("action") if where != "profile" else entry.get("defaultAction")
    if action not in ACTIONS:
        raise ProfileError(f"{where}: unknown action {action!r}")
    return action


def check(profile):
    if not isinstance(profile, dict):
        raise ProfileError("a profile is a JSON object")
    _action(profile, "profile")
    calls = profile.get("syscalls") or []
    if not isinstance(calls, list):
        raise ProfileError("syscalls is a list")
    for i, entry in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise ProfileError(f"{where} is not an object")
        names = entry.get("names") or ([entry["name"]] if entry.get("name") else [])
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ProfileError(f"{where} names no system call")
        _action(entry, where)
        args = entry.get("args") or []
        if len(args) > 6:
            raise ProfileError(f"{where}: more than 6 argument conditions")
        for arg in args:
            if not isinstance(arg, dict) or arg.get("op") not in OPS or not (
                    isinstance(arg.get("index"), int) and 0 <= arg["index"] <= 5):
                raise ProfileError(f"{where}: bad argument condition {arg!r}")


def _kernel_at_least(version):
    def parts(v):
        return tuple(int(x) for x in v.split("-")[0].split(".")[:2] if x.isdigit())

    return parts(os.uname().release) >= parts(version)


def _applies(entry, caps, arch):
    inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
    if any(c in caps for c in exc.get("caps") or ()):
        return False
    if not all(c in caps for c in inc.get("caps") or ()):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if arch in (exc.get("arches") or ()):
        return False
    return not inc.get("minKernel") or _kernel_at_least(inc["minKernel"])


def _arches(profile, arch):
    for m in profile.get("archMap") or ():
        if m.get("architecture") == arch:
            names = [arch, *(m.get("subArchitectures") or ())]
            break
    else:
        names = list(profile.get("architectures") or ()) or [arch]
    # SCMP_ARCH_X86_64 -> x86_64, as libseccomp's arch resolver names them
    return [n.removeprefix("SCMP_ARCH_").lower() for n in names]


def build(profile, caps, machine=None):
    """(default action, errno), arches, rules for the C helper, for an instance
    holding `caps` (names without CAP_) on this machine."""
    arch = MACHINE_ARCH.get(machine or os.uname().machine, "")
    have = {f"CAP_{c}" for c in caps}
    default_errno = profile.get("defaultErrnoRet", EPERM)
    rules = []
    for entry in profile.get("syscalls") or ():
        if not _applies(entry, have, arch):
            continue
        errno = entry.get("errnoRet", default_errno)
        conds = [(a["index"], a["op"], a.get("value", 0), a.get("valueTwo", 0))
                 for a in entry.get("args") or ()]
        for name in entry.get("names") or [entry["name"]]:
            rules.append((name, entry["action"], errno, conds))
    return (profile["defaultAction"], default_errno), _arches(profile, arch), rules


def for_instance(spec):
    """The filter of an instance, built and compiled to BPF (None: unconfined).
    Called while ctr's own files are still in reach, before pivot_root or setns."""
    if spec.seccomp == UNCONFINED:
        return None
    from ctr.native import _native

    built = build(default_profile() if spec.seccomp == DEFAULT else spec.seccomp, spec.caps)
    return _native.seccomp_compile(*built)


def load(program):
    """Load a filter of for_instance into the calling process (the last step
    before exec)."""
    from ctr.native import _native

    _native.seccomp_install(program)
