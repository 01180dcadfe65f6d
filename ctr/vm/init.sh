#!/bin/busybox sh
# ctr's init in the guest: modules, the instance's root shared from the host
# (virtio-9p), the network, then ctr-agent runs the command (see agent.c).
# A failure is reported on the ctr.status port and the guest powers off.
bb=/bin/busybox
export PATH=/bin

status() {
  for p in /sys/class/virtio-ports/*; do
    [ "$($bb cat "$p/name" 2>/dev/null)" = ctr.status ] && echo "$*" > "/dev/${p##*/}"
  done
}

fail() {
  status "exit 125 the VM's init: $*"
  echo "ctr init: $*" > /dev/console
  $bb poweroff -f
}

$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
. /ctr/env
mods=$($bb cat /ctr/modules)
[ -n "$CTR_IP" ] && mods="$mods $($bb cat /ctr/modules.net)"
cd /lib/ctr && /bin/ctr-agent insmod $mods || fail "loading modules"
cd /

$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=mmap root /newroot \
  || fail "mounting the root file system"
r=/newroot
$bb mkdir -p $r/proc $r/sys $r/dev $r/tmp
$bb mount -t proc proc $r/proc
$bb mount -t sysfs -o ro,nosuid,nodev,noexec sysfs $r/sys
$bb mount -t devtmpfs -o nosuid devtmpfs $r/dev
$bb mkdir -p $r/dev/pts $r/dev/shm
$bb mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts
$bb mount -t tmpfs -o nosuid,nodev shm $r/dev/shm
for f in hosts resolv.conf hostname; do
  [ -f /ctr/$f ] && [ -f $r/etc/$f ] && $bb mount --bind /ctr/$f $r/etc/$f
done

$bb hostname "$CTR_HOSTNAME"
$bb ip link set lo up
if [ -n "$CTR_IP" ]; then
  $bb ip link set eth0 address "$CTR_MAC" up || fail "no eth0"
  $bb ip addr add "$CTR_IP/$CTR_PREFIXLEN" dev eth0
  $bb ip route add default via "$CTR_GATEWAY"
fi

exec /bin/ctr-agent $CTR_AGENT_ARGS
