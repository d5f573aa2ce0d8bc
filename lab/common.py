"""Shared facts of the lab: where things live, which hosts exist, the state file.

Stdlib only: labctl runs with the system python3, before any venv exists.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

NS_PREFIX = "ferrylab-"
SWITCH_NS = NS_PREFIX + "sw"
SUBNET = "10.77.0"
SWITCH_IP = SUBNET + ".254"
MIG_SUBNET = "10.78.0"  # the migration network: a second bridge, eth1 in every host
MIG_SWITCH_IP = MIG_SUBNET + ".254"
HOST_KEYS = ["a", "b", "c"]
HOST_BRIDGE = "labbr"  # bridge inside each host namespace, behind the libvirt network
NETWORK_NAME = "labnet"
SOCKET_MAX = 100  # sun_path is 108 bytes; keep a margin


def lab_dir() -> Path:
    return Path(os.environ.get("LAB_DIR", "/var/lib/ferry-lab"))


def host_count() -> int:
    n = int(os.environ.get("LAB_HOSTS", "2"))
    if n not in (2, 3):
        raise ValueError(f"LAB_HOSTS must be 2 or 3, not {n}")
    return n


def accel() -> str:
    a = os.environ.get("LAB_ACCEL", "tcg").lower()
    if a not in ("tcg", "kvm"):
        raise ValueError(f"LAB_ACCEL must be tcg or kvm, not {a}")
    return a


@dataclass
class Host:
    """One lab hypervisor: a network namespace running its own libvirtd."""

    key: str  # a, b, c
    name: str  # lab-a: hostname and Ferry name
    ip: str
    ns: str
    uuid: str
    dir: str  # per-host directory under LAB_DIR/hosts
    socket: str  # libvirtd's read-write unix socket
    mig_ip: str = ""  # address on the migration network (eth1)

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def admin_socket(self) -> str:
        return str(Path(self.socket).parent / "libvirt-admin-sock")

    @property
    def admin_uri(self) -> str:
        """virt-admin's URI for this host's libvirtd (client-list, client-disconnect)."""
        return f"libvirtd:///system?socket={self.admin_socket}"

    @property
    def migration_uri(self) -> str:
        """VIR_MIGRATE_PARAM_URI for QEMU's data stream over the migration network."""
        return f"tcp://{self.mig_ip}"

    @property
    def tcp_uri(self) -> str:
        return f"qemu+tcp://{self.ip}/system"

    @property
    def tls_uri(self) -> str:
        return f"qemu+tls://{self.ip}/system"

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(
            uri=self.uri,
            tcp_uri=self.tcp_uri,
            tls_uri=self.tls_uri,
            admin_uri=self.admin_uri,
            migration_uri=self.migration_uri,
        )
        return d


def hosts(n: int | None = None, base: Path | None = None) -> list[Host]:
    base = base or lab_dir()
    out = []
    for i, key in enumerate(HOST_KEYS[: n or host_count()]):
        hdir = base / "hosts" / key
        sock = hdir / "sock" / "libvirt-sock"
        longest = sock.parent / "libvirt-admin-sock"
        if len(str(longest)) >= SOCKET_MAX:
            raise ValueError(
                f"LAB_DIR is too long: socket path {longest} must stay under {SOCKET_MAX} chars"
            )
        out.append(
            Host(
                key=key,
                name=f"lab-{key}",
                ip=f"{SUBNET}.{i + 1}",
                ns=NS_PREFIX + key,
                # stable across up/down, distinct per host and per lab dir;
                # libvirt refuses migration between hosts with equal UUIDs
                uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ferry-lab:{base}:{key}")),
                dir=str(hdir),
                socket=str(sock),
                mig_ip=f"{MIG_SUBNET}.{i + 1}",
            )
        )
    return out


def shared_dir() -> Path:
    return lab_dir() / "shared"


def shared_pool_path() -> Path:
    return shared_dir() / "images"


def console_dir() -> Path:
    return shared_dir() / "console"


def local_pool_path() -> Path:
    """Same path on every host; each host namespace bind-mounts its own dir here."""
    return lab_dir() / "local"


def host_local_dir(host_key: str) -> Path:
    """Where a host's local pool really lives, as seen from the root namespace."""
    return lab_dir() / "hosts" / host_key / "local"


def twin_pool_path() -> Path:
    """Pool `twin`: same path and UUID on every host, a different directory behind each."""
    return lab_dir() / "twin"


def host_twin_dir(host_key: str) -> Path:
    """Where a host's `twin` pool really lives, as seen from the root namespace."""
    return lab_dir() / "hosts" / host_key / "twin"


def qmp_dir() -> Path:
    """Where each host's QEMUs put the lab's extra QMP sockets (same path on every host,
    a per-host directory behind it; a bind mount, not the /run overlay, so that the
    sockets can be reached from the root namespace)."""
    return lab_dir() / "qmp"


def host_qmp_dir(host_key: str) -> Path:
    return lab_dir() / "hosts" / host_key / "qmp"


def state_path() -> Path:
    return lab_dir() / "state.json"


def read_state() -> dict | None:
    try:
        return json.loads(state_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_state(state: dict) -> None:
    p = state_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, p)


def run(
    cmd: list[str], check: bool = True, timeout: float = 60, **kw
) -> subprocess.CompletedProcess:
    """Run a command, capturing output; a failure raises with stderr in the message."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}"
        )
    return p


def virsh(uri: str, *args: str, check: bool = True, timeout: float = 60) -> str:
    return run(["virsh", "-q", "-c", uri, *args], check=check, timeout=timeout).stdout


# ---------------------------------------------------------------- locking
#
# Namespace names are global, so there is one lab per machine, whatever
# LAB_DIR says. Coordination therefore lives in one fixed place, RUN_DIR:
#   lock     exclusive, held while up() or down() changes anything;
#   users    shared, held by every test session using the lab; down() refuses
#            (unless forced) while anybody holds it;
#   current  the LAB_DIR of the lab that owns the ferrylab-* namespaces, so a
#            second lab (another LAB_DIR) refuses to start or to tear it down.

RUN_DIR = Path(os.environ.get("LAB_RUN_DIR", "/run/ferry-lab"))


def _lock_file(name: str):
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    return open(RUN_DIR / name, "a+")


@contextmanager
def op_lock():
    f = _lock_file("lock")
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        f.close()


def use_lab():
    """Mark this process as a user of the lab until the returned file is closed."""
    f = _lock_file("users")
    fcntl.flock(f, fcntl.LOCK_SH)
    return f


def lab_in_use() -> bool:
    """True while some session holds the users lock."""
    f = _lock_file("users")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        f.close()


def current_lab_dir() -> str | None:
    """LAB_DIR of the lab that owns the namespaces, if one is (or was last) up."""
    try:
        return (RUN_DIR / "current").read_text().strip() or None
    except FileNotFoundError:
        return None


def set_current_lab_dir(value: str | None) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if value is None:
        (RUN_DIR / "current").unlink(missing_ok=True)
    else:
        (RUN_DIR / "current").write_text(value + "\n")
