"""InstanceSpec: the validated, immutable description of an instance.

Every input is checked here, once; the layers below trust a spec.

    model.py     InstanceSpec and its typed values (Resources, Port, Tmpfs, ...):
                 plain data, immutable all the way down; to_dict/from_dict are
                 spec.json
    caps.py      the capability tables and docker's way of building a set
    parse.py     user strings (the CLI's options) into typed values
    mounts.py    -v and --mount into Volume and Tmpfs values
    validate.py  the checks of a whole spec: ranges, rules between fields
    options.py   docker's run flags beyond the basics (RunOptions: --add-host,
                 --dns, --device, --sysctl, --pid/--ipc/--uts...): parse and check
    build.py     new_spec (typed values -> a spec: defaults, policies, validate)
                 and build_spec (the CLI's strings -> parse -> new_spec)

Nothing here reads the host: what a check needs to know of it (CPUs online,
memory, a block device's number, a seccomp profile file, the image's init) is
asked of the `host` the caller passes (ctr.host.HostFacts). This package
imports nothing of ctr but ctr.errors (and ctr.lazyre: its patterns are
compiled on first use).
"""

from ctr.spec.build import (
    INIT,
    INIT_STOP_SIGNAL,
    INIT_TMPFS,
    VM_DEFAULT_MEMORY,
    build_resources,
    build_spec,
    flat_defaults,
    generate_name,
    new_id,
    new_spec,
)
from ctr.spec.caps import ALL_CAPS, DEFAULT_CAPS, build_caps
from ctr.spec.model import (
    DEFAULT_PATH,
    KINDS,
    LOG_DEFAULTS,
    MIN_MEMORY,
    RESOURCE_KEYS,
    SD_NOTIFY_MODES,
    VM_MIN_MEMORY,
    Device,
    DeviceRule,
    Frozen,
    Healthcheck,
    InstanceSpec,
    LogLimits,
    Port,
    Resources,
    Restart,
    RunOptions,
    Tmpfs,
    Ulimit,
    Userns,
    VmOptions,
    Volume,
    device_rule_text,
    freeze,
    thaw,
)
from ctr.spec.mounts import check_mounts, check_volume_name, check_volumes
from ctr.spec.options import HOST_GATEWAY, parse_options
from ctr.spec.parse import (
    check_cgroup_parent,
    check_hostname,
    check_ip,
    check_name,
    check_network,
    check_ports,
    check_security_opts,
    check_tmpfs,
    check_ulimits,
    check_user,
    check_workdir,
    merge_env,
    parse_env,
    parse_labels,
    parse_signal,
    parse_size,
    read_env_file,
    read_label_file,
    signal_name,
)
from ctr.spec.validate import check_sd_notify, validate

__all__ = [
    "ALL_CAPS", "DEFAULT_CAPS", "DEFAULT_PATH", "INIT", "INIT_STOP_SIGNAL", "INIT_TMPFS",
    "KINDS", "LOG_DEFAULTS", "MIN_MEMORY", "RESOURCE_KEYS", "SD_NOTIFY_MODES",
    "VM_DEFAULT_MEMORY", "VM_MIN_MEMORY", "Device", "DeviceRule", "Frozen", "HOST_GATEWAY",
    "Healthcheck",
    "InstanceSpec", "LogLimits", "Port", "Resources", "Restart", "RunOptions", "Tmpfs",
    "Ulimit", "Userns", "VmOptions", "Volume",
    "build_caps", "build_resources", "build_spec", "check_cgroup_parent", "check_hostname",
    "check_ip", "check_mounts", "check_name", "check_network", "check_ports",
    "check_sd_notify", "check_security_opts", "check_tmpfs", "check_ulimits", "check_user",
    "check_volume_name", "check_volumes", "check_workdir", "device_rule_text",
    "flat_defaults", "freeze", "generate_name", "merge_env", "new_id", "new_spec",
    "parse_env", "parse_options", "parse_labels", "parse_signal", "parse_size", "read_env_file",
    "read_label_file", "signal_name", "thaw",
    "validate",
]
