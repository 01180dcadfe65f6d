# probe: kcore
# question: Can it read the kernel's memory (/proc/kcore)?
if [ ! -e /proc/kcore ]; then
    echo "/proc/kcore is absent: counts as blocked"
    verdict isolated
fi
n=$(head -c 1 /proc/kcore 2>"$SCRATCH/err" | wc -c)
if [ "$n" -gt 0 ]; then
    guest_only "read a byte of /proc/kcore"
fi
echo "reading /proc/kcore: ${n} bytes $(head -n 1 "$SCRATCH/err")"
verdict isolated
