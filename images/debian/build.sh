#!/bin/sh
# Build a Debian 12 (bookworm) root filesystem in $1 with debootstrap: variant
# minbase plus systemd, systemd-sysv and dbus, so that `ctr run --init debian`
# boots systemd as the container's PID 1.
#
# The packages come from the Debian mirror the host's apt uses (the first `deb`
# entry of /etc/apt/sources.list, sources.list.d/*.list or *.sources whose suite
# is a Debian one), else deb.debian.org. MIRROR=URL overrides; APT_ETC=DIR reads
# the sources from another folder (the unit tests do); INCLUDE=pkg,pkg... replaces
# the packages added to minbase (tests/cgroup2's guest recipe adds its own).
#
# Lines starting with "==> " are progress: `ctr image build` shows them on a
# terminal. ctr runs this recipe in mount and pid namespaces of its own, so the
# proc/sys/dev mounts debootstrap makes in the target vanish with it, however
# the build ends.
#
#   build.sh ROOTFS          build
#   build.sh --print-mirror  print the mirror that would be used, and exit
set -eu

SUITE=${SUITE:-bookworm}
INCLUDE=${INCLUDE:-systemd,systemd-sysv,dbus}
FALLBACK=http://deb.debian.org/debian

# The Debian suite names (codenames and aliases) a Debian mirror serves: an entry
# naming another suite (Ubuntu's jammy, say) is not a Debian mirror.
DEBIAN_SUITES="buster bullseye bookworm trixie forky sid oldoldstable oldstable stable testing unstable"

# URIs of `deb` entries, one per line, in apt's order: one-line .list entries
# ("deb [opts] URI SUITE COMPONENTS") then deb822 .sources stanzas.
apt_entries() {
  etc=${APT_ETC:-/etc/apt}
  for f in "$etc/sources.list" "$etc"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '
      { sub(/#.*/, "") }
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if (i + 1 <= NF) print $i, $(i + 1)
      }' "$f"
  done
  for f in "$etc"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas are separated by blank lines; a field continues on indented lines
    # (only URIs and Suites matter here, both whitespace-separated lists).
    awk '
      function flush(  n, u, s, i, j) {
        if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/) {
          n = split(uris, u, " "); m = split(suites, s, " ")
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j]
        }
        types = uris = suites = enabled = ""; field = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { if (field == "uris") uris = uris " " $0; else if (field == "suites") suites = suites " " $0; next }
      {
        key = tolower($0); sub(/:.*/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        field = key
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }' "$f"
  done
}

# The first entry whose suite is a Debian suite (not -updates, -security...) over
# a scheme debootstrap can fetch from.
host_mirror() {
  apt_entries | while read -r uri suite; do
    case $uri in http://* | https://* | ftp://* | file:/*) ;; *) continue ;; esac
    for s in $DEBIAN_SUITES; do
      if [ "$suite" = "$s" ]; then
        echo "${uri%/}"
        return 0
      fi
    done
  done
}

mirror() {
  if [ -n "${MIRROR:-}" ]; then
    echo "$MIRROR"
    return
  fi
  m=$(host_mirror | head -n 1)
  echo "${m:-$FALLBACK}"
}

if [ "${1:-}" = "--print-mirror" ]; then
  mirror
  exit 0
fi
[ $# -eq 1 ] || { echo "usage: build.sh ROOTFS | --print-mirror" >&2; exit 2; }
root=$1
command -v debootstrap >/dev/null 2>&1 || {
  echo "debootstrap is not installed (apt-get install debootstrap; make install does)" >&2
  exit 1
}

url=$(mirror)
echo "==> debootstrap $SUITE (minbase + $INCLUDE) from $url"
mkdir -p "$root"
# debootstrap prints a line per package; progress shows each phase once.
status=$(mktemp)
trap 'rm -f "$status"' EXIT
{
  rc=0
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$url" 2>&1 || rc=$?
  echo "$rc" > "$status"
} | awk '
  { print; fflush() }
  /^I: / {
    msg = substr($0, 4); sub(/[ .]+$/, "", msg)
    phase = $2
    if (phase == "Retrieving" || phase == "Validating") msg = "downloading packages"
    else if (phase == "Extracting" || phase == "Unpacking") msg = "unpacking packages"
    else if (phase == "Configuring") msg = "configuring packages"
    else if (phase == "Installing") msg = "installing the core packages"
    else if (phase == "Base") msg = "base system installed"
    else next
    if (!(msg in seen)) { seen[msg] = 1; print "==> " msg; fflush() }
  }'
rc=$(cat "$status")
if [ "$rc" != 0 ]; then
  echo "debootstrap failed (exit $rc); its log: $root/debootstrap/debootstrap.log" >&2
  tail -n 3 "$root/debootstrap/debootstrap.log" 2>/dev/null >&2 || true
  exit 1
fi

echo "==> preparing the image for containers"
cd "$root"
# Each instance makes a machine id of its own at first boot (systemd does,
# seeing an empty file): instances of one image must not share one.
: > etc/machine-id
rm -f var/lib/dbus/machine-id
# ctr binds its own hostname, hosts and resolv.conf over these.
echo debian > etc/hostname
# Downloaded packages and indexes: `apt-get update` fetches them again.
rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* \
  var/log/*.log var/log/apt/* debootstrap
mkdir -p var/lib/apt/lists/partial
