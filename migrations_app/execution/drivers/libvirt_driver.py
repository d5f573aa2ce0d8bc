"""libvirt driver: real hosts, peer-to-peer live migration and block copy.

Why these choices:
- PEER2PEER: the source libvirtd drives the whole migration, so a worker that dies after
  the call does not abort it (the reconciler re-attaches instead).
- No UNDEFINE_SOURCE: libvirt would remove the source definition at switchover, before
  Ferry has verified that the guest survived; cleanup removes it after verify.
- UNSAFE only when Ferry's inventory says the disks are on a shared directory pool that
  libvirt cannot recognise as shared (the choice is recorded in the attempt's evidence).
- The migrate call blocks, so it runs in a thread; the runner samples jobStats meanwhile
  from its own thread on the same (thread-safe) connection.
- A libvirt event loop runs in a daemon thread so keepalives detect dead peers and the
  JOB_COMPLETED event delivers the final stats (after post-copy it is the only source).
"""

import logging
import os
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - only serialises XML we parsed safely

import libvirt
from defusedxml.ElementTree import fromstring
from django.conf import settings

from inventory.libvirt_client import HostUnreachable, open_connection
from migrations_app.execution import errors
from migrations_app.execution.drivers.base import Context, Location, Session

logger = logging.getLogger("ferry.execution.libvirt")

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",  # blocked on I/O is still a running guest
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}

_event_loop_lock = threading.Lock()
_event_loop_started = False


def ensure_event_loop() -> None:
    """Start libvirt's default event loop once per process (before connections open)."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class ConnectionCache:
    """Idle libvirt connections of this process, per URI, reused by the next session.

    A worker opens two connections per attempt; on real hosts each is a TLS handshake and
    an authentication, a good part of the time before the migrate call. A connection goes
    back here when its session closes and is handed out again only if libvirt still sees
    it alive and it answers one cheap call (a restarted daemon or a dead peer, which the
    keepalive detects, is closed and replaced by a fresh open). Connections idle longer
    than IDLE_SECONDS are closed; at most MAX_IDLE are kept per URI. The test driver is
    never cached (each open of a test URI may be meant to be fresh).
    """

    IDLE_SECONDS = 120.0
    MAX_IDLE = 2

    def __init__(self):
        self._idle: dict[str, list[tuple]] = {}
        self._lock = threading.Lock()

    def _pop(self, uri: str):
        now = time.monotonic()
        stale = []
        found = None
        with self._lock:
            entries = self._idle.get(uri, [])
            while entries:
                conn, since = entries.pop()
                if now - since > self.IDLE_SECONDS:
                    stale.append(conn)
                    continue
                found = conn
                break
        for conn in stale:
            _close_quietly(conn)
        return found

    def take(self, uri: str, timeout: float):
        """A live connection to `uri`: an idle one of this process, else a new one."""
        while True:
            conn = self._pop(uri)
            if conn is None:
                return open_connection(uri, timeout)
            try:
                if conn.isAlive() == 1:
                    conn.getLibVersion()
                    return conn
            except libvirt.libvirtError:
                pass
            _close_quietly(conn)

    def take_many(self, uris: list[str], timeout: float) -> list:
        """`take` for several URIs at once (in threads); a failure is returned, not raised."""
        out: list = [None] * len(uris)

        def one(index: int, uri: str) -> None:
            try:
                out[index] = self.take(uri, timeout)
            except HostUnreachable as exc:
                out[index] = exc

        threads = [
            threading.Thread(target=one, args=(i, u), name=f"libvirt-take {u}", daemon=True)
            for i, u in enumerate(uris[1:], start=1)
        ]
        for thread in threads:
            thread.start()
        one(0, uris[0])
        for thread in threads:
            thread.join()
        return out

    def give_back(self, uri: str, conn) -> None:
        """Keep `conn` for the next session (or close it when it is not worth keeping)."""
        if conn is None:
            return
        if uri.startswith("test:"):
            _close_quietly(conn)
            return
        with self._lock:
            entries = self._idle.setdefault(uri, [])
            if len(entries) < self.MAX_IDLE:
                entries.append((conn, time.monotonic()))
                return
        _close_quietly(conn)

    def clear(self) -> None:
        """Close every idle connection (tests; a worker that stops)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for entries in idle.values():
            for conn, _since in entries:
                _close_quietly(conn)


def _close_quietly(conn) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


CONNECTIONS = ConnectionCache()


def _timeout() -> float:
    return float(getattr(settings, "LIBVIRT_CONNECT_TIMEOUT", 10))


def p2p_uri(host_address: str, client_uri: str, tls: bool) -> str:
    """The URI the source libvirtd uses to reach the destination for a p2p migration."""
    from urllib.parse import urlsplit

    address = host_address or urlsplit(client_uri).hostname or ""
    if not address:
        raise errors.ExecutionError(
            errors.CONNECTION_LOST,
            "The destination has no migration address: set one on the host "
            "(its URI is local, so other hosts cannot reach it through it).",
        )
    return f"qemu+{'tls' if tls else 'tcp'}://{address}/system"


def _domain_or_none(conn, uuid: str):
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _state(dom) -> str | None:
    if dom is None:
        return None
    return _STATE_NAMES.get(dom.state()[0], "other")


class LibvirtSession(Session):
    """One attempt on real libvirt hosts."""

    driver = "libvirt"

    def __init__(self, ctx: Context):
        ensure_event_loop()
        self.ctx = ctx
        self.src = None
        self.dst = None
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None
        self._returned = False
        self._attached = False
        self._completed_event: dict | None = None
        self._callbacks: list[tuple] = []
        self.flags = 0
        self.params: dict = {}
        self.dest_uri = ""
        self.postcopy_started = False
        # storage-only: target -> new path
        self.copies: dict[str, str] = {}
        self.pivoted: set[str] = set()
        self._connect()

    # ------------------------------------------------------------------ connections

    def _connect(self) -> None:
        # Both hosts at once, each from this process's idle connections when it has one:
        # opening (a TLS handshake on real hosts) is the larger part of a session's start.
        uris = [self.ctx.source_uri]
        if self.ctx.mode != "storage_only":
            uris.append(self.ctx.destination_uri)
        opened = CONNECTIONS.take_many(uris, _timeout())
        src = opened[0]
        if isinstance(src, HostUnreachable):
            for other in opened[1:]:
                if not isinstance(other, Exception):
                    CONNECTIONS.give_back(self.ctx.destination_uri, other)
            raise errors.ExecutionError(
                errors.CONNECTION_LOST, f"Source host {self.ctx.source_host}: {src}", str(src)
            )
        self.src = src
        if self.ctx.mode == "storage_only":
            self.dst = self.src
            return
        dst = opened[1]
        if isinstance(dst, HostUnreachable):
            self.dst = None
            self._dst_error = str(dst)
        else:
            self.dst = dst

    def _require_dst(self):
        if self.dst is None:
            raise errors.ExecutionError(
                errors.CONNECTION_LOST,
                f"Destination host {self.ctx.destination_host} cannot be reached.",
                getattr(self, "_dst_error", ""),
            )
        return self.dst

    def _src_dom(self):
        dom = _domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            raise errors.ExecutionError(
                errors.AMBIGUOUS, f"VM {self.ctx.vm_name} is not defined on its source host."
            )
        return dom

    # ------------------------------------------------------------------ preflight

    def preflight(self) -> list[dict]:
        findings = []

        def add(check_id, severity, message, **evidence):
            findings.append(
                {
                    "check_id": check_id,
                    "severity": severity,
                    "message": message,
                    "evidence": evidence,
                }
            )

        dom = _domain_or_none(self.src, self.ctx.vm_uuid)
        state = _state(dom)
        if state != "running":
            add(
                "live.vm_running",
                "blocker",
                f"VM {self.ctx.vm_name} is not running on {self.ctx.source_host} (state: {state or 'absent'}).",
                state=state,
            )
            return findings
        add("live.vm_running", "ok", "VM is running on the source.", state=state)
        if self.ctx.mode == "storage_only":
            findings.extend(self._space_findings())
            return findings
        if self.dst is None:
            add(
                "live.destination_reachable",
                "blocker",
                f"Destination {self.ctx.destination_host} does not answer.",
                error=getattr(self, "_dst_error", ""),
            )
            return findings
        add("live.destination_reachable", "ok", "Destination libvirt answers.")
        there = _domain_or_none(self.dst, self.ctx.vm_uuid)
        if there is not None:
            add(
                "live.not_on_destination",
                "blocker",
                f"A domain with this VM's UUID already exists on {self.ctx.destination_host}.",
                state=_state(there),
            )
        findings.append(self._cpu_finding(dom))
        findings.extend(self._space_findings())
        return findings

    def cpu_facts(self) -> tuple[str, str | None, str]:
        """(live domain XML, guest arch, virt type) for libvirt's CPU comparison."""
        xml = self._src_dom().XMLDesc(0)
        root = fromstring(xml)
        os_type = root.find("os/type")
        arch = os_type.get("arch") if os_type is not None else None
        return xml, arch, root.get("type") or "kvm"

    def _cpu_finding(self, dom) -> dict:
        """compareHypervisorCPU of the guest's live CPU on the destination."""
        xml = dom.XMLDesc(0)
        root = fromstring(xml)
        cpu = root.find("cpu")
        virttype = root.get("type") or "kvm"
        os_type = root.find("os/type")
        arch = os_type.get("arch") if os_type is not None else None
        machine = os_type.get("machine") if os_type is not None else None
        if (
            cpu is None
            or cpu.get("mode") in ("host-passthrough", "maximum")
            or cpu.find("model") is None
        ):
            return {
                "check_id": "live.cpu_compatible",
                "severity": "info" if cpu is None else "warning",
                "message": "The guest CPU has no named model to compare (host-passthrough or default).",
                "evidence": {"mode": cpu.get("mode") if cpu is not None else None},
            }
        cpu_xml = ET.tostring(cpu, encoding="unicode")
        try:
            result = self.dst.compareHypervisorCPU(None, arch, machine, virttype, cpu_xml, 0)
        except libvirt.libvirtError as exc:
            return {
                "check_id": "live.cpu_compatible",
                "severity": "warning",
                "message": "The destination could not compare the guest CPU.",
                "evidence": {"libvirt": exc.get_error_message(), "cpu_xml": cpu_xml},
            }
        if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
            return {
                "check_id": "live.cpu_compatible",
                "severity": "blocker",
                "message": "The destination's CPU is incompatible with the guest's CPU model.",
                "evidence": {"result": result, "cpu_xml": cpu_xml},
                "error_class": errors.CPU_INCOMPATIBLE,
            }
        return {
            "check_id": "live.cpu_compatible",
            "severity": "ok",
            "message": "compareHypervisorCPU: the destination can run the guest CPU.",
            "evidence": {"result": result},
        }

    def _space_findings(self) -> list[dict]:
        out = []
        conn = self.dst if self.ctx.mode != "storage_only" else self.src
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
                    {
                        "check_id": "live.destination_space",
                        "severity": "blocker",
                        "message": f"Pool {pool_name} is not usable on the destination.",
                        "evidence": {"libvirt": exc.get_error_message()},
                    }
                )
                continue
            severity = "ok" if available >= size else "blocker"
            out.append(
                {
                    "check_id": "live.destination_space",
                    "severity": severity,
                    "message": f"Pool {pool_name}: {available} bytes free, {size} needed.",
                    "evidence": {"available": available, "needed": size},
                    **({"error_class": errors.NO_SPACE} if severity == "blocker" else {}),
                }
            )
        return out

    # ------------------------------------------------------------------ prepare

    def prepare(self) -> dict:
        policy = self.ctx.policy
        if self.ctx.mode == "storage_only":
            return self._prepare_copies()
        flags = (
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST
        )
        names = ["LIVE", "PEER2PEER", "PERSIST_DEST"]
        evidence: dict = {}
        if policy.require_tls:
            flags |= libvirt.VIR_MIGRATE_TLS
            names.append("TLS")
        if self.ctx.mode == "live_copy":
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            names.append("NON_SHARED_DISK")
            evidence["destination_volumes"] = (
                "created by libvirt at the same path in the destination's pool of that name"
            )
        elif self.ctx.shared_storage:
            # libvirt only trusts network file systems and cluster storage as shared; a
            # directory both hosts mount at one path is shared to Ferry's inventory but not
            # to libvirt, which then refuses (cache mode) unless told it is safe.
            flags |= libvirt.VIR_MIGRATE_UNSAFE
            names.append("UNSAFE")
            evidence["unsafe_reason"] = (
                "the VM's disks are on a pool Ferry's inventory sees as shared by both hosts "
                "(same pool on both), which libvirt cannot recognise as shared storage"
            )
        if policy.on_no_convergence == "auto_converge":
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
            names.append("AUTO_CONVERGE")
        if policy.on_no_convergence == "postcopy":
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
            names.append("POSTCOPY")
        params: dict = {}
        if policy.bandwidth_mib_s:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(policy.bandwidth_mib_s)
        if self.ctx.network_map:
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = self._destination_xml()
            evidence["network_map"] = self.ctx.network_map
        self.flags = flags
        self.params = params
        self.dest_uri = p2p_uri(
            self.ctx.destination_ip, self.ctx.destination_uri, policy.require_tls
        )
        shown = {k: v for k, v in params.items() if k != libvirt.VIR_MIGRATE_PARAM_DEST_XML}
        evidence.update(flags=names, flags_value=flags, params=shown, destination_uri=self.dest_uri)
        return evidence

    def _destination_xml(self) -> str:
        """The migratable XML with interfaces moved to the mapped destination networks."""
        dom = self._src_dom()
        root = fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
        for source in root.findall("devices/interface/source"):
            name = source.get("network")
            if name in self.ctx.network_map:
                source.set("network", self.ctx.network_map[name])
        return ET.tostring(root, encoding="unicode")

    def _prepare_copies(self) -> dict:
        made = {}
        for disk in self.ctx.disks:
            pool = self.src.storagePoolLookupByName(disk["dest_pool"])
            target_dir = fromstring(pool.XMLDesc(0)).findtext("target/path")
            name = f"{self.ctx.vm_name}-{disk['target']}-a{self.ctx.attempt_id}.qcow2"
            made[disk["target"]] = os.path.join(target_dir, name)
        self.copies = made
        return {"block_copy_destinations": made, "flags": ["TRANSIENT_JOB"]}

    # ------------------------------------------------------------------ transfer

    def _register_completed_event(self, dom) -> None:
        def on_completed(_conn, _dom, stats, _opaque):
            self._completed_event = dict(stats)

        try:
            cb = self.src.domainEventRegisterAny(
                dom, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, on_completed, None
            )
            self._callbacks.append((self.src, cb))
        except libvirt.libvirtError:
            pass  # stats then come from jobStats(COMPLETED) on the destination

    def start(self) -> None:
        dom = self._src_dom()
        if self.ctx.mode == "storage_only":
            self._start_copies(dom)
            return
        self._require_dst()
        self._register_completed_event(dom)

        def call():
            try:
                dom.migrateToURI3(self.dest_uri, self.params, self.flags)
            except libvirt.libvirtError as exc:
                self._error = errors.from_libvirt(exc, "Migration failed")
            except Exception as exc:  # any other failure must still end the attempt
                self._error = errors.ExecutionError(errors.LIBVIRT, str(exc), repr(exc))
            finally:
                self._returned = True

        self._thread = threading.Thread(
            target=call, name=f"migrate {self.ctx.vm_name}", daemon=True
        )
        self._thread.start()

    def _start_copies(self, dom) -> None:
        bandwidth = self.ctx.policy.bandwidth_mib_s
        params = {}
        if bandwidth:
            params[libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH] = int(bandwidth) * 1024 * 1024
        for target, path in self.copies.items():
            dest = f"<disk type='file'><source file='{path}'/><driver type='qcow2'/></disk>"
            try:
                dom.blockCopy(target, dest, params, libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
            except libvirt.libvirtError as exc:
                raise errors.from_libvirt(exc, f"Block copy of {target} failed") from None
        self._returned = False

    def attach(self) -> None:
        self._attached = True
        if self.ctx.mode == "storage_only":
            self._prepare_copies()

    def poll(self) -> dict | None:
        dom = _domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            return None
        if self.ctx.mode == "storage_only":
            return self._poll_copies(dom)
        try:
            stats = dom.jobStats(0)
        except libvirt.libvirtError:
            return None
        if not stats or stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return stats

    def _poll_copies(self, dom) -> dict | None:
        total = processed = 0
        ready = True
        for target in self.copies:
            if target in self.pivoted:
                continue
            info = dom.blockJobInfo(target, 0)
            if not info:
                ready = False
                continue
            total += info.get("end", 0)
            processed += info.get("cur", 0)
            if not info.get("end") or info.get("cur") != info.get("end"):
                ready = False
        if ready and self.copies:
            # The mirror has caught up: pivot each disk (the "switchover" of a storage move).
            for target in self.copies:
                if target in self.pivoted:
                    continue
                try:
                    dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                    self.pivoted.add(target)
                except libvirt.libvirtError as exc:
                    logger.info("pivot of %s not yet possible: %s", target, exc)
        return {
            "type": 2,
            "disk_total": total,
            "disk_processed": processed,
            "disk_remaining": total - processed,
            "data_processed": processed,
        }

    def outcome(self) -> tuple[bool, Exception | None]:
        if self.ctx.mode == "storage_only":
            if self.copies and len(self.pivoted) == len(self.copies):
                return True, None
            dom = _domain_or_none(self.src, self.ctx.vm_uuid)
            if dom is None:
                return True, errors.ExecutionError(
                    errors.AMBIGUOUS, "The VM disappeared during the copy."
                )
            active = [t for t in self.copies if t not in self.pivoted and dom.blockJobInfo(t, 0)]
            if not active and not self._pivoted_in_xml(dom):
                return True, errors.ExecutionError(
                    errors.LIBVIRT, "The block copy job ended without a pivot."
                )
            if not active:
                return True, None
            return False, None
        if self._attached:
            # Another worker made the call; the job is over when the source has none, and
            # whether it succeeded is read from where the VM is now.
            if self.poll() is not None:
                return False, None
            where = self.locate()
            if where.destination == "running" and where.source not in ("running", "paused"):
                return True, None
            return True, errors.ExecutionError(
                errors.WORKER_LOST,
                "The migration ended without moving the VM while no worker watched it.",
                "; ".join(where.errors),
            )
        return self._returned, self._error

    def _pivoted_in_xml(self, dom) -> bool:
        xml = dom.XMLDesc(0)
        return bool(self.copies) and all(path in xml for path in self.copies.values())

    def completed_stats(self) -> dict:
        if self._completed_event:
            return dict(self._completed_event)
        for conn in (self.dst, self.src):
            if conn is None:
                continue
            try:
                dom = _domain_or_none(conn, self.ctx.vm_uuid)
                if dom is not None:
                    stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
                    if stats and len(stats) > 1:
                        return stats
            except libvirt.libvirtError:
                continue
        return {}

    def set_max_downtime(self, ms: int) -> None:
        try:
            self._src_dom().migrateSetMaxDowntime(int(ms), 0)
        except libvirt.libvirtError as exc:
            logger.info("migrateSetMaxDowntime(%s) refused: %s", ms, exc)

    def start_postcopy(self) -> None:
        self._src_dom().migrateStartPostCopy(0)
        self.postcopy_started = True

    def abort(self) -> None:
        dom = self._src_dom()
        if self.ctx.mode == "storage_only":
            for target in self.copies:
                try:
                    if dom.blockJobInfo(target, 0):
                        dom.blockJobAbort(target, 0)
                except libvirt.libvirtError as exc:
                    logger.info("blockJobAbort(%s): %s", target, exc)
            self._error = errors.ExecutionError(
                errors.ABORTED_BY_OPERATOR, errors.EXPLANATIONS[errors.ABORTED_BY_OPERATOR]
            )
            self._returned = True
            return
        try:
            dom.abortJob()
        except libvirt.libvirtError as exc:
            # No job (it just finished) is not an error: the outcome says what happened.
            logger.info("abortJob: %s", exc)

    # ------------------------------------------------------------------ truth

    def locate(self) -> Location:
        errs = []
        src_state = dst_state = None
        job = False
        try:
            dom = _domain_or_none(self.src, self.ctx.vm_uuid)
            src_state = _state(dom)
            if dom is not None and dom.isActive():
                if self.ctx.mode == "storage_only":
                    job = any(dom.blockJobInfo(t, 0) for t in self.copies)
                else:
                    job = dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
        except libvirt.libvirtError as exc:
            errs.append(f"source: {exc.get_error_message()}")
        if self.ctx.mode == "storage_only":
            return Location(src_state, None, job, errs)
        if self.dst is None:
            errs.append(f"destination: {getattr(self, '_dst_error', 'unreachable')}")
        else:
            try:
                dst_state = _state(_domain_or_none(self.dst, self.ctx.vm_uuid))
            except libvirt.libvirtError as exc:
                errs.append(f"destination: {exc.get_error_message()}")
        return Location(src_state, dst_state, job, errs)

    def storage_moved(self) -> bool:
        """Storage-only: whether the live XML already uses the new files."""
        dom = _domain_or_none(self.src, self.ctx.vm_uuid)
        return dom is not None and self._pivoted_in_xml(dom)

    def verify_once(self) -> str | None:
        if self.ctx.mode == "storage_only":
            dom = _domain_or_none(self.src, self.ctx.vm_uuid)
            if _state(dom) != "running":
                return f"VM is {_state(dom) or 'gone'} on {self.ctx.source_host}."
            if not self._pivoted_in_xml(dom):
                return "The VM's disks do not point at the copies."
            return None
        where = self.locate()
        if where.errors and where.destination is None:
            return "; ".join(where.errors)
        if where.destination != "running":
            return f"VM is {where.destination or 'absent'} on {self.ctx.destination_host}."
        if where.source in ("running", "paused"):
            return f"VM is still {where.source} on {self.ctx.source_host}."
        return None

    def cleanup(self, remove_source_disks: bool) -> dict:
        done: dict = {"source_undefined": False, "disks_removed": []}
        if self.ctx.mode != "storage_only":
            dom = _domain_or_none(self.src, self.ctx.vm_uuid)
            if dom is not None and not dom.isActive() and dom.isPersistent():
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                )
                done["source_undefined"] = True
        if remove_source_disks and self.ctx.mode in ("live_copy", "storage_only"):
            for disk in self.ctx.disks:
                path = disk.get("source_path")
                try:
                    self.src.storageVolLookupByPath(path).delete(0)
                    done["disks_removed"].append(path)
                except libvirt.libvirtError as exc:
                    done.setdefault("disk_errors", []).append(f"{path}: {exc.get_error_message()}")
        if self.ctx.mode == "storage_only":
            for disk in self.ctx.disks:
                try:
                    self.src.storagePoolLookupByName(disk["dest_pool"]).refresh(0)
                except libvirt.libvirtError:
                    pass
        return done

    def make_safe(self) -> list[str]:
        """Resume a source left paused after a failed pre-copy; never after post-copy began."""
        actions = []
        if self.postcopy_started:
            return ["post-copy had started: neither side was touched (an operator must decide)"]
        try:
            dom = _domain_or_none(self.src, self.ctx.vm_uuid)
            if dom is not None and dom.isActive():
                if dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                    try:
                        dom.abortJob()
                        actions.append("aborted a job still running on the source")
                    except libvirt.libvirtError:
                        pass
                if _state(dom) == "paused":
                    dom.resume()
                    actions.append(f"resumed the paused VM on {self.ctx.source_host}")
        except libvirt.libvirtError as exc:
            actions.append(f"could not check the source: {exc.get_error_message()}")
        if self.ctx.mode == "storage_only":
            for path in self.copies.values():
                if os.path.exists(path):
                    try:
                        self.src.storageVolLookupByPath(path).delete(0)
                    except libvirt.libvirtError:
                        os.unlink(path)
                    actions.append(f"removed the partial copy {path}")
            return actions
        if self.dst is not None:
            try:
                there = _domain_or_none(self.dst, self.ctx.vm_uuid)
                src_running = _state(_domain_or_none(self.src, self.ctx.vm_uuid)) == "running"
                if there is not None and _state(there) == "paused" and src_running:
                    # An incoming guest that never started while the source runs: libvirt
                    # normally removes it; if not, it must not linger paused.
                    there.destroy()
                    actions.append(
                        f"destroyed the paused incoming copy on {self.ctx.destination_host}"
                    )
            except libvirt.libvirtError as exc:
                actions.append(f"could not check the destination: {exc.get_error_message()}")
        return actions

    def new_disk_pools(self) -> dict:
        return {d["target"]: d["dest_pool"] for d in self.ctx.disks if d.get("dest_pool")}

    def close(self) -> None:
        for conn, cb in self._callbacks:
            try:
                conn.domainEventDeregisterAny(cb)
            except libvirt.libvirtError:
                pass
        self._callbacks = []
        # Wait briefly for a migrate thread that is about to return, so its connection is
        # not closed under it; a thread still blocked keeps its connection alive.
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2)
            if self._thread.is_alive():
                return
        # The connections go back to this process's idle set for the next session (the
        # migrate thread has returned and no callback of ours is left on them).
        CONNECTIONS.give_back(self.ctx.source_uri, self.src)
        if self.dst is not None and self.dst is not self.src:
            CONNECTIONS.give_back(self.ctx.destination_uri, self.dst)
        self.src = self.dst = None
        # Leave time for libvirt to finish closing before the next open (event loop).
        time.sleep(0)
