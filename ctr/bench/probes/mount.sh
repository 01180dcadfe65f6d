# probe: mount
# question: Can it mount a filesystem?
mkdir -p "$SCRATCH/mnt"
if out=$(mount -t tmpfs bench "$SCRATCH/mnt" 2>&1); then
    umount "$SCRATCH/mnt"
    guest_only "mount -t tmpfs succeeded"
fi
echo "mount -t tmpfs: $out"
verdict isolated
