#!/bin/busybox sh
# /init of the Ferry lab guest (busybox initramfs). Kept tiny on purpose:
#  - loads the virtio modules listed in /etc/modules.load (deps first),
#  - starts the memory dirtier with dirty_ws / dirty_rate from the cmdline,
#  - prints "HB <n>" once a second on the console; <n> lives in this shell's
#    memory, so a reset or a stall after a migration is visible,
#  - writes the same counter with a timestamp into sector 0 of /dev/vda
#    ("FERRYHB <n> <epoch> <name>"), so the host can read it from the image,
#  - runs Debian's qemu-ga on the virtio-serial port org.qemu.guest_agent.0
#    (restarted if it exits; its log is /tmp/qemu-ga.log in the guest),
#  - panics on an NMI from the host (unknown_nmi_panic), for vm.panic().
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin /run
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

while read -r mod; do
    [ -n "$mod" ] && insmod "/lib/modules/$mod" 2>/dev/null
done </etc/modules.load

echo 1 >/proc/sys/kernel/unknown_nmi_panic

# the guest agent: find its virtio-serial port (no udev here to name it)
agent() {
    i=0
    while [ $i -lt 100 ]; do
        for p in /sys/class/virtio-ports/*; do
            [ -r "$p/name" ] && [ "$(cat "$p/name")" = org.qemu.guest_agent.0 ] || continue
            mkdir -p /dev/virtio-ports
            ln -sf "../${p##*/}" /dev/virtio-ports/org.qemu.guest_agent.0
            while :; do
                LD_LIBRARY_PATH=/lib/x86_64-linux-gnu /bin/qemu-ga -m virtio-serial \
                    -p /dev/virtio-ports/org.qemu.guest_agent.0 -f /run/qemu-ga.pid -t /run \
                    -l /tmp/qemu-ga.log
                echo "FERRY qemu-ga exited ($?), restarting"
                sleep 1
            done
        done
        sleep 0.1
        i=$((i+1))
    done
    echo "FERRY no guest agent channel"
}
agent &

ws=0; rate=0; name=guest
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        dirty_ws=*) ws="${arg#dirty_ws=}" ;;
        dirty_rate=*) rate="${arg#dirty_rate=}" ;;
        ferry_name=*) name="${arg#ferry_name=}" ;;
    esac
done

ip link set lo up 2>/dev/null
ip link set eth0 up 2>/dev/null

# wait briefly for the disk (module probing is asynchronous)
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
disk=none; [ -b /dev/vda ] && disk=/dev/vda

echo "FERRY guest $name up: kernel $(uname -r) mem_kb=$(sed -n 's/MemTotal: *//p' /proc/meminfo) disk=$disk dirty_ws=$ws dirty_rate=$rate"
/bin/dirtier "$ws" "$rate" &

n=0
while :; do
    n=$((n+1))
    echo "HB $n"
    if [ "$disk" != none ]; then
        printf 'FERRYHB %d %d %s\n' "$n" "$(date +%s)" "$name" |
            dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null
    fi
    sleep 1
done
