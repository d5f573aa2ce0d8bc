"""Network namespaces and per-host libvirtd daemons of the lab.

Topology: a switch namespace with bridge br0 (10.77.0.254/24); per host a
namespace whose eth0 is a veth into the switch, enslaved to a local bridge
`labbr` that carries the host address and the guests' taps (libvirt network
`labnet`, forward mode bridge). Nothing is created in the root namespace:
veth pairs are made directly inside the namespaces.

Each libvirtd runs as `setsid ip netns exec <ns> unshare --mount --uts
--propagation private sh <inner>`; the inner script overlays /etc, /run and
/var (per-host upper dirs), puts the real LAB_DIR back on top, bind-mounts the
host's own /etc/libvirt and local pool dir, sets the hostname and execs
libvirtd, so the PID we record is libvirtd's. All those mounts live and die
with the private mount namespace: nothing is mounted in the root namespace.
"""

from __future__ import annotations

import grp
import pwd
import shlex
import socket
import subprocess
import time
import uuid
from pathlib import Path

from lab import pki
from lab.common import (
    HOST_BRIDGE,
    NETWORK_NAME,
    SWITCH_IP,
    SWITCH_NS,
    Host,
    lab_dir,
    local_pool_path,
    run,
    shared_pool_path,
    virsh,
)

MIGRATION_PORTS = (49152, 49215)


# ---------------------------------------------------------------- network


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create_switch() -> None:
    run(["ip", "netns", "add", SWITCH_NS])
    ns = ["ip", "-n", SWITCH_NS]
    run(ns + ["link", "set", "lo", "up"])
    run(ns + ["link", "add", "br0", "type", "bridge"])
    run(ns + ["addr", "add", f"{SWITCH_IP}/24", "dev", "br0"])
    run(ns + ["link", "set", "br0", "up"])


def create_host_net(h: Host) -> None:
    run(["ip", "netns", "add", h.ns])
    sw = ["ip", "-n", SWITCH_NS]
    hn = ["ip", "-n", h.ns]
    port = f"sw-{h.key}"
    run(sw + ["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.ns])
    run(sw + ["link", "set", port, "master", "br0", "up"])
    run(hn + ["link", "set", "lo", "up"])
    run(hn + ["link", "add", HOST_BRIDGE, "type", "bridge"])
    run(hn + ["link", "set", "eth0", "master", HOST_BRIDGE, "up"])
    run(hn + ["addr", "add", f"{h.ip}/24", "dev", HOST_BRIDGE])
    run(hn + ["link", "set", HOST_BRIDGE, "up"])


# ---------------------------------------------------------------- config


def _libvirtd_conf(h: Host) -> str:
    return f"""# Ferry lab: libvirtd for {h.name} (generated; lab only, no auth on TCP)
listen_tls = 1
listen_tcp = 1
listen_addr = "{h.ip}"
auth_tcp = "none"
auth_tls = "none"
auth_unix_ro = "none"
auth_unix_rw = "none"
unix_sock_dir = "{Path(h.socket).parent}"
unix_sock_rw_perms = "0700"
host_uuid = "{h.uuid}"
tls_no_verify_certificate = 0
log_outputs = "3:file:{h.dir}/libvirtd.log"
"""


def _qemu_conf(h: Host) -> str:
    lo, hi = MIGRATION_PORTS
    return f"""# Ferry lab: QEMU driver for {h.name} (generated)
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_address = "{h.ip}"
migration_host = "{h.ip}"
migration_port_min = {lo}
migration_port_max = {hi}
migrate_tls_x509_cert_dir = "{h.dir}/pki-qemu"
migrate_tls_x509_verify = 1
"""


def _passwd_group(etc: Path) -> None:
    """Private passwd/group with libvirt-qemu: libvirtd looks it up before reading qemu.conf."""
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        passwd += "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n"
    for g, gid in (("libvirt-qemu", 64055), ("kvm", 64056), ("libvirt", 64057)):
        try:
            grp.getgrnam(g)
        except KeyError:
            group += f"{g}:x:{gid}:\n"
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)


def prepare_host_dirs(h: Host, all_hosts: list[Host]) -> None:
    """Write config, certs and the inner start script for one host."""
    hd = Path(h.dir)
    for sub in (
        "ovl/etc/upper",
        "ovl/etc/work",
        "ovl/run/upper",
        "ovl/run/work",
        "ovl/var/upper",
        "ovl/var/work",
        "sock",
        "local",
        "pki-qemu",
        "etc-libvirt/qemu/networks",
        "etc-libvirt/storage",
    ):
        (hd / sub).mkdir(parents=True, exist_ok=True)
    etc = hd / "ovl/etc/upper"
    (etc / "libvirt").mkdir(exist_ok=True)  # mount point when the host has no /etc/libvirt
    (etc / "hostname").write_text(h.name + "\n")
    names = "".join(f"{o.ip}\t{o.name}\n" for o in all_hosts)
    (etc / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n{h.ip}\t{h.name}\n{names}{SWITCH_IP}\tlab-switch\n"
    )
    _passwd_group(etc)
    pki.install_host_pki(h, etc, hd / "pki-qemu")
    conf = hd / "etc-libvirt"
    (conf / "libvirtd.conf").write_text(_libvirtd_conf(h))
    (conf / "qemu.conf").write_text(_qemu_conf(h))
    (conf / "libvirt.conf").write_text("# Ferry lab: no client defaults\n")
    (conf / "network.conf").write_text("# Ferry lab: bridge networks only, no firewall rules\n")
    q = shlex.quote
    o = hd / "ovl"
    real = q(str(lab_dir()))
    (hd / "inner.sh").write_text(
        f"""#!/bin/sh
# Runs inside namespace {h.ns} with a private mount namespace (see lab/hostd.py).
set -e
exec 3<{real}
# order matters: /var last, so the upper dirs under LAB_DIR are still plain paths
mount -t overlay ferrylab-etc -o lowerdir=/etc,upperdir={q(str(o))}/etc/upper,workdir={q(str(o))}/etc/work /etc
mount -t overlay ferrylab-run -o lowerdir=/run,upperdir={q(str(o))}/run/upper,workdir={q(str(o))}/run/work /run
mount -t overlay ferrylab-var -o lowerdir=/var,upperdir={q(str(o))}/var/upper,workdir={q(str(o))}/var/work /var
# put the real LAB_DIR back (sockets, shared pool, consoles must be the same files
# as in the root namespace); --no-canonicalize keeps mount from re-resolving the
# fd path through the overlay
mount --no-canonicalize --bind /proc/self/fd/3 {real}
exec 3<&-
mount --bind {q(str(hd / "local"))} {q(str(local_pool_path()))}
mount --bind {q(str(conf))} /etc/libvirt
hostname {q(h.name)}
exec /usr/sbin/libvirtd --listen
"""
    )
    local_pool_path().mkdir(parents=True, exist_ok=True)
    shared_pool_path().mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- daemons


def spawn_libvirtd(h: Host) -> int:
    hd = Path(h.dir)
    out = open(hd / "libvirtd.out", "ab")
    p = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            h.ns,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            str(hd / "inner.sh"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    out.close()
    return p.pid  # ip, unshare and sh all exec: this is libvirtd's PID


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def socket_answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_ready(h: Host, pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise RuntimeError(f"libvirtd of {h.name} exited during start-up:\n{tail(h)}")
        if socket_answers(h.socket):
            r = run(["virsh", "-c", h.uri, "hostname"], check=False, timeout=30)
            if r.returncode == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"libvirtd of {h.name} not ready after {timeout}s:\n{tail(h)}")


def tail(h: Host, n: int = 20) -> str:
    lines = []
    for name in ("libvirtd.out", "libvirtd.log"):
        p = Path(h.dir) / name
        if p.exists():
            lines += [
                f"[{name}] {line}" for line in p.read_text(errors="replace").splitlines()[-n:]
            ]
    return "\n".join(lines) or "(no daemon output)"


def define_resources(h: Host) -> None:
    """Network labnet and pools shared/local, through libvirt's own API (virsh)."""
    hd = Path(h.dir)
    net = hd / "labnet.xml"
    net.write_text(
        f"<network><name>{NETWORK_NAME}</name><forward mode='bridge'/>"
        f"<bridge name='{HOST_BRIDGE}'/></network>\n"
    )
    cmds = [f"net-define {net}", f"net-start {NETWORK_NAME}", f"net-autostart {NETWORK_NAME}"]
    for pool, path in (("shared", shared_pool_path()), ("local", local_pool_path())):
        x = hd / f"pool-{pool}.xml"
        # The shared pool gets the same UUID on every host, as an administrator defines a
        # cluster file system's pool identically everywhere: that is how Ferry's inventory
        # recognises one pool seen by several hosts (same UUID and path). `local` keeps a
        # UUID per host: same path, different directory behind it.
        pool_uuid = (
            f"<uuid>{uuid.uuid5(uuid.NAMESPACE_URL, f'ferry-lab:{shared_pool_path()}')}</uuid>"
            if pool == "shared"
            else ""
        )
        x.write_text(
            f"<pool type='dir'><name>{pool}</name>{pool_uuid}"
            f"<target><path>{path}</path></target></pool>\n"
        )
        cmds += [f"pool-define {x}", f"pool-start {pool}", f"pool-autostart {pool}"]
    virsh(h.uri, " ; ".join(cmds))


def check_host(h: Host, pid: int | None) -> str | None:
    """None when the host is healthy, else what is wrong."""
    if not pid_alive(pid):
        return f"{h.name}: libvirtd (pid {pid}) is not running"
    if not socket_answers(h.socket):
        return f"{h.name}: socket {h.socket} does not answer"
    return None
