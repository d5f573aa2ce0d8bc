#!/bin/sh
# Install what the Ferry lab needs on Debian 12 (bookworm), as root. Idempotent:
# returns at once when everything is present.
#
# libvirt 11.3 + QEMU 10.0 come from bookworm-backports, named per package
# with the package/suite form (`-t bookworm-backports` would drag in a newer
# systemd). qemu-system-common/-data and seabios must be named with /$B too,
# or apt refuses the combination. QEMU 7.2 from plain bookworm silently
# corrupts TCG guests that dirty memory during live migration: do not use it.
#
# virtlockd is libvirt-daemon-lock, its libvirtd plugin (lock-driver/lockd.so)
# libvirt-daemon-plugin-lockd; virt-admin is in libvirt-clients; OVMF (UEFI guests)
# comes from plain bookworm. The guest agent is not installed here: lab/guest/build.py
# fetches qemu-guest-agent with `apt-get download` and copies qemu-ga and the
# libraries ldd lists (glib, numa, uring, udev: listed below so ldd finds them).
set -eu
B=bookworm-backports
PKGS_BPO="qemu-system-x86 qemu-system-common qemu-system-data seabios qemu-utils
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-storage
  libvirt-daemon-driver-network libvirt-clients libvirt-dev
  libvirt-daemon-lock libvirt-daemon-plugin-lockd"
PKGS="busybox-static cpio gcc libc6-dev openssl iproute2 kmod util-linux ovmf
  libglib2.0-0 libnuma1 liburing2 libudev1"

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: must run as root" >&2
    exit 1
fi

missing=""
for p in $PKGS_BPO; do
    v=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null || true)
    case "$v" in
        "install ok installed "*bpo12*) ;;
        *) missing="$missing $p/$B" ;;
    esac
done
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: everything present"
    exit 0
fi

echo "install-deps: installing$missing"
list=/etc/apt/sources.list.d/bookworm-backports.list
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" > "$list"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
echo "install-deps: done"
