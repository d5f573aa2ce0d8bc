"""Define, start and watch lab guests (stdlib + virsh; no libvirt-python needed).

A guest is Debian's kernel + the lab initramfs (see build.py), a small qcow2
disk in pool `shared` or `local`, a NIC on `labnet` and a serial console
logged (append='on') to LAB_DIR/shared/console/<name>.log, a file both hosts
write to, so the heartbeat can be followed across a migration.
"""

from __future__ import annotations

import re
import shutil
import struct
import time
from pathlib import Path
from xml.sax.saxutils import escape

from lab.common import (
    NETWORK_NAME,
    accel,
    console_dir,
    host_local_dir,
    hosts,
    local_pool_path,
    read_state,
    shared_dir,
    shared_pool_path,
    virsh,
)

HB_RE = re.compile(r"^HB (\d+)\s*$", re.M)
# what a dying guest kernel (or the dirtier's own check) prints
PROBLEM_RE = re.compile(
    r"(Kernel panic|Oops|BUG:|general protection fault|unable to handle page fault"
    r"|Call Trace:|DIRTY MISMATCH|segfault|Attempted to kill init)"
)


def _host(name: str):
    st = read_state() or {}
    for h in hosts(st.get("host_count")):
        if h.name == name or h.key == name:
            return h
    raise KeyError(f"no lab host {name!r}")


def boot_files() -> dict:
    """Kernel and initrd, copied into LAB_DIR/shared/boot (a path both hosts see as-is)."""
    from lab.guest import build

    b = build.build_guest()
    boot = shared_dir() / "boot"
    boot.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, src in (("kernel", b["kernel"]), ("initrd", b["initrd"])):
        dst = boot / (f"vmlinuz-{b['version']}" if kind == "kernel" else Path(src).name)
        if not dst.exists():
            tmp = dst.with_suffix(".part")
            shutil.copyfile(src, tmp)
            tmp.rename(dst)
        out[kind] = str(dst)
    return out


def console_log_path(name: str) -> Path:
    return console_dir() / f"{name}.log"


def disk_path(name: str, pool: str = "shared", host: str | None = None) -> Path:
    """Disk file as seen from the root namespace (local pools need the host)."""
    if pool == "shared":
        return shared_pool_path() / f"{name}.qcow2"
    if host is None:
        raise ValueError("a disk in pool 'local' lives on one host: give host=")
    return host_local_dir(_host(host).key) / f"{name}.qcow2"


def guest_xml(
    name: str,
    memory_mib: int,
    dirty_ws: int,
    dirty_rate: int,
    disk: str,
    console: str,
    boot: dict,
    vcpus: int = 1,
) -> str:
    kvm = accel() == "kvm"
    cmdline = (
        f"console=ttyS0 loglevel=4 panic=1 dirty_ws={dirty_ws} "
        f"dirty_rate={dirty_rate} ferry_name={name}"
    )
    cpu = "<cpu mode='host-passthrough' migratable='on'/>" if kvm else ""
    return f"""<domain type='{"kvm" if kvm else "qemu"}'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{boot["kernel"]}</kernel>
    <initrd>{boot["initrd"]}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  {cpu}
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='{NETWORK_NAME}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def guest_start(
    name: str,
    host: str = "lab-a",
    memory_mib: int = 256,
    dirty_ws: int = 0,
    dirty_rate: int = 0,
    pool: str = "shared",
    disk_mib: int = 64,
    vcpus: int = 1,
) -> dict:
    """Create the disk, define and start `name` on `host`; returns its facts."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ValueError(f"bad guest name {name!r}")
    h = _host(host)
    boot = boot_files()
    console = console_log_path(name)
    console.parent.mkdir(parents=True, exist_ok=True)
    console.unlink(missing_ok=True)
    vol = f"{name}.qcow2"
    # qcow2 with preallocated metadata: sector 0 maps to a fixed file offset
    # from the start, so the host can read the disk heartbeat while QEMU runs
    virsh(h.uri, "pool-refresh", pool)
    virsh(
        h.uri,
        "vol-create-as",
        pool,
        vol,
        f"{disk_mib}M",
        "--format",
        "qcow2",
        "--prealloc-metadata",
    )
    path = virsh(h.uri, "vol-path", "--pool", pool, vol).strip()
    xml = guest_xml(name, memory_mib, dirty_ws, dirty_rate, path, str(console), boot, vcpus)
    xf = shared_dir() / "boot" / f"{name}.xml"
    xf.write_text(xml)
    virsh(h.uri, "define", str(xf))
    virsh(h.uri, "start", name)
    return {
        "name": name,
        "host": h.name,
        "uri": h.uri,
        "pool": pool,
        "disk": path,
        "disk_on_host_fs": str(disk_path(name, pool, h.name)),
        "console_log": str(console),
        "memory_mib": memory_mib,
        "dirty_ws": dirty_ws,
        "dirty_rate": dirty_rate,
    }


def guest_destroy(name: str) -> None:
    """Stop and undefine `name` on every lab host and delete its disks and console log."""
    st = read_state() or {}
    for h in hosts(st.get("host_count")):
        virsh(h.uri, "destroy", name, check=False, timeout=30)
        virsh(h.uri, "undefine", name, check=False, timeout=30)
        for pool in ("shared", "local"):
            virsh(h.uri, "vol-delete", "--pool", pool, f"{name}.qcow2", check=False, timeout=30)
        (host_local_dir(h.key) / f"{name}.qcow2").unlink(missing_ok=True)
    (shared_pool_path() / f"{name}.qcow2").unlink(missing_ok=True)
    console_log_path(name).unlink(missing_ok=True)


def where_running(name: str) -> list[str]:
    """Lab hosts on which domain `name` is running."""
    st = read_state() or {}
    out = []
    for h in hosts(st.get("host_count")):
        state = virsh(h.uri, "domstate", name, check=False, timeout=30).strip()
        if state == "running":
            out.append(h.name)
    return out


def guest_list() -> dict:
    st = read_state() or {}
    return {
        h.name: virsh(h.uri, "list", "--all", "--name", check=False).split()
        for h in hosts(st.get("host_count"))
    }


# ---------------------------------------------------------------- heartbeats


def console_text(name: str) -> str:
    try:
        return console_log_path(name).read_text(errors="replace").replace("\r", "")
    except FileNotFoundError:
        return ""


def console_heartbeats(name: str) -> list[int]:
    """Every HB counter in the console log, in order."""
    return [int(x) for x in HB_RE.findall(console_text(name))]


def last_console_heartbeat(name: str) -> int | None:
    hb = console_heartbeats(name)
    return hb[-1] if hb else None


def console_problems(name: str) -> list[str]:
    """Console lines that show a panic, oops or memory corruption."""
    return [line for line in console_text(name).splitlines() if PROBLEM_RE.search(line)]


def wait_heartbeat(name: str, timeout: float = 60, after: int | None = None) -> int:
    """Wait for a console heartbeat (greater than `after` if given); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        hb = last_console_heartbeat(name)
        if hb is not None and (after is None or hb > after):
            return hb
        probs = console_problems(name)
        if probs:
            raise RuntimeError(f"guest {name} shows problems: {probs[:3]}")
        if time.monotonic() > deadline:
            tail = console_text(name)[-600:]
            raise TimeoutError(
                f"no heartbeat{f' > {after}' if after is not None else ''} "
                f"from {name} in {timeout}s; console tail:\n{tail}"
            )
        time.sleep(0.25)


def read_guest_bytes(path: str | Path, offset: int = 0, length: int = 512) -> bytes:
    """Read guest-visible bytes from a raw or qcow2 image (no backing files, no compression)."""
    with open(path, "rb") as f:
        hdr = f.read(80)
        if hdr[:4] != b"QFI\xfb":
            f.seek(offset)
            return f.read(length)
        cluster_bits = struct.unpack(">I", hdr[20:24])[0]
        l1_offset = struct.unpack(">Q", hdr[40:48])[0]
        if struct.unpack(">I", hdr[4:8])[0] >= 3:
            if struct.unpack(">Q", hdr[72:80])[0] & 0x10:  # incompatible features
                raise ValueError("qcow2 extended L2 entries are not supported")
        csize = 1 << cluster_bits
        l2_bits = cluster_bits - 3
        if offset % csize + length > csize:
            raise ValueError("read must stay within one cluster")
        mask = 0x00FFFFFFFFFFFE00
        f.seek(l1_offset + 8 * (offset >> (cluster_bits + l2_bits)))
        l2 = struct.unpack(">Q", f.read(8))[0] & mask
        if not l2:
            return b"\0" * length
        f.seek(l2 + 8 * ((offset >> cluster_bits) & ((1 << l2_bits) - 1)))
        entry = struct.unpack(">Q", f.read(8))[0]
        if entry & (1 << 62):
            raise ValueError("compressed qcow2 clusters are not supported")
        data = entry & mask
        if not data or entry & 1:
            return b"\0" * length
        f.seek(data + offset % csize)
        return f.read(length)


def disk_heartbeat(name: str, path: str | Path | None = None) -> dict | None:
    """The guest's last disk heartbeat {'counter', 'epoch', 'name'} from sector 0, or None.

    Without `path`, looks at the shared pool, then every host's local pool
    (newest heartbeat wins, e.g. after a non-shared-disk migration).
    """
    paths = (
        [Path(path)]
        if path
        else [shared_pool_path() / f"{name}.qcow2"]
        + [
            host_local_dir(h.key) / f"{name}.qcow2"
            for h in hosts((read_state() or {}).get("host_count"))
        ]
    )
    best = None
    for p in paths:
        if not p.exists():
            continue
        raw = read_guest_bytes(p, 0, 512)
        m = re.match(rb"FERRYHB (\d+) (\d+) (\S+)\n", raw)
        if m:
            hb = {
                "counter": int(m.group(1)),
                "epoch": int(m.group(2)),
                "name": m.group(3).decode(),
                "path": str(p),
            }
            if best is None or hb["counter"] > best["counter"]:
                best = hb
    return best


__all__ = [
    "boot_files",
    "console_heartbeats",
    "console_log_path",
    "console_problems",
    "disk_heartbeat",
    "disk_path",
    "guest_destroy",
    "guest_list",
    "guest_start",
    "guest_xml",
    "last_console_heartbeat",
    "local_pool_path",
    "read_guest_bytes",
    "wait_heartbeat",
    "where_running",
]
