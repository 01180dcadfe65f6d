# probe: mknod-block
# question: Can it create and read the host's disk device?
major=${HOST_BLOCK%:*}
minor=${HOST_BLOCK#*:}
if ! out=$(mknod "$SCRATCH/disk" b "$major" "$minor" 2>&1); then
    echo "mknod b $major $minor: $out"
    verdict isolated
fi
echo "mknod b $major $minor: created"
n=$(dd if="$SCRATCH/disk" bs=512 count=1 2>"$SCRATCH/err" | wc -c)
if [ "$n" -gt 0 ]; then
    guest_only "read $n bytes from block device $HOST_BLOCK"
fi
echo "reading it: $(cat "$SCRATCH/err" | head -n 1)"
verdict isolated
