# Prelude of every probe: run before the probe's own text, in one `sh -c`.
# The harness passes the host's facts as environment variables:
#   HOST_KERNEL  HOST_BOOT_ID  HOST_MARKER (a token in a host process's argv)
#   HOST_FILE (a file on the host holding HOST_MARKER)  HOST_PORT HOST_ADDRS
#   (a host TCP listener that answers HOST_MARKER)  HOST_BLOCK (MAJOR:MINOR of
#   a host disk)  MEMORY (bytes)  PIDS_LIMIT  CPUS
# A probe prints evidence, then ends with `verdict isolated` or `verdict exposed`.

verdict() {
    echo "verdict: $1"
    exit 0
}

# True when this instance runs its own kernel (a VM): whatever a probe gains
# there reaches the guest's kernel, not the host's.
own_kernel() {
    [ "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" != "$HOST_BOOT_ID" ]
}

# The probe may do it, and only the guest's kernel is affected: isolated.
guest_only() {
    if own_kernel; then
        echo "$1, but in the guest's own kernel (boot_id differs from the host's)"
        verdict isolated
    fi
    echo "$1, in the host's kernel"
    verdict exposed
}

# A scratch folder inside the instance, removed when the probe ends.
SCRATCH=$(mktemp -d /tmp/probe.XXXXXX 2>/dev/null || echo /tmp/probe.$$)
mkdir -p "$SCRATCH"
trap 'rm -rf "$SCRATCH"' EXIT
