# probe: host-kernel
# question: Does it run on the host's kernel?
# exposed-by-design: container
echo "uname -r: $(uname -r) (host: $HOST_KERNEL)"
echo "boot_id: $(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unreadable) (host: $HOST_BOOT_ID)"
echo "/proc/version: $(head -c 80 /proc/version)"
own_kernel && verdict isolated
verdict exposed
