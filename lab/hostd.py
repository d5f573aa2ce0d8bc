"""Network namespaces and per-host libvirtd daemons of the lab.

Topology: a switch namespace with bridge br0 (10.77.0.254/24, management)
and bridge br1 (10.78.0.254/24, migration); per host a namespace whose eth0
is a veth into br0, enslaved to a local bridge `labbr` that carries the host
address and the guests' taps (libvirt network `labnet`, forward mode bridge),
and whose eth1 is a veth into br1 carrying the host's migration address.
Nothing is created in the root namespace: veth pairs are made directly inside
the namespaces. The switch-side ends (sw-X on br0, swm-X on br1) are what
link_down()/link_up() switch off and on.

Each libvirtd runs as `setsid ip netns exec <ns> unshare --mount --uts
--propagation private sh <inner>`; the inner script overlays /etc, /run and
/var (per-host upper dirs), puts the real LAB_DIR back on top, bind-mounts the
host's own /etc/libvirt, local and twin pool dirs, sets the hostname, starts
the host's virtlockd (daemon, pid file /run/virtlockd.pid in the private /run)
and execs libvirtd, so the PID we record is libvirtd's. All those mounts live
and die with the private mount namespace: nothing is mounted in the root
namespace. virtlockd keeps that mount namespace alive while libvirtd is
stopped, so a restarted libvirtd joins it with nsenter (same mounts, same
/run, same config) instead of building a new one.
"""

from __future__ import annotations

import grp
import os
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
    HOST_KEYS,
    MIG_SWITCH_IP,
    NETWORK_NAME,
    SWITCH_IP,
    SWITCH_NS,
    Host,
    lab_dir,
    local_pool_path,
    qmp_dir,
    run,
    shared_pool_path,
    twin_pool_path,
    virsh,
)

MIGRATION_PORTS = (49152, 49215)
MGMT_BRIDGE, MIG_BRIDGE = "br0", "br1"  # in the switch namespace
VIRTLOCKD_PIDFILE = "/run/virtlockd.pid"  # inside each host's private /run


def switch_ports(h: Host) -> dict[str, str]:
    """The switch-side veth of each of the host's links: {'mgmt': 'sw-a', 'migration': 'swm-a'}."""
    return {"mgmt": f"sw-{h.key}", "migration": f"swm-{h.key}"}


HOST_IFACES = {"mgmt": "eth0", "migration": "eth1"}  # the host-side ends
# A cut link makes no RST: TCP retransmits until net.ipv4.tcp_retries2 runs out, ~15 min
# with Linux's default 15. Each lab host gives up after ~6 s (4 retries from a 200 ms
# RTO), so QEMU and libvirt notice a cut in seconds; a cut shorter than that heals by
# itself. LAB_TCP_RETRIES2 overrides it (15 = Linux's default).
TCP_RETRIES2 = int(os.environ.get("LAB_TCP_RETRIES2", "4"))


# ---------------------------------------------------------------- network


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create_switch() -> None:
    run(["ip", "netns", "add", SWITCH_NS])
    ns = ["ip", "-n", SWITCH_NS]
    run(ns + ["link", "set", "lo", "up"])
    for i, (br, ip) in enumerate(((MGMT_BRIDGE, SWITCH_IP), (MIG_BRIDGE, MIG_SWITCH_IP))):
        run(ns + ["link", "add", br, "address", f"02:{0x77 + i:02x}:00:00:fe:01", "type", "bridge"])
        run(ns + ["addr", "add", f"{ip}/24", "dev", br])
        run(ns + ["link", "set", br, "up"])


def create_host_net(h: Host) -> None:
    run(["ip", "netns", "add", h.ns])
    sw = ["ip", "-n", SWITCH_NS]
    hn = ["ip", "-n", h.ns]
    ports = switch_ports(h)
    for net, br in (("mgmt", MGMT_BRIDGE), ("migration", MIG_BRIDGE)):
        peer = HOST_IFACES[net]
        run(sw + ["link", "add", ports[net], "type", "veth", "peer", "name", peer, "netns", h.ns])
        run(sw + ["link", "set", ports[net], "master", br, "up"])
    run(hn + ["link", "set", "lo", "up"])
    # A bridge without an address of its own takes the lowest MAC of its ports: with a
    # random eth0 MAC above fe:54:..., a guest's tap (fe:54:00:...) would lend labbr its
    # MAC and take it away again when the guest leaves, and the peers' ARP entries would
    # point nowhere for seconds. Fixed, locally administered MACs avoid that.
    n = HOST_KEYS.index(h.key) + 1
    run(hn + ["link", "add", HOST_BRIDGE, "address", f"02:77:00:00:{n:02x}:01", "type", "bridge"])
    run(hn + ["link", "set", "eth0", "address", f"02:77:00:00:{n:02x}:00"])
    run(hn + ["link", "set", "eth1", "address", f"02:78:00:00:{n:02x}:00"])
    run(hn + ["link", "set", "eth0", "master", HOST_BRIDGE, "up"])
    run(hn + ["addr", "add", f"{h.ip}/24", "dev", HOST_BRIDGE])
    run(hn + ["link", "set", HOST_BRIDGE, "up"])
    run(hn + ["addr", "add", f"{h.mig_ip}/24", "dev", "eth1"])
    run(hn + ["link", "set", "eth1", "up"])
    run(["ip", "netns", "exec", h.ns, "sysctl", "-qw", f"net.ipv4.tcp_retries2={TCP_RETRIES2}"])


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
# QEMU listens for incoming migrations on every address of the host (management
# 10.77.0.x and migration network 10.78.0.x); without VIR_MIGRATE_PARAM_URI the
# source is told the management address (migration_host)
migration_address = "0.0.0.0"
migration_host = "{h.ip}"
migration_port_min = {lo}
migration_port_max = {hi}
# certificates name lab-x and 10.77.0.x only: a TLS migration over 10.78.0.x needs
# VIR_MIGRATE_PARAM_TLS_DESTINATION
migrate_tls_x509_cert_dir = "{h.dir}/pki-qemu"
migrate_tls_x509_verify = 1
# disk leases through this host's virtlockd (qemu-lockd.conf)
lock_manager = "lockd"
# the shared pool is one directory seen by every host: declared shared, so a live
# migration of a guest with its disk there needs no VIR_MIGRATE_UNSAFE
shared_filesystems = [ "{shared_pool_path()}" ]
"""


def _qemu_lockd_conf(h: Host) -> str:
    return f"""# Ferry lab: disk leases of {h.name} (generated)
# every disk gets a lease automatically; the lock is an fcntl lock that the host's
# virtlockd takes on the disk file itself (all lab hosts share one kernel, so two
# hosts' locks on the shared pool's files conflict as they would on NFS)
auto_disk_leases = 1
require_lease_for_disks = 1
"""


def _virtlockd_conf(h: Host) -> str:
    return f"""# Ferry lab: virtlockd of {h.name} (generated)
log_outputs = "3:file:{h.dir}/virtlockd.log"
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
        "twin",
        "qmp",
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
    (conf / "qemu-lockd.conf").write_text(_qemu_lockd_conf(h))
    (conf / "virtlockd.conf").write_text(_virtlockd_conf(h))
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
mount --bind {q(str(hd / "twin"))} {q(str(twin_pool_path()))}
mount --bind {q(str(hd / "qmp"))} {q(str(qmp_dir()))}
mount --bind {q(str(conf))} /etc/libvirt
hostname {q(h.name)}
# the lock daemon first (it forks into the background once its socket
# /run/libvirt/virtlockd-sock listens); it also keeps this mount namespace alive
/usr/sbin/virtlockd --daemon --config /etc/libvirt/virtlockd.conf --pid-file {VIRTLOCKD_PIDFILE}
exec /usr/sbin/libvirtd --listen
"""
    )
    for p in (local_pool_path(), shared_pool_path(), twin_pool_path(), qmp_dir()):
        p.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- daemons


def _spawn(h: Host, argv: list[str]) -> int:
    """Start a host daemon detached (own session), output appended to libvirtd.out."""
    out = open(Path(h.dir) / "libvirtd.out", "ab")
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    out.close()
    return p.pid


def spawn_libvirtd(h: Host) -> int:
    inner = str(Path(h.dir) / "inner.sh")
    unshare = ["unshare", "--mount", "--uts", "--propagation", "private", "sh", inner]
    # ip, unshare and sh all exec: this is libvirtd's PID
    return _spawn(h, ["ip", "netns", "exec", h.ns, *unshare])


def virtlockd_pid(h: Host) -> int | None:
    """PID of the host's virtlockd (from its pid file in the host's /run), if it runs."""
    try:
        pid = int((Path(h.dir) / "ovl/run/upper" / VIRTLOCKD_PIDFILE[len("/run/") :]).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) and _same_netns(pid, h.ns) else None


def _same_netns(pid: int, ns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return False


def respawn_libvirtd(h: Host, holder: int) -> int:
    """Start libvirtd again inside the mount/UTS/net namespaces `holder` (virtlockd) lives in.

    Same mounts, same /run and /var overlays, same config: what a `systemctl restart
    libvirtd` does on a real host. nsenter execs libvirtd, so the PID is libvirtd's."""
    argv = ["nsenter", "-t", str(holder), "-m", "-u", "-n", "/usr/sbin/libvirtd", "--listen"]
    return _spawn(h, argv)


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
    for pool, path in pool_paths().items():
        x = hd / f"pool-{pool}.xml"
        x.write_text(
            f"<pool type='dir'><name>{pool}</name><uuid>{pool_uuid(pool, h)}</uuid>"
            f"<target><path>{path}</path></target></pool>\n"
        )
        cmds += [f"pool-define {x}", f"pool-start {pool}", f"pool-autostart {pool}"]
    virsh(h.uri, " ; ".join(cmds))


def pool_paths() -> dict[str, Path]:
    return {"shared": shared_pool_path(), "local": local_pool_path(), "twin": twin_pool_path()}


def pool_uuid(pool: str, h: Host) -> str:
    """The pool's UUID on host `h`.

    `shared` has one UUID on every host, as an administrator defines a cluster file
    system's pool identically everywhere: that is how Ferry's inventory recognises one pool
    seen by several hosts (same UUID and path). `twin` copies that look on purpose (same
    UUID, same path) while each host has its own directory behind it: look-alike shared
    storage that is not shared. `local` has the same path but a UUID per host."""
    path = pool_paths()[pool]
    key = f"ferry-lab:{path}" if pool in ("shared", "twin") else f"ferry-lab:{path}:{h.key}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def check_host(h: Host, pid: int | None) -> str | None:
    """None when the host is healthy, else what is wrong."""
    if not pid_alive(pid):
        return f"{h.name}: libvirtd (pid {pid}) is not running"
    if not socket_answers(h.socket):
        return f"{h.name}: socket {h.socket} does not answer"
    if virtlockd_pid(h) is None:
        return f"{h.name}: virtlockd is not running"
    return None
