"""Linux capabilities: the table, docker's default set, and a set built the
docker way from what the user adds and drops."""

from ctr.errors import InvalidSpec

# By number (linux/capability.h): a capability's index is its bit.
ALL_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
# docker's default set.
DEFAULT_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def cap_names(values, opt):
    """Capability names as a user writes them (chown, CAP_CHOWN, "a,b", ALL)
    -> ALL_CAPS names."""
    out = []
    for value in values:
        for name in str(value).split(","):
            name = name.strip().upper().removeprefix("CAP_")
            if name == "ALL":
                out.extend(ALL_CAPS)
            elif name in ALL_CAPS:
                out.append(name)
            else:
                raise InvalidSpec(f"invalid {opt} {value!r}: unknown capability {name or '?'}")
    return out


def kernel_order(caps):
    """A set of capability names as a spec keeps it: in kernel order, no
    duplicates (names it does not know last, for validate to refuse)."""
    caps = set(caps)
    return (*(c for c in ALL_CAPS if c in caps), *sorted(caps - set(ALL_CAPS)))


def build_caps(cap_add=(), cap_drop=(), privileged=False):
    """The capability set, docker's way: the default set (all with --privileged),
    minus --cap-drop, plus --cap-add (ALL is every capability)."""
    add, drop = cap_names(cap_add, "--cap-add"), cap_names(cap_drop, "--cap-drop")
    base = ALL_CAPS if privileged else DEFAULT_CAPS
    return kernel_order([c for c in base if c not in drop] + [c for c in add if c not in drop])
