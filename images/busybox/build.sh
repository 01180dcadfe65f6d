#!/bin/sh
# Build a busybox root filesystem in $1 from the host's busybox-static.
# No network: everything comes from the host's busybox binary.
set -eu
root=$1
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "busybox-static is not installed ($busybox)" >&2; exit 1; }
# A dynamically linked busybox would need the host's libc inside the image.
if ! "$busybox" --list-full >/dev/null 2>&1; then
  echo "$busybox cannot list its applets (is it busybox-static?)" >&2; exit 1
fi

mkdir -p "$root"
cd "$root"
mkdir -p bin sbin usr/bin usr/sbin etc root home proc sys dev tmp run var/tmp var/log
chmod 1777 tmp var/tmp
chmod 700 root
cp "$busybox" bin/busybox
chmod 755 bin/busybox
for applet in $(bin/busybox --list-full); do
  [ "$applet" = bin/busybox ] && continue
  [ -e "$applet" ] || ln -s /bin/busybox "$applet"
done

cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat > etc/group <<'G'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
wheel:x:10:root
www-data:x:33:
users:x:100:
nogroup:x:65534:
G
cat > etc/shadow <<'S'
root:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
S
chmod 640 etc/shadow
echo "hosts: files dns" > etc/nsswitch.conf
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > etc/hosts
: > etc/resolv.conf
echo busybox > etc/hostname
