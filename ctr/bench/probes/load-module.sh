# probe: load-module
# question: Can it load a kernel module?
head -c 4096 /dev/urandom > "$SCRATCH/garbage.ko"
out=$(insmod "$SCRATCH/garbage.ko" 2>&1)
echo "insmod of a garbage module: ${out:-succeeded}"
case "$out" in
    *"not permitted"*|*"ermission denied"*)
        echo "refused before the module was read (EPERM)"
        verdict isolated ;;
    *"does not support"*)
        echo "this kernel cannot load modules at all (ENOSYS)"
        verdict isolated ;;
esac
guest_only "the kernel read the module (it only refused its content)"
