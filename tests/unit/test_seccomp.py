"""The profile compiler: which entries of a docker-format profile apply to an
instance (its capabilities, the arch, the kernel), and what reaches libseccomp."""

import pytest

from ctr import seccomp


def names(rules):
    return {r[0] for r in rules}


def test_default_profile_denies_with_eperm_unless_the_capability_is_held():
    profile = seccomp.default_profile()
    seccomp.check(profile)
    default, arches, rules = seccomp.build(profile, ("CHOWN",), machine="x86_64")
    assert default == ("SCMP_ACT_ALLOW", 1)
    assert arches == ["x86_64", "x86", "x32"]
    denied = names(rules)
    assert {"mount", "init_module", "reboot", "ptrace", "open_by_handle_at", "keyctl",
            "bpf", "unshare", "setns", "userfaultfd", "kexec_load", "swapon"} <= denied
    assert all(r[1] == "SCMP_ACT_ERRNO" and r[2] == 1 for r in rules if r[0] != "clone3")
    clone = [r for r in rules if r[0] == "clone"]
    assert any(c[3] == [(0, "SCMP_CMP_MASKED_EQ", 0x10000000, 0x10000000)] for c in clone)
    # the capability makes the call legitimate: its rules go
    _, _, rules = seccomp.build(profile, ("SYS_ADMIN", "SYS_MODULE"), machine="x86_64")
    assert not {"mount", "unshare", "clone", "clone3", "init_module"} & names(rules)
    assert {"reboot", "keyctl"} <= names(rules)


def test_includes_and_excludes():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}},
        {"names": ["arm_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
        {"names": ["new"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        {"name": "legacy", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    ], "architectures": ["SCMP_ARCH_X86_64"]}
    default, arches, rules = seccomp.build(profile, (), machine="x86_64")
    assert default == ("SCMP_ACT_ERRNO", 38) and arches == ["x86_64"]
    assert rules == [("read", "SCMP_ACT_ALLOW", 38, []), ("legacy", "SCMP_ACT_ERRNO", 13, [])]
    _, _, rules = seccomp.build(profile, ("SYS_PTRACE",), machine="x86_64")
    assert "ptrace" in names(rules)


@pytest.mark.parametrize("profile, message", [
    ([], "a JSON object"),
    ({"defaultAction": "ALLOW"}, "unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"]}]}, "unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 9, "op": "SCMP_CMP_EQ"}]}]},
     "bad argument condition"),
])
def test_check_refuses(profile, message):
    with pytest.raises(seccomp.ProfileError, match=message):
        seccomp.check(profile)
