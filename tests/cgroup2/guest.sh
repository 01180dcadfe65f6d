#!/bin/sh
# Inside the cgroup2-only guest (tests/cgroup2/run.py boots it): make the run's
# disk the root, mount cgroup2 alone at /sys/fs/cgroup, run pytest on the list in
# tests/cgroup2/tests.txt (or on the arguments), exit with pytest's status.
#
# Three stages, one process (each execs the next):
#   boot    ctr's agent is PID 1 and runs the VM's command chrooted in the image
#           (/newroot, over 9p); the disk is mounted at /mnt/disk. A chrooted
#           process may not make user namespaces (--userns=auto), so it leaves the
#           chroot through PID 1's root...
#   switch  ...and there (busybox, the initramfs's root) moves the disk over / and
#           chroots into it, as switch_root does: the disk is now the root of the
#           mount namespace, not a chroot.
#   run     mounts, modules, the cgroup2 check, pytest.
set -eu
stage=${1:-run}
[ $# -gt 0 ] && shift
bb=/newroot/bin/busybox

case $stage in
boot)
  exec chroot /proc/1/root $bb sh /newroot/mnt/disk/ctr-test/tests/cgroup2/guest.sh switch "$@"
  ;;
switch)
  cd /newroot/mnt/disk
  $bb mount --move . /
  exec $bb chroot . /bin/sh /ctr-test/tests/cgroup2/guest.sh run "$@"
  ;;
esac

export PATH=/opt/ctr/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 CTR_BIN=/opt/ctr/venv/bin/ctr
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs -o nosuid,nodev shm /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=755 run /run
# The only cgroup hierarchy: cgroup_no_v1=all leaves the kernel no v1 one to mount.
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup
if awk '$3 == "cgroup" {found = 1} END {exit !found}' /proc/mounts || mount -t cgroup -o none,name=probe cgroup /mnt 2>/dev/null; then
  echo "guest: a cgroup v1 hierarchy can be mounted: not a cgroup2-only Linux" >&2
  exit 1
fi
hostname cgroup2-guest
ip link set lo up
# Modules the kernel would ask for anyway (its helper is the image's modprobe,
# see the recipe); loading them first keeps the first container's start short.
modprobe -a overlay veth bridge tun nf_tables nft_chain_nat nft_masq nft_nat nft_ct \
  nft_fib_ipv4 nft_reject_ipv4 2>/dev/null || true
# A swap file, so --memory-swap has swap to limit.
if fallocate -l 512M /swapfile 2>/dev/null && chmod 600 /swapfile && mkswap -q /swapfile >/dev/null; then
  swapon /swapfile || true
fi
# The tests run in a cgroup of their own, as a service's would on a systemd host
# (the root cgroup is the one exempt from v2's no-internal-processes rule).
mkdir /sys/fs/cgroup/test-runner
echo $$ > /sys/fs/cgroup/test-runner/cgroup.procs

echo "guest: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB;" \
  "cgroup2 only ($(cat /sys/fs/cgroup/cgroup.controllers)); cmdline: $(cat /proc/cmdline | tr ' ' '\n' | grep cgroup)"
cd /ctr-test
# Options alone (run.py passes --color): the tests are the list's.
ids=
for a in "$@"; do case $a in -*) ;; *) ids=1 ;; esac; done
if [ -z "$ids" ]; then
  set -- "$@" $(grep -v '^[[:space:]]*#' tests/cgroup2/tests.txt)
fi
start=$(date +%s)
rc=0
pytest -v -ra --durations=15 -p no:cacheprovider "$@" || rc=$?
echo "guest: pytest took $(($(date +%s) - start)) s, exit $rc"
sync
exit $rc
