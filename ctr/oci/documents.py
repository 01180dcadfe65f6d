"""The documents ctr-oci prints without a container: `spec` (a default
config.json, as `runc spec` writes it) and `features` (the runtime-spec's
features document, which CRI-O asks for before it uses a runtime)."""

from ctr.oci.state import OCI_VERSION

_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
          "/proc/scsi"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
MOUNT_OPTIONS = ["bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec",
                 "exec", "rprivate", "private", "rslave", "slave", "rshared", "shared",
                 "runbindable", "unbindable", "strictatime", "relatime", "norelatime",
                 "noatime", "tmpcopyup", "newinstance"]


def default_config():
    """runc spec's config.json: busybox's sh on a terminal, rootfs read-only."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            # runc's since 1.2: no inheritable set (since 1.1.2), nor ambient, which needs it
            "capabilities": {k: list(_DEFAULT_CAPS) for k in
                             ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ctr-oci",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READONLY),
        },
    }


def features():
    """What this runtime supports, in the runtime-spec's features format."""
    from ctr.hooks import PHASES
    from ctr.seccomp import ACTIONS, OPS, default_profile
    from ctr.spec import ALL_CAPS

    arches = sorted({a for m in default_profile().get("archMap") or ()
                     for a in [m.get("architecture"), *(m.get("subArchitectures") or ())]
                     if a})
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(PHASES),
        "mountOptions": list(MOUNT_OPTIONS),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": [f"CAP_{c}" for c in ALL_CAPS],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": list(ACTIONS), "operators": list(OPS),
                        "archs": arches},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {},
    }
