"""Define, start and watch lab guests (stdlib + virsh; no libvirt-python needed).

A guest is Debian's kernel + the lab initramfs (see build.py), a small qcow2
disk in pool `shared`, `local` or `twin`, a NIC on `labnet`, a serial console
logged (append='on') to LAB_DIR/shared/console/<name>.log, a file both hosts
write to, so the heartbeat can be followed across a migration, a guest-agent
channel (org.qemu.guest_agent.0, Debian's qemu-ga inside) and a pvpanic
device. `uefi=True` boots OVMF (q35, pflash + a per-domain NVRAM file made
from the template in the host's own /var, not on shared storage).

Runtime control without reboot: `set_dirty` (the guest agent runs
`dirtier set` inside the guest), `panic` (an NMI, or sysrq through the agent),
`agent_command` / `agent_ping` / `guest_exec`.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import struct
import time
from pathlib import Path
from xml.sax.saxutils import escape

from lab.common import (
    NETWORK_NAME,
    accel,
    console_dir,
    host_local_dir,
    host_qmp_dir,
    host_twin_dir,
    hosts,
    local_pool_path,
    qmp_dir,
    read_state,
    run,
    shared_dir,
    shared_pool_path,
    virsh,
)

POOLS = ("shared", "local", "twin")
AGENT_CHANNEL = "org.qemu.guest_agent.0"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"  # inside each host's private /var overlay
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"

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
    """Disk file as seen from the root namespace (local and twin pools need the host)."""
    if pool == "shared":
        return shared_pool_path() / f"{name}.qcow2"
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r} (one of {', '.join(POOLS)})")
    if host is None:
        raise ValueError(f"a disk in pool {pool!r} lives on one host: give host=")
    key = _host(host).key
    return (host_local_dir(key) if pool == "local" else host_twin_dir(key)) / f"{name}.qcow2"


def _pool_file(pool: str, host: str, file_name: str) -> Path:
    """A pool's file as the root namespace sees it."""
    return disk_path(file_name.removesuffix(".qcow2"), pool, host).with_name(file_name)


def nvram_path(name: str) -> str:
    """A UEFI guest's NVRAM file as its host sees it (in that host's own /var)."""
    return f"{NVRAM_DIR}/{name}_VARS.fd"


def qmp_socket(name: str) -> str:
    """The lab's second QMP monitor of a guest, as its host sees it (a per-host directory
    bind-mounted at LAB_DIR/qmp on every host).

    libvirt owns QEMU's own monitor; this one exists for repairs libvirt cannot do
    (see postcopy_recover_qemu). Domains are tainted 'custom-argv' by it."""
    return str(qmp_dir() / f"{name}.qmp")


def nvram_file(name: str, host: str) -> Path:
    """The same NVRAM file as seen from the root namespace (the host's /var overlay)."""
    return Path(_host(host).dir) / "ovl/var/upper" / nvram_path(name)[len("/var/") :]


def guest_xml(
    name: str,
    memory_mib: int,
    dirty_ws: int,
    dirty_rate: int,
    disk: str,
    console: str,
    boot: dict,
    vcpus: int = 1,
    uefi: bool = False,
    extra: tuple = (),
) -> str:
    """`extra`: (target, path) of raw data disks after vda (virtio, defined cold: the
    lab's i440fx machine cannot hot-plug on its root bus)."""
    kvm = accel() == "kvm"
    extra_xml = "".join(
        f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='{escape(path)}'/>
      <target dev='{target}' bus='virtio'/>
    </disk>"""
        for target, path in extra
    )
    cmdline = (
        f"console=ttyS0 loglevel=4 panic=1 dirty_ws={dirty_ws} "
        f"dirty_rate={dirty_rate} ferry_name={name}"
    )
    cpu = "<cpu mode='host-passthrough' migratable='on'/>" if kvm else ""
    if uefi:
        # OVMF without secure boot (no SMM needed), the NVRAM file per domain in the host's
        # own /var (libvirt copies the template there on first start, on each host)
        firmware = (
            f"<loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>\n"
            f"    <nvram template='{OVMF_VARS}'>{nvram_path(name)}</nvram>\n    "
        )
        machine, features = "q35", "<features><acpi/><apic/></features>"
    else:
        firmware, machine, features = "", "pc", ""
    return f"""<domain type='{"kvm" if kvm else "qemu"}' xmlns:qemu='{QEMU_NS}'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    {firmware}<kernel>{boot["kernel"]}</kernel>
    <initrd>{boot["initrd"]}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  {features}
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
    </disk>{extra_xml}
    <interface type='network'>
      <source network='{NETWORK_NAME}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='{AGENT_CHANNEL}'/>
    </channel>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <panic model='pvpanic'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-qmp'/>
    <qemu:arg value='unix:{qmp_socket(name)},server=on,wait=off'/>
  </qemu:commandline>
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
    uefi: bool = False,
    extra_disks: tuple = (),
) -> dict:
    """Create the disk, define and start `name` on `host`; returns its facts.

    `extra_disks`: (pool, MiB) of raw data disks vdb, vdc, ... each starting with a
    64-byte marker "FERRY-MARKER <name> <target>" written before the guest boots (facts
    'extra_disks': target -> {pool, path, marker})."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ValueError(f"bad guest name {name!r}")
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r} (one of {', '.join(POOLS)})")
    if uefi and not Path(OVMF_CODE).exists():
        raise RuntimeError(f"{OVMF_CODE} missing: run lab/install-deps.sh (package ovmf)")
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
    extras = {}
    for index, (extra_pool, mib) in enumerate(extra_disks):
        if extra_pool not in POOLS:
            raise ValueError(f"unknown pool {extra_pool!r} (one of {', '.join(POOLS)})")
        target = "vd" + "bcdefgh"[index]
        extra_vol = f"{name}-{target}.img"
        virsh(h.uri, "pool-refresh", extra_pool)
        virsh(h.uri, "vol-create-as", extra_pool, extra_vol, f"{mib}M", "--format", "raw")
        extra_path = virsh(h.uri, "vol-path", "--pool", extra_pool, extra_vol).strip()
        marker = f"FERRY-MARKER {name} {target}".encode().ljust(64, b".")
        on_root = _pool_file(extra_pool, h.name, extra_vol)
        with open(on_root, "r+b") as f:
            f.write(marker)
        extras[target] = {"pool": extra_pool, "path": extra_path, "marker": marker}
    xml = guest_xml(
        name,
        memory_mib,
        dirty_ws,
        dirty_rate,
        path,
        str(console),
        boot,
        vcpus,
        uefi=uefi,
        extra=tuple((t, e["path"]) for t, e in extras.items()),
    )
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
        "uefi": uefi,
        "nvram": nvram_path(name) if uefi else None,
        "nvram_on_host_fs": str(nvram_file(name, h.name)) if uefi else None,
        "extra_disks": extras,
    }


def guest_destroy(name: str) -> None:
    """Stop and undefine `name` on every lab host and delete its disks, NVRAM and console log."""
    st = read_state() or {}
    for h in hosts(st.get("host_count")):
        virsh(h.uri, "destroy", name, check=False, timeout=30)
        virsh(h.uri, "undefine", "--nvram", name, check=False, timeout=30)
        for pool in POOLS:
            virsh(h.uri, "vol-delete", "--pool", pool, f"{name}.qcow2", check=False, timeout=30)
        for directory in (host_local_dir(h.key), host_twin_dir(h.key)):
            (directory / f"{name}.qcow2").unlink(missing_ok=True)
            for extra in directory.glob(f"{name}-vd?[.-]*"):
                extra.unlink(missing_ok=True)
        nvram_file(name, h.name).unlink(missing_ok=True)
    (shared_pool_path() / f"{name}.qcow2").unlink(missing_ok=True)
    for extra in shared_pool_path().glob(f"{name}-vd?[.-]*"):
        extra.unlink(missing_ok=True)
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


def domain_state(name: str, host: str) -> tuple[str, str] | None:
    """(state, reason) as `virsh domstate --reason` words, e.g. ('shut off', 'crashed');
    None when `host` has no domain `name`."""
    r = run(["virsh", "-q", "-c", _host(host).uri, "domstate", "--reason", name], check=False)
    if r.returncode != 0:
        return None
    m = re.match(r"(.+?) \((.+)\)$", r.stdout.strip())
    return (m.group(1), m.group(2)) if m else (r.stdout.strip(), "")


def guest_list() -> dict:
    st = read_state() or {}
    return {
        h.name: virsh(h.uri, "list", "--all", "--name", check=False).split()
        for h in hosts(st.get("host_count"))
    }


# ---------------------------------------------------------------- guest agent and control


def _running_host(name: str, host: str | None):
    if host is not None:
        return _host(host)
    where = where_running(name)
    if len(where) != 1:
        raise RuntimeError(f"guest {name} runs on {where or 'no host'}: give host=")
    return _host(where[0])


def agent_command(name: str, command: dict, host: str | None = None, timeout: int = 10):
    """Send one QMP-style command to the guest's qemu-ga through libvirt; returns 'return'.

    `host` defaults to wherever the guest runs. Raises RuntimeError with libvirt's message
    when the agent does not answer (not connected yet, guest dead, timeout).
    """
    h = _running_host(name, host)
    out = run(
        [
            "virsh",
            "-q",
            "-c",
            h.uri,
            "qemu-agent-command",
            name,
            json.dumps(command),
            "--timeout",
            str(timeout),
        ],
        timeout=timeout + 20,
    ).stdout
    return json.loads(out)["return"]


def agent_ping(name: str, host: str | None = None, timeout: int = 5) -> float:
    """guest-ping through the agent; returns the round trip in seconds (virsh spawn included)."""
    t0 = time.monotonic()
    agent_command(name, {"execute": "guest-ping"}, host, timeout)
    return time.monotonic() - t0


def wait_agent(name: str, host: str | None = None, timeout: float = 60) -> float:
    """Wait until guest-ping answers; returns the seconds waited."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            agent_ping(name, host, timeout=3)
            return time.monotonic() - t0
        except RuntimeError as e:
            last = e
        time.sleep(0.25)
    raise TimeoutError(f"guest agent of {name} did not answer in {timeout}s: {last}")


def guest_exec(
    name: str,
    path: str,
    args: list[str] | None = None,
    host: str | None = None,
    timeout: float = 30,
) -> dict:
    """Run a program inside the guest through the agent (guest-exec); wait for it to end.

    Returns {'exitcode', 'stdout', 'stderr'} (text)."""
    h = _running_host(name, host)
    pid = agent_command(
        name,
        {
            "execute": "guest-exec",
            "arguments": {"path": path, "arg": list(args or []), "capture-output": True},
        },
        h.name,
    )["pid"]
    deadline = time.monotonic() + timeout
    while True:
        st = agent_command(
            name, {"execute": "guest-exec-status", "arguments": {"pid": pid}}, h.name
        )
        if st.get("exited"):
            out, err = (
                base64.b64decode(st.get(k, "")).decode(errors="replace")
                for k in ("out-data", "err-data")
            )
            return {"exitcode": st.get("exitcode"), "stdout": out, "stderr": err}
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} {args} in {name} still running after {timeout}s")
        time.sleep(0.1)


def set_dirty(name: str, ws_mb: int, rate_mb_s: int, host: str | None = None) -> dict:
    """Switch the running guest's dirtier to `ws_mb` MB at `rate_mb_s` MB/s, no reboot.

    The agent runs `dirtier set WS RATE`, which signals the dirtier and waits until it
    applied the change; returns {'ws_mb', 'rate_mb_s'} as the dirtier reported them."""
    if ws_mb < 0 or rate_mb_s < 0:
        raise ValueError("ws_mb and rate_mb_s must be >= 0")
    r = guest_exec(name, "/bin/dirtier", ["set", str(int(ws_mb)), str(int(rate_mb_s))], host)
    if r["exitcode"] != 0:
        raise RuntimeError(f"dirtier set in {name} failed ({r['exitcode']}): {r['stderr'].strip()}")
    ws, rate = r["stdout"].split()[:2]
    return {"ws_mb": int(ws), "rate_mb_s": int(rate)}


def panic(name: str, host: str | None = None, how: str = "nmi") -> str:
    """Make the running guest's kernel panic now; returns the host it ran on.

    how='nmi': the host injects an NMI (virsh inject-nmi); the guest has
    kernel.unknown_nmi_panic=1. how='sysrq': the agent runs `echo c >
    /proc/sysrq-trigger` in the guest. Either way the kernel panics, the pvpanic
    device tells QEMU, and libvirt applies on_crash=destroy: the domain ends 'shut off'
    with reason 'crashed' (VIR_DOMAIN_SHUTOFF_CRASHED) on that host."""
    h = _running_host(name, host)
    if how == "nmi":
        virsh(h.uri, "inject-nmi", name)
    elif how == "sysrq":
        agent_command(
            name,
            {
                "execute": "guest-exec",
                "arguments": {"path": "/bin/sh", "arg": ["-c", "echo c >/proc/sysrq-trigger"]},
            },
            h.name,
        )
    else:
        raise ValueError(f"how must be 'nmi' or 'sysrq', not {how!r}")
    return h.name


class QMP:
    """A session on the lab's second QMP monitor of a guest's QEMU on one host.

    Negotiated with out-of-band execution enabled, so that commands that allow it
    (migrate-recover, migrate-pause) still run when QEMU's main loop is stuck, e.g. on a
    post-copy destination waiting for a page that cannot arrive. Negotiation itself is
    in band: open the session while QEMU still answers (before cutting a link)."""

    def __init__(self, name: str, host: str, timeout: float = 10) -> None:
        self.where = f"QMP of {name} on {host}"
        path = host_qmp_dir(_host(host).key) / f"{name}.qmp"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
            self.file = self.sock.makefile("rwb")
            greeting = json.loads(self.file.readline())
            caps = greeting.get("QMP", {}).get("capabilities", [])
            args = {"enable": ["oob"]} if "oob" in caps else {}
            self.oob = bool(args)
            self._send({"execute": "qmp_capabilities", "arguments": args})
            self._reply()
        except OSError as e:
            self.close()
            raise RuntimeError(f"{self.where} ({path}): {e}") from e

    def _send(self, msg: dict) -> None:
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()

    def _reply(self) -> dict:
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError(f"{self.where} closed the connection")
            msg = json.loads(line)
            if "return" in msg or "error" in msg:
                return msg

    def command(self, command: dict, oob: bool = False) -> dict:
        """Run one command; returns QEMU's reply ({'return': ...} or {'error': ...})."""
        if oob:
            if not self.oob:
                raise RuntimeError(f"{self.where}: QEMU offers no out-of-band execution")
            command = {"exec-oob": command["execute"], "id": "ferry-lab"} | {
                k: v for k, v in command.items() if k != "execute"
            }
        try:
            self._send(command)
            return self._reply()
        except OSError as e:
            raise RuntimeError(f"{self.where}: {e}") from e

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.file = None

    def __enter__(self) -> QMP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def qmp(name: str, host: str, command: dict, timeout: float = 10) -> dict:
    """One command through a fresh QMP session (see QMP); returns QEMU's reply."""
    with QMP(name, host, timeout) as q:
        return q.command(command)


def migration_status(name: str, host: str, timeout: float = 10) -> str | None:
    """QEMU's own migration status on `host` (query-migrate): 'postcopy-paused', ...

    In band: on a post-copy destination whose main loop waits for a missing page this
    times out (RuntimeError)."""
    return qmp(name, host, {"execute": "query-migrate"}, timeout).get("return", {}).get("status")


def postcopy_recover_qemu(
    name: str,
    src: str,
    dst: str,
    dst_qmp: QMP | None = None,
    address: str | None = None,
    port: int = 49300,
) -> None:
    """Recover a post-copy migration paused on both sides, at QEMU level.

    libvirt 11.3.0's VIR_MIGRATE_POSTCOPY_RESUME crashes the destination libvirtd
    (qemuMigrationDstPrepareResume passes a NULL fd that qemuProcessIncomingDefNew
    dereferences), and libvirt refuses monitor passthrough on a domain with an incoming
    migration job, so the lab does what libvirt would: `migrate-recover` on the
    destination QEMU, then `migrate` with resume=true on the source QEMU. Both libvirtds
    then see QEMU's migration events and finish the job themselves ('unattended
    migration': the source domain stops and is undefined per the original flags, the
    destination runs). `address` is where the source reaches the destination (default:
    its migration-network address). The source must be 'postcopy-paused' (checked). The
    destination is asked out of band through `dst_qmp`, a QMP session opened while it
    still answered (once its main loop waits for a missing page, a new session cannot
    even be negotiated); without one, a fresh session is tried."""
    status = migration_status(name, src)
    if status != "postcopy-paused":
        raise RuntimeError(f"{name} on {src}: QEMU migration status is {status!r}")
    addr = address or _host(dst).mig_ip
    recover = {"execute": "migrate-recover", "arguments": {"uri": f"tcp:0.0.0.0:{port}"}}
    # The destination notices the broken stream on its own clock, sometimes seconds after
    # the source: until it is 'postcopy-paused' too, QEMU refuses migrate-recover.
    deadline = time.monotonic() + 30
    while True:
        if dst_qmp is not None:
            r = dst_qmp.command(recover, oob=True)
        else:
            with QMP(name, dst) as q:
                r = q.command(recover, oob=True)
        not_yet = "only be run when postcopy is paused" in str(r.get("error", ""))
        if not not_yet or time.monotonic() > deadline:
            break
        time.sleep(1)
    if "error" in r:
        raise RuntimeError(f"migrate-recover on {dst}: {r['error']}")
    r = qmp(
        name,
        src,
        {"execute": "migrate", "arguments": {"uri": f"tcp:{addr}:{port}", "resume": True}},
    )
    if "error" in r:
        raise RuntimeError(f"migrate resume on {src}: {r['error']}")


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

    Without `path`, looks at the shared pool, then every host's local and twin pools
    (newest heartbeat wins, e.g. after a non-shared-disk migration).
    """
    paths = (
        [Path(path)]
        if path
        else [shared_pool_path() / f"{name}.qcow2"]
        + [
            d(h.key) / f"{name}.qcow2"
            for h in hosts((read_state() or {}).get("host_count"))
            for d in (host_local_dir, host_twin_dir)
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
    "agent_command",
    "agent_ping",
    "boot_files",
    "domain_state",
    "guest_exec",
    "nvram_file",
    "nvram_path",
    "migration_status",
    "panic",
    "postcopy_recover_qemu",
    "QMP",
    "qmp",
    "qmp_socket",
    "set_dirty",
    "wait_agent",
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
