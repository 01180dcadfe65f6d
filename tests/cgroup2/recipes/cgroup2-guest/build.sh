#!/bin/sh
# The guest that `make test-cgroup2` boots under ctr's VM kind (tests/cgroup2/run.py
# builds it once: CTR_RECIPES=tests/cgroup2/recipes ctr image build cgroup2-guest).
#
# A Debian 12 root made by images/debian/build.sh (debootstrap from the host's
# mirror) with what the container tests need in a cgroup2-only Linux: python3 and
# its venv module (the Python packages are copied in from the host's venv at each
# run, see run.py), busybox-static (the busybox image, and the guest's chroot
# escape), iproute2, nftables, kmod, procps; and the modules of the kernel that
# `ctr kernel fetch` cached, taken from the same distribution package (virtio_blk
# and ext4 for the run's disk; overlay, veth, bridge, tun, nftables for
# containers), with their modules.dep.
#
# Environment: CG2_KERNEL (required) the guest kernel's version (6.1.0-57-amd64);
# CG2_KEY a stamp written to /etc/ctr-cgroup2-guest (run.py's cache key).
set -eu
root=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
kver=${CG2_KERNEL:?CG2_KERNEL: the guest kernel version}

INCLUDE=systemd,systemd-sysv,dbus,python3,python3-venv,busybox-static,iproute2,nftables,kmod,procps,e2fsprogs \
  sh "$repo/images/debian/build.sh" "$root"

echo "==> adding the modules of kernel $kver"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
got=
for pkg in "linux-image-$kver" "linux-modules-$kver"; do  # Debian; Ubuntu keeps them apart
  if (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null 2>&1); then
    got=1
  fi
done
[ -n "$got" ] || { echo "cannot download linux-image-$kver (apt-get update?)" >&2; exit 1; }
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/tree"; done
src=$(ls -d "$tmp"/tree/lib/modules/"$kver" "$tmp"/tree/usr/lib/modules/"$kver" 2>/dev/null | head -n 1)
[ -n "$src" ] || { echo "no modules for $kver in its package" >&2; exit 1; }
dst=$root/lib/modules/$kver
mkdir -p "$dst/kernel"
cp "$src"/modules.builtin* "$src"/modules.order "$dst/" 2>/dev/null || true
(
  cd "$src/kernel"
  for part in fs/overlayfs fs/ext4 fs/jbd2 fs/mbcache.ko lib crypto drivers/virtio \
      drivers/block/virtio_blk.ko drivers/net/veth.ko drivers/net/tun.ko drivers/net/dummy.ko \
      net/netfilter net/ipv4 net/ipv6 net/bridge net/802 net/llc net/sched; do
    # shellcheck disable=SC2046
    [ -e "$part" ] && find "$part" -name '*.ko*' -exec cp --parents {} "$dst/kernel/" \;
  done
)
depmod -b "$root" "$kver"

echo "==> the guest's boot script and a venv"
mkdir -p "$root/usr/local/sbin" "$root/mnt/disk"
# The kernel runs its module helper in the initramfs's root, where ctr's agent
# mounted this image at /newroot: the helper chroots into it.
cat > "$root/usr/local/sbin/guest-modprobe" <<'EOF'
#!/newroot/bin/busybox sh
exec /newroot/bin/busybox chroot /newroot /sbin/modprobe "$@"
EOF
# The VM's command: the run's disk (an ext4 image run.py made: this image's
# files, the checkout at /ctr-test, the Python packages), then the checkout's
# guest.sh, which makes the disk the guest's root and runs the tests.
cat > "$root/usr/local/sbin/ctr-test-guest" <<'EOF'
#!/bin/sh
set -eu
echo /newroot/usr/local/sbin/guest-modprobe > /proc/sys/kernel/modprobe
modprobe -a virtio_blk ext4
i=0
while [ ! -b /dev/vda ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
mount -t ext4 /dev/vda /mnt/disk
exec sh /mnt/disk/ctr-test/tests/cgroup2/guest.sh boot "$@"
EOF
chmod 755 "$root/usr/local/sbin/guest-modprobe" "$root/usr/local/sbin/ctr-test-guest"
chroot "$root" python3 -m venv --without-pip /opt/ctr/venv
echo "${CG2_KEY:-}" > "$root/etc/ctr-cgroup2-guest"
