#!/usr/bin/env python3
"""labctl: bring Ferry's libvirt lab up and down (stdlib only, run as root).

    python3 lab/labctl.py up [--no-register] [--no-guest-build]
    python3 lab/labctl.py down [--purge]
    python3 lab/labctl.py status
    python3 lab/labctl.py env
    python3 lab/labctl.py guest start NAME [--host lab-a] [--memory 256] [--dirty-ws 0]
                                           [--dirty-rate 0] [--pool shared|local]
    python3 lab/labctl.py guest destroy NAME | guest heartbeat NAME | guest list
    python3 lab/labctl.py link down|up|show HOST [--net mgmt|migration|all]
    python3 lab/labctl.py daemon stop|start|restart|disconnect-clients HOST

Environment: LAB_DIR (default /var/lib/ferry-lab), LAB_CACHE (default
/var/cache/ferry-lab), LAB_HOSTS (2 or 3), LAB_ACCEL (tcg or kvm).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `lab` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import hostd, pki  # noqa: E402
from lab.common import (  # noqa: E402
    MIG_SUBNET,
    NETWORK_NAME,
    NS_PREFIX,
    SWITCH_IP,
    SWITCH_NS,
    Host,
    console_dir,
    current_lab_dir,
    host_count,
    hosts,
    lab_dir,
    lab_in_use,
    local_pool_path,
    op_lock,
    qmp_dir,
    read_state,
    run,
    set_current_lab_dir,
    shared_dir,
    shared_pool_path,
    state_path,
    twin_pool_path,
    write_state,
)

REPO = Path(__file__).resolve().parent.parent
REQUIRED_BINARIES = [
    "ip",
    "unshare",
    "mount",
    "openssl",
    "virsh",
    "/usr/sbin/libvirtd",
    "/usr/sbin/virtlockd",
    "virt-admin",
    "nsenter",
    "qemu-system-x86_64",
    "qemu-img",
    "gcc",
]
DRIVER_DIR = Path("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver")
LOCKD_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/libvirt/lock-driver/lockd.so")
NETS = ("mgmt", "migration")


def log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def preflight() -> str | None:
    """Why the lab cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, mounts, libvirtd)"
    missing = [b for b in REQUIRED_BINARIES if not shutil.which(b)]
    if missing:
        return f"missing programs {missing}: run lab/install-deps.sh"
    for drv in ("qemu", "storage", "network"):
        if not (DRIVER_DIR / f"libvirt_driver_{drv}.so").exists():
            return f"libvirt {drv} driver missing: run lab/install-deps.sh"
    if not LOCKD_PLUGIN.exists():
        return "libvirt's lockd plugin is missing: run lab/install-deps.sh"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "kernel has no overlayfs"
    return None


# ---------------------------------------------------------------- views


def env() -> dict:
    """URIs and paths of the lab, as JSON-able dict (same as `labctl.py env`)."""
    st = read_state() or {}
    hs = hosts(st.get("host_count"))
    p = pki.pki_dir()
    return {
        "up": st.get("status") == "up",
        "lab_dir": str(lab_dir()),
        "switch_ns": SWITCH_NS,
        "switch_ip": SWITCH_IP,
        "network": NETWORK_NAME,
        "shared_pool_path": str(shared_pool_path()),
        "local_pool_path": str(local_pool_path()),
        # same UUID and path on every host, a different directory behind each:
        # look-alike shared storage that is not shared
        "twin_pool_path": str(twin_pool_path()),
        "console_dir": str(console_dir()),
        "measurements": str(lab_dir() / "measurements.jsonl"),
        # the shared pool's directory is listed in every host's qemu.conf
        # `shared_filesystems`: libvirt treats it as shared storage, so live
        # migrations with disks there need no VIR_MIGRATE_UNSAFE
        "shared_pool_needs_unsafe": False,
        "shared_filesystems": [str(shared_pool_path())],
        "lock_manager": "lockd",
        "migration_network": f"{MIG_SUBNET}.0/24",
        "pki": {
            "ca_cert": str(p / "ca-cert.pem"),
            "client_pkipath": str(p / "client"),
        },
        "hosts": {
            h.name: {
                "uri": h.uri,  # from the root namespace
                "tcp_uri": h.tcp_uri,  # peer-to-peer migration target (inside the lab)
                "tls_uri": h.tls_uri,
                # reach a host over TLS from the switch namespace with Ferry's client cert:
                # ip netns exec ferrylab-sw ... <tls_uri_with_pki>
                "tls_uri_with_pki": f"{h.tls_uri}?pkipath={p / 'client'}",
                "ip": h.ip,
                "hostname": h.name,
                "uuid": h.uuid,
                "netns": h.ns,
                "socket": h.socket,
                "local_dir": str(Path(h.dir) / "local"),
                "twin_dir": str(Path(h.dir) / "twin"),
                "pid": st.get("pids", {}).get(h.name),
                "virtlockd_pid": st.get("virtlockd_pids", {}).get(h.name),
                # data stream over the migration network: VIR_MIGRATE_PARAM_URI, and with
                # TLS VIR_MIGRATE_PARAM_TLS_DESTINATION = hostname (the certs name only
                # the hostname and the management ip)
                "migration_ip": h.mig_ip,
                "migration_uri": h.migration_uri,
                "admin_uri": h.admin_uri,  # virt-admin -c <admin_uri> client-list libvirtd
                "switch_ports": hostd.switch_ports(h),  # what link_down() switches off
            }
            for h in hs
        },
    }


def status() -> dict:
    """{'up': bool, 'problems': [...], 'hosts': {...}} after checking every daemon."""
    st = read_state()
    if not st:
        return {"up": False, "problems": ["lab is down (no state file)"], "hosts": {}}
    problems = []
    for h in hosts(st.get("host_count")):
        p = hostd.check_host(h, st.get("pids", {}).get(h.name))
        if p:
            problems.append(p)
    if st.get("status") != "up":
        problems.append(f"state is {st.get('status')!r}")
    e = env()
    return {
        "up": not problems,
        "problems": problems,
        "hosts": e["hosts"],
        "owner": st.get("owner"),
        "in_use_by_tests": lab_in_use(),
        "startup_seconds": st.get("startup_seconds"),
    }


def is_up() -> bool:
    return status()["up"]


# ---------------------------------------------------------------- up / down


def up(register: bool = True, build_guest: bool = True, owner: str = "cli") -> dict:
    """Bring the lab up (idempotent: an already healthy lab is only verified); returns env()."""
    problem = preflight()
    if problem:
        raise RuntimeError(problem)
    with op_lock():  # a concurrent up or down waits for this one
        return _up(register, build_guest, owner)


def _other_lab() -> str | None:
    """LAB_DIR of a different lab that still owns ferrylab-* namespaces, if any."""
    cur = current_lab_dir()
    if cur and cur != str(lab_dir()) and any(ns.startswith(NS_PREFIX) for ns in hostd.netns_list()):
        return cur
    return None


def _up(register: bool, build_guest: bool, owner: str) -> dict:
    t0 = time.monotonic()
    other = _other_lab()
    if other:
        raise RuntimeError(
            f"another lab (LAB_DIR={other}) owns the {NS_PREFIX}* namespaces: "
            f"take it down first (LAB_DIR={other} python3 lab/labctl.py down)"
        )
    st = status()
    if st["up"]:
        log(f"already up ({time.monotonic() - t0:.2f}s check)")
        return env()
    if read_state() or any(ns.startswith(NS_PREFIX) for ns in hostd.netns_list()):
        # broken anyway (a daemon died or an earlier up was interrupted)
        log("cleaning a partial or stale lab first: " + "; ".join(st["problems"]))
        _down()
    n = host_count()
    hs = hosts(n)
    state = {
        "status": "starting",
        "owner": owner,  # "pytest" labs are taken down by the last test session
        "host_count": n,
        "lab_dir": str(lab_dir()),
        "namespaces": [SWITCH_NS] + [h.ns for h in hs],
        "pids": {},
        "started_at": time.time(),
    }
    write_state(state)  # before creating anything, so down() can always clean
    set_current_lab_dir(str(lab_dir()))
    try:
        if build_guest:
            from lab.guest import build

            log("guest image: " + build.build_guest()["initrd"])
        certs = pki.ensure_pki(hs)
        for d in (shared_pool_path(), console_dir(), shared_dir() / "boot"):
            d.mkdir(parents=True, exist_ok=True)
        hostd.create_switch()
        for h in hs:
            hostd.create_host_net(h)
            hostd.prepare_host_dirs(h, hs)
        for h in hs:
            state["pids"][h.name] = hostd.spawn_libvirtd(h)
            write_state(state)
        for h in hs:
            hostd.wait_ready(h, state["pids"][h.name])
            state.setdefault("virtlockd_pids", {})[h.name] = hostd.virtlockd_pid(h)
            hostd.define_resources(h)
        state.update(status="up", startup_seconds=round(time.monotonic() - t0, 2), pki=certs)
        write_state(state)
    except BaseException:
        log("up failed; tearing down what was made")
        try:
            _down()
        except Exception as e:  # report the original failure, not the cleanup's
            log(f"cleanup after failed up also failed: {e}")
        raise
    log(f"up in {state['startup_seconds']}s: " + ", ".join(f"{h.name}={h.ip}" for h in hs))
    if register:
        register_in_ferry(hs)
    return env()


def _kill(pids: set[int], grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = {p for p in pids if hostd.pid_alive(p)}
        for p in live:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while live and time.monotonic() < deadline:
            live = {p for p in live if hostd.pid_alive(p)}
            time.sleep(0.1)
        for p in pids:  # reap our own children, if they are ours
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        if not live:
            return


def down(purge: bool = False, force: bool = False) -> None:
    """Stop every process in the lab's namespaces, delete them, remove runtime files.

    Refuses while a test session is using the lab, unless force.
    """
    with op_lock():
        other = _other_lab()
        if other and not force:
            raise RuntimeError(f"the {NS_PREFIX}* namespaces belong to the lab at LAB_DIR={other}")
        if lab_in_use() and not force:
            raise RuntimeError(
                "the lab is in use by a running test session (use --force to take it down anyway)"
            )
        _down(purge)


def _down(purge: bool = False) -> None:
    st = read_state() or {}
    namespaces = set(st.get("namespaces", []))
    namespaces |= {ns for ns in hostd.netns_list() if ns.startswith(NS_PREFIX)}
    pids = {int(p) for p in st.get("pids", {}).values() if p}
    pids |= {int(p) for p in st.get("virtlockd_pids", {}).values() if p}
    for ns in namespaces:
        out = run(["ip", "netns", "pids", ns], check=False).stdout
        pids |= {int(x) for x in out.split()}
    # only kill recorded PIDs that are still libvirtd (PIDs get reused)
    pids = {p for p in pids if _is_lab_process(p, namespaces)}
    if pids:
        log(f"stopping {len(pids)} process(es)")
        _kill(pids)
    for ns in sorted(namespaces):
        if ns in hostd.netns_list():
            run(["ip", "netns", "del", ns], check=False)
    _unmount_under(lab_dir())
    base = lab_dir()
    for p in (
        base / "hosts",
        shared_pool_path(),
        console_dir(),
        shared_dir() / "boot",
        local_pool_path(),
        twin_pool_path(),
        qmp_dir(),
    ):
        shutil.rmtree(p, ignore_errors=True)
    if purge:
        shutil.rmtree(base / "pki", ignore_errors=True)
    state_path().unlink(missing_ok=True)
    if current_lab_dir() in (None, str(lab_dir())) or not any(
        ns.startswith(NS_PREFIX) for ns in hostd.netns_list()
    ):
        set_current_lab_dir(None)
    log("down")


def _is_lab_process(pid: int, namespaces: set[str]) -> bool:
    """True for a process inside one of our namespaces, or a recorded libvirtd."""
    try:
        net = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return False
    for ns in namespaces:
        try:
            if os.stat(f"/run/netns/{ns}").st_ino == net:
                return True
        except OSError:
            continue
    try:  # a recorded libvirtd or virtlockd whose namespace is already gone
        cmd = Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False
    return "/usr/sbin/libvirtd" in cmd or "/usr/sbin/virtlockd" in cmd


def _unmount_under(base: Path) -> None:
    """Unmount anything under LAB_DIR in the root namespace (normally nothing)."""
    prefix = str(base.resolve()) + "/"
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if (mp + "/").startswith(prefix):
            targets.append(mp)
    for mp in sorted(targets, key=len, reverse=True):
        run(["umount", "-l", mp], check=False)


# ---------------------------------------------------------------- daemons


def _lab_host(name: str) -> Host:
    st = read_state() or {}
    for h in hosts(st.get("host_count")):
        if name in (h.name, h.key):
            return h
    raise RuntimeError(f"no lab host named {name!r}")


def stop_daemon(name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Stop one host's libvirtd by its recorded PID (SIGTERM: a clean stop, as `systemctl
    stop libvirtd`; SIGKILL: the daemon dies). Returns the PID.

    Guests on that host keep running (QEMU does not depend on libvirtd) and so do the
    host's virtlockd, its mounts and its network; `start_daemon` brings libvirtd back and
    it reconnects to them. While stopped, status() reports the host as not healthy."""
    with op_lock():
        h = _lab_host(name)
        st = read_state() or {}
        pid = (st.get("pids") or {}).get(h.name)
        if not pid or not hostd.pid_alive(pid):
            raise RuntimeError(f"libvirtd of {h.name} is not running")
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while hostd.pid_alive(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.05)
        return pid


def start_daemon(name: str) -> int:
    """Start one host's libvirtd again with the same config; returns its PID (the running
    one's if it was not stopped).

    It joins the host's existing namespaces (those of its virtlockd: same mounts, /run,
    /var, hostname and network), so running guests, locks and defined resources are as
    before. Only when virtlockd is gone too is the host's start script run afresh."""
    with op_lock():
        h = _lab_host(name)
        st = read_state() or {}
        old = (st.get("pids") or {}).get(h.name)
        if old and hostd.pid_alive(old):
            return old
        holder = hostd.virtlockd_pid(h)
        pid = hostd.respawn_libvirtd(h, holder) if holder else hostd.spawn_libvirtd(h)
        st.setdefault("pids", {})[h.name] = pid
        write_state(st)
        hostd.wait_ready(h, pid)
        st.setdefault("virtlockd_pids", {})[h.name] = hostd.virtlockd_pid(h)
        write_state(st)
        return pid


def restart_daemon(name: str, sig: int = signal.SIGTERM) -> dict:
    """stop_daemon + start_daemon; returns {'old_pid', 'new_pid', 'seconds'}."""
    t0 = time.monotonic()
    old = stop_daemon(name, sig)
    new = start_daemon(name)
    return {"old_pid": old, "new_pid": new, "seconds": round(time.monotonic() - t0, 2)}


def daemon_kill(name: str) -> int:
    """SIGKILL one host's libvirtd (fault injection: a hypervisor daemon dies); returns its PID."""
    return stop_daemon(name, signal.SIGKILL)


def daemon_start(name: str) -> int:
    """Start one host's libvirtd again after `daemon_kill`; returns the new PID."""
    return start_daemon(name)


def daemon_clients(name: str) -> list[dict]:
    """Clients of one host's libvirtd, from virt-admin: [{'id', 'transport', 'since'}]."""
    h = _lab_host(name)
    out = run(["virt-admin", "-q", "-c", h.admin_uri, "client-list", "libvirtd"]).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit():
            rows.append(
                {"id": int(parts[0]), "transport": parts[1], "since": (parts[2:] or [""])[0]}
            )
    return rows


def disconnect_clients(name: str, transport: str | None = "unix") -> list[int]:
    """Drop client connections to one host's libvirtd (virt-admin client-disconnect).

    By default only unix-socket clients, i.e. Ferry's and the tests' connections (they
    reach the lab through the unix sockets), not the peer libvirtds' TCP/TLS connections;
    transport=None drops every client. Returns the ids disconnected. The clients see
    their connection closed (VIR_ERR_SYSTEM_ERROR / 'client socket is closed'); the daemon
    and its guests are untouched."""
    dropped = []
    h = _lab_host(name)
    for c in daemon_clients(name):
        if transport is None or c["transport"] == transport:
            r = run(
                [
                    "virt-admin",
                    "-q",
                    "-c",
                    h.admin_uri,
                    "client-disconnect",
                    "libvirtd",
                    str(c["id"]),
                ],
                check=False,
            )
            if r.returncode == 0:
                dropped.append(c["id"])
    return dropped


# ---------------------------------------------------------------- links


def _nets(net: str) -> tuple[str, ...]:
    if net == "all":
        return NETS
    if net not in NETS:
        raise ValueError(f"net must be one of {', '.join(NETS)} or all, not {net!r}")
    return (net,)


def _set_links(name: str, net: str, state: str) -> dict:
    h = _lab_host(name)
    ports = hostd.switch_ports(h)
    for n in _nets(net):
        run(["ip", "-n", SWITCH_NS, "link", "set", ports[n], state])
    return link_state(name)


def link_down(name: str, net: str = "all") -> dict:
    """Cut a host off the management and/or migration network (the switch-side veth goes
    down, inside the lab namespaces only). Ferry's unix-socket connections from the root
    namespace are not affected. Returns link_state()."""
    return _set_links(name, net, "down")


def link_up(name: str, net: str = "all") -> dict:
    """Undo link_down(); returns link_state()."""
    return _set_links(name, net, "up")


def link_state(name: str) -> dict:
    """{'mgmt': 'up'|'down', 'migration': ...} as the switch side sees it."""
    h = _lab_host(name)
    out = {}
    for n, port in hostd.switch_ports(h).items():
        info = json.loads(run(["ip", "-j", "-n", SWITCH_NS, "link", "show", "dev", port]).stdout)
        out[n] = "up" if "UP" in info[0].get("flags", []) else "down"
    return out


def link_counters(name: str) -> dict:
    """Byte and packet counters of the host's interfaces, read inside its namespace:
    {'mgmt': {'iface': 'eth0', 'rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets'},
     'migration': {'iface': 'eth1', ...}}."""
    h = _lab_host(name)
    out = {}
    for n, iface in hostd.HOST_IFACES.items():
        info = json.loads(run(["ip", "-j", "-s", "-n", h.ns, "link", "show", "dev", iface]).stdout)
        stats = info[0]["stats64"]
        out[n] = {
            "iface": iface,
            "rx_bytes": stats["rx"]["bytes"],
            "tx_bytes": stats["tx"]["bytes"],
            "rx_packets": stats["rx"]["packets"],
            "tx_packets": stats["tx"]["packets"],
        }
    return out


# ---------------------------------------------------------------- Ferry


def register_in_ferry(hs) -> None:
    """host_add + sync_inventory through Ferry's manage.py; failures only warn."""
    manage, python = REPO / "manage.py", REPO / ".venv" / "bin" / "python"
    if not (manage.exists() and python.exists()):
        log("Ferry not found (manage.py/.venv missing): hosts not registered")
        return
    # A host's URI never carries `socket=` (Ferry refuses it: a URI is code); the sockets
    # are named in the server setting FERRY_LIBVIRT_SOCKETS, which a Ferry serving the lab
    # needs too (printed below).
    sockets = ",".join(f"{h.name}={h.socket}" for h in hs)
    env = {**os.environ, "FERRY_LIBVIRT_SOCKETS": sockets}
    log(f"ferry: serve the lab with FERRY_LIBVIRT_SOCKETS={sockets}")
    for h in hs:
        uri = f"qemu+unix://{h.name}/system"
        for cmd in (["host_add", uri, "--name", h.name], ["sync_inventory", "--host", h.name]):
            try:
                r = run(
                    [str(python), str(manage), *cmd],
                    check=False,
                    timeout=180,
                    cwd=str(REPO),
                    env=env,
                )
                ok, msg = r.returncode == 0, (r.stderr or r.stdout).strip()
            except Exception as e:  # a hung or broken command must not fail `up`
                ok, msg = False, str(e)
            if ok:
                log(f"ferry: {' '.join(cmd[:1])} {h.name} ok")
            elif cmd[0] == "host_add" and "already registered" in msg:
                # A lab brought up again: the host is known, only sync it.
                log(f"ferry: {h.name} already registered")
            else:
                log(
                    f"WARNING: ferry {' '.join(cmd)} failed: {msg.splitlines()[-1] if msg else '?'}"
                )
                break


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labctl.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("--no-register", action="store_true", help="do not register hosts in Ferry")
    u.add_argument("--no-guest-build", action="store_true", help="skip building the guest image")
    d = sub.add_parser("down")
    d.add_argument("--purge", action="store_true", help="also delete the lab CA and certificates")
    d.add_argument("--force", action="store_true", help="even while a test session uses the lab")
    sub.add_parser("status")
    sub.add_parser("env")
    sub.add_parser("build-guest")
    g = sub.add_parser("guest")
    gs = g.add_subparsers(dest="gcmd", required=True)
    s = gs.add_parser("start")
    s.add_argument("name")
    s.add_argument("--host", default="lab-a")
    s.add_argument("--memory", type=int, default=256, help="MiB")
    s.add_argument("--dirty-ws", type=int, default=0, help="MB")
    s.add_argument("--dirty-rate", type=int, default=0, help="MB/s")
    s.add_argument("--pool", choices=["shared", "local", "twin"], default="shared")
    s.add_argument("--disk", type=int, default=64, help="MiB")
    s.add_argument("--uefi", action="store_true", help="OVMF firmware, q35, per-domain NVRAM")
    s.add_argument("--wait", action="store_true", help="wait for the first heartbeat")
    for name in ("destroy", "heartbeat", "ping"):
        gs.add_parser(name).add_argument("name")
    sd = gs.add_parser("set-dirty", help="change the running guest's dirtier (guest agent)")
    sd.add_argument("name")
    sd.add_argument("ws", type=int, help="MB")
    sd.add_argument("rate", type=int, help="MB/s")
    pn = gs.add_parser("panic", help="make the guest kernel panic now")
    pn.add_argument("name")
    pn.add_argument("--how", choices=["nmi", "sysrq"], default="nmi")
    gs.add_parser("list")
    lk = sub.add_parser("link", help="cut or restore a host's links (inside the lab only)")
    lk.add_argument("action", choices=["down", "up", "show", "counters"])
    lk.add_argument("host")
    lk.add_argument("--net", choices=["mgmt", "migration", "all"], default="all")
    dm = sub.add_parser("daemon", help="stop/start/restart a host's libvirtd, drop its clients")
    dm.add_argument("action", choices=["stop", "start", "restart", "disconnect-clients", "clients"])
    dm.add_argument("host")
    a = ap.parse_args(argv)

    if a.cmd == "up":
        up(register=not a.no_register, build_guest=not a.no_guest_build)
    elif a.cmd == "down":
        down(purge=a.purge, force=a.force)
    elif a.cmd == "status":
        st = status()
        print(json.dumps(st, indent=1))
        return 0 if st["up"] else 1
    elif a.cmd == "env":
        print(json.dumps(env(), indent=1))
    elif a.cmd == "build-guest":
        from lab.guest import build

        print(json.dumps(build.build_guest(), indent=1))
    elif a.cmd == "guest":
        from lab.guest import vm

        if a.gcmd == "start":
            info = vm.guest_start(
                a.name,
                host=a.host,
                memory_mib=a.memory,
                dirty_ws=a.dirty_ws,
                dirty_rate=a.dirty_rate,
                pool=a.pool,
                disk_mib=a.disk,
                uefi=a.uefi,
            )
            if a.wait:
                info["first_heartbeat"] = vm.wait_heartbeat(a.name)
            print(json.dumps(info, indent=1))
        elif a.gcmd == "destroy":
            vm.guest_destroy(a.name)
        elif a.gcmd == "heartbeat":
            print(
                json.dumps(
                    {
                        "console": vm.last_console_heartbeat(a.name),
                        "disk": vm.disk_heartbeat(a.name),
                        "problems": vm.console_problems(a.name),
                        "running_on": vm.where_running(a.name),
                    },
                    indent=1,
                )
            )
        elif a.gcmd == "list":
            print(json.dumps(vm.guest_list(), indent=1))
        elif a.gcmd == "ping":
            print(json.dumps({"seconds": round(vm.agent_ping(a.name), 4)}))
        elif a.gcmd == "set-dirty":
            print(json.dumps(vm.set_dirty(a.name, a.ws, a.rate)))
        elif a.gcmd == "panic":
            print(json.dumps({"host": vm.panic(a.name, how=a.how)}))
    elif a.cmd == "link":
        if a.action == "counters":
            print(json.dumps(link_counters(a.host), indent=1))
        else:
            fn = {"down": link_down, "up": link_up}.get(a.action)
            print(json.dumps(fn(a.host, a.net) if fn else link_state(a.host)))
    elif a.cmd == "daemon":
        if a.action == "stop":
            print(json.dumps({"stopped_pid": stop_daemon(a.host)}))
        elif a.action == "start":
            print(json.dumps({"pid": start_daemon(a.host)}))
        elif a.action == "restart":
            print(json.dumps(restart_daemon(a.host)))
        elif a.action == "clients":
            print(json.dumps(daemon_clients(a.host), indent=1))
        else:
            print(json.dumps({"disconnected": disconnect_clients(a.host)}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, ValueError, TimeoutError) as e:
        print(f"[lab] ERROR: {e}", file=sys.stderr)
        sys.exit(1)
