"""What the two libvirt sessions share: their connections, domain lookups and states, the
checks both run before a move, and the lookups of the URI peers use.

Why these choices (both sessions):
- Connections come from this process's cache (inventory.libvirt_client.CONNECTIONS): a
  TLS handshake per host is a good part of a move's start on real hosts.
- A libvirt event loop runs in a daemon thread (ensure_event_loop) so keepalives detect
  dead peers and job events arrive.
"""

import logging

import libvirt
import libvirt_qemu
from defusedxml.ElementTree import fromstring
from django.conf import settings

from inventory.libvirt_client import (
    CONNECTIONS,
    HostUnreachable,
    ensure_event_loop,
    open_connection,
)
from migrations_app.execution import errors, safety
from migrations_app.execution.drivers.base import Context, ReadError, Session
from migrations_app.migration_network import peer_address

logger = logging.getLogger("ferry.execution.libvirt")

STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",  # blocked on I/O is still a running guest
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def _reason_names(prefix: str) -> dict[int, str]:
    """{reason code: name} for libvirt's state reasons VIR_DOMAIN_<prefix>_*."""
    out = {}
    for name in dir(libvirt):
        if name.startswith(f"VIR_DOMAIN_{prefix}_") and not name.endswith("_LAST"):
            out[getattr(libvirt, name)] = name[len(f"VIR_DOMAIN_{prefix}_") :].lower()
    return out


REASONS = {
    libvirt.VIR_DOMAIN_RUNNING: _reason_names("RUNNING"),
    libvirt.VIR_DOMAIN_BLOCKED: _reason_names("BLOCKED"),
    libvirt.VIR_DOMAIN_PAUSED: _reason_names("PAUSED"),
    libvirt.VIR_DOMAIN_SHUTDOWN: _reason_names("SHUTDOWN"),
    libvirt.VIR_DOMAIN_SHUTOFF: _reason_names("SHUTOFF"),
    libvirt.VIR_DOMAIN_CRASHED: _reason_names("CRASHED"),
    libvirt.VIR_DOMAIN_PMSUSPENDED: _reason_names("PMSUSPENDED"),
}
# jobStats errors that mean "this domain has no job" (or no longer exists); any other
# error says nothing about the job (Nova's get_job_info makes the same distinction).
NO_JOB_ERRORS = frozenset({libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID})
AGENT_CHANNEL = "org.qemu.guest_agent.0"


def state_and_reason(dom) -> tuple[str | None, str]:
    """(state name, reason name) of a domain; (None, "") for no domain."""
    if dom is None:
        return None, ""
    try:
        state, reason = dom.state()
    except libvirt.libvirtError as exc:
        # Found a moment ago, gone now: a failed incoming migration's domain is removed
        # from the destination while Ferry looks (seen in the lab). Absent, not an error.
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None, ""
        raise
    return STATE_NAMES.get(state, "other"), REASONS.get(state, {}).get(reason, str(reason))


def migration_job_of(dom) -> bool:
    """Whether the domain's running job is an outgoing migration (not a backup, a dump or
    someone's other job). Raises ReadError when libvirt cannot tell."""
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in NO_JOB_ERRORS:
            return False
        raise ReadError(exc.get_error_message()) from None
    return bool(
        stats
        and stats.get("type", 0) != libvirt.VIR_DOMAIN_JOB_NONE
        and stats.get("operation") == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
    )


def side_of(conn, uuid: str, *, source: bool, error: str = "") -> safety.Side:
    """One host's view of the VM for the decision table (unreachable when `conn` is None
    or a read fails)."""
    if conn is None:
        return safety.Side(reachable=False, error=error or "no connection")
    try:
        dom = domain_or_none(conn, uuid)
        if dom is None:
            return safety.Side()
        state, reason = state_and_reason(dom)
        persistent = bool(dom.isPersistent())
        return safety.Side(
            state=state,
            reason=reason,
            persistent=persistent,
            autostart=bool(dom.autostart()) if persistent else False,
            migration_job=source and state in ("running", "paused") and migration_job_of(dom),
        )
    except (libvirt.libvirtError, ReadError) as exc:
        if (
            isinstance(exc, libvirt.libvirtError)
            and exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
        ):
            # Gone between the lookup and the read (an incoming copy torn down by a failed
            # migration): absent, not unreachable.
            return safety.Side()
        message = exc.get_error_message() if hasattr(exc, "get_error_message") else str(exc)
        return safety.Side(reachable=False, error=message)


def agent_ping(dom, timeout: int = 5) -> str:
    """'' when the guest agent answers guest-ping, else why not."""
    try:
        libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', timeout, 0)
    except libvirt.libvirtError as exc:
        return exc.get_error_message() or "no answer"
    return ""


def has_agent_channel(domain_xml: str) -> bool:
    """Whether the domain defines the qemu-guest-agent's virtio-serial channel."""
    root = fromstring(domain_xml)
    return any(
        target.get("name") == AGENT_CHANNEL for target in root.findall("devices/channel/target")
    )


def cpu_time_ns(dom) -> int:
    """The guest's vCPU time so far (advances while the guest runs)."""
    return int(dom.info()[4])


def connect_timeout() -> float:
    return float(settings.LIBVIRT_CONNECT_TIMEOUT)


def p2p_uri(host_address: str, client_uri: str, tls: bool) -> str:
    """The URI the source libvirtd uses to reach the destination for a p2p migration.

    The destination's migration address, else the host name of its URI when that URI
    reaches it over the network (a unix-socket URI names a socket, not a host)."""
    address = peer_address(client_uri, host_address)
    if not address:
        raise errors.ExecutionError(
            errors.CONNECTION_LOST,
            "The destination has no migration address: set one on the host "
            "(its URI is local, so other hosts cannot reach it through it).",
        )
    return f"qemu+{'tls' if tls else 'tcp'}://{address}/system"


def domain_or_none(conn, uuid: str):
    """The domain with this UUID on a host, or None when the host has none."""
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def state_of(dom) -> str | None:
    """The domain's state name ("running", "paused", …), None for no domain."""
    return state_and_reason(dom)[0]


def finding(check_id: str, severity: str, message: str, **evidence) -> dict:
    """A session's live check result, in the shape the plan's checks store."""
    return {"check_id": check_id, "severity": severity, "message": message, "evidence": evidence}


class LibvirtSession(Session):
    """One attempt on real libvirt hosts: connections and what both kinds of move need."""

    driver = "libvirt"
    # Whether the session needs the destination host too (a storage move stays on one).
    two_hosts = True

    def __init__(self, ctx: Context):
        ensure_event_loop()
        self.ctx = ctx
        self.src = None
        self.dst = None
        self.dst_error = ""
        self._callbacks: list[tuple] = []
        self._connect()

    def _connect(self) -> None:
        # Both hosts at once, each from this process's idle connections when it has one:
        # opening (a TLS handshake on real hosts) is the larger part of a session's start.
        uris = [self.ctx.source_uri] + ([self.ctx.destination_uri] if self.two_hosts else [])
        opened = CONNECTIONS.take_many(uris, connect_timeout())
        src = opened[0]
        if isinstance(src, HostUnreachable):
            for other in opened[1:]:
                if not isinstance(other, Exception):
                    CONNECTIONS.give_back(self.ctx.destination_uri, other)
            raise errors.ExecutionError(
                errors.CONNECTION_LOST,
                f"Source host {self.ctx.source_host}: {src}",
                getattr(src, "detail", "") or str(src),
            )
        self.src = src
        if not self.two_hosts:
            self.dst = self.src
            return
        dst = opened[1]
        if isinstance(dst, HostUnreachable):
            self.dst, self.dst_error = None, getattr(dst, "detail", "") or str(dst)
        else:
            self.dst = dst

    def reconnect(self) -> bool:
        """Replace connections that died (keepalive, a restarted daemon, a dropped client)
        with fresh ones; True when the source answers again."""
        for attr, uri in (("src", self.ctx.source_uri), ("dst", self.ctx.destination_uri)):
            conn = getattr(self, attr)
            if attr == "dst" and not self.two_hosts:
                continue
            try:
                alive = conn is not None and conn.isAlive() == 1
            except libvirt.libvirtError:
                alive = False
            if alive:
                continue
            self._callbacks = [(c, cb) for c, cb in self._callbacks if c is not conn]
            try:
                fresh = open_connection(uri, connect_timeout())
            except HostUnreachable as exc:
                if attr == "dst":
                    self.dst, self.dst_error = None, str(exc)
                    continue
                logger.info(
                    "attempt %s: reconnect to the source failed: %s", self.ctx.attempt_id, exc
                )
                return False
            setattr(self, attr, fresh)
            if attr == "dst":
                self.dst_error = ""
        if not self.two_hosts:
            self.dst = self.src
        return True

    def _require_dst(self):
        if self.dst is None:
            raise errors.ExecutionError(
                errors.CONNECTION_LOST,
                f"Destination host {self.ctx.destination_host} cannot be reached.",
                self.dst_error,
            )
        return self.dst

    def _src_dom(self):
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            raise errors.ExecutionError(
                errors.AMBIGUOUS, f"VM {self.ctx.vm_name} is not defined on its source host."
            )
        return dom

    def domain_xml(self) -> str:
        """The VM's live domain XML on its source (the runner's live CPU check reads it)."""
        return self._src_dom().XMLDesc(0)

    def _vm_running(self) -> tuple[object, dict]:
        """The source domain and the live.vm_running finding."""
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        state = state_of(dom)
        if state != "running":
            return dom, finding(
                "live.vm_running",
                "blocker",
                f"VM {self.ctx.vm_name} is not running on {self.ctx.source_host} "
                f"(state: {state or 'absent'}).",
                state=state,
            )
        return dom, finding("live.vm_running", "ok", "VM is running on the source.", state=state)

    def guest_ping(self, timeout: int) -> str:
        """guest-ping through the connection of the host the VM runs on after the move
        (the destination; a storage move stays on its source)."""
        conn = self.dst if self.two_hosts else self.src
        where = self.ctx.destination_host if self.two_hosts else self.ctx.source_host
        dom = domain_or_none(conn, self.ctx.vm_uuid) if conn is not None else None
        if dom is None:
            return f"VM is absent on {where}."
        return self.guard.call("guest-ping", agent_ping, dom, timeout, timeout=timeout + 5)

    def _space_findings(self, conn) -> list[dict]:
        """Room in each pool the copied disks go to, read live on `conn`'s host."""
        out = []
        if conn is None:
            return out
        need: dict[str, int] = {}
        for disk in self.ctx.disks:
            if disk.get("dest_pool"):
                need[disk["dest_pool"]] = need.get(disk["dest_pool"], 0) + int(
                    disk.get("capacity") or 0
                )
        for pool_name, size in need.items():
            try:
                pool = conn.storagePoolLookupByName(pool_name)
                pool.refresh(0)
                available = pool.info()[3]
            except libvirt.libvirtError as exc:
                out.append(
                    finding(
                        "live.destination_space",
                        "blocker",
                        f"Pool {pool_name} is not usable on the destination.",
                        libvirt=exc.get_error_message(),
                    )
                )
                continue
            severity = "ok" if available >= size else "blocker"
            found = finding(
                "live.destination_space",
                severity,
                f"Pool {pool_name}: {available} bytes free, {size} needed.",
                available=available,
                needed=size,
            )
            if severity == "blocker":
                found["error_class"] = errors.NO_SPACE
            out.append(found)
        return out

    def _pool_path(self, conn, pool_name: str) -> str:
        return fromstring(conn.storagePoolLookupByName(pool_name).XMLDesc(0)).findtext(
            "target/path"
        )

    def new_disk_pools(self) -> dict:
        return {d["target"]: d["dest_pool"] for d in self.ctx.disks if d.get("dest_pool")}

    def _deregister_callbacks(self) -> None:
        for conn, cb in self._callbacks:
            try:
                conn.domainEventDeregisterAny(cb)
            except libvirt.libvirtError:
                pass
        self._callbacks = []

    def _give_back(self) -> None:
        # The connections go back to this process's idle set for the next session (no
        # callback of ours is left on them).
        CONNECTIONS.give_back(self.ctx.source_uri, self.src)
        if self.dst is not None and self.dst is not self.src:
            CONNECTIONS.give_back(self.ctx.destination_uri, self.dst)
        self.src = self.dst = None

    def close(self) -> None:
        self._deregister_callbacks()
        self._give_back()
