# probe: reboot
# question: Could it reboot the machine? (decided from CAP_SYS_BOOT; nothing is rebooted)
capeff=$(grep CapEff /proc/self/status | awk '{print $2}')
echo "CapEff: $capeff"
if [ $(( 0x$capeff >> 22 & 1 )) = 1 ]; then
    guest_only "CAP_SYS_BOOT is in the effective set: reboot(2) would be allowed"
fi
echo "no CAP_SYS_BOOT: reboot(2) fails with EPERM"
verdict isolated
