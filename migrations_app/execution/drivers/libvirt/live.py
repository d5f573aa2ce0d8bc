"""Live migration of a running VM to another host: peer-to-peer, its memory (and with
live_copy the disks the destination cannot reach) sent by the source libvirtd.

Why these choices:
- PEER2PEER: the source libvirtd drives the whole migration, so a worker that dies, or whose
  own connection drops, does not abort it: Ferry reconnects and follows the job.
- PERSIST_DEST with PERSIST_XML = the destination's definition: without PERSIST_XML the
  destination keeps the source's inactive XML, so a network or storage map would be lost at
  the next cold boot.
- No UNDEFINE_SOURCE: libvirt would remove the source definition at switchover, before
  Ferry has verified that the guest survived. Instead the source's autostart is turned off
  before the transfer, so no failure past the switchover can leave a definition that starts
  by itself, and cleanup undefines the source (with its NVRAM) once the destination is
  verified; the destination gets the source's autostart back.
- live_copy names the disks to copy (VIR_MIGRATE_PARAM_MIGRATE_DISKS): without the list
  libvirt mirrors every writable disk, shared ones included, onto the very file the source
  QEMU has open.
- VIR_MIGRATE_UNSAFE only with a proof on record that a directory pool really is one
  storage for both hosts (a probe file written through one host, found through the other),
  and only when the destination's shared_filesystems does not already tell libvirt so.
- The migrate call blocks, so it runs in a thread; the runner samples jobStats meanwhile on
  the same (thread-safe) connection. Events: JOB_COMPLETED delivers the final stats (after
  post-copy it is the only source), lifecycle events tell when post-copy begins.
"""

import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - only serialises XML we parsed safely
from pathlib import PurePosixPath

import libvirt
from defusedxml.ElementTree import fromstring
from django.conf import settings

from inventory.storage_probe import probe_shared
from migrations_app.execution import errors, safety
from migrations_app.execution.drivers.base import Known, Location, ReadError
from migrations_app.execution.drivers.libvirt.common import (
    NO_JOB_ERRORS,
    LibvirtSession,
    agent_ping,
    cpu_time_ns,
    domain_or_none,
    finding,
    has_agent_channel,
    logger,
    p2p_uri,
    side_of,
    state_and_reason,
)
from migrations_app.migration_network import data_uri

# libvirt releases whose destination daemon cannot resume a failed post-copy: 11.3.0's
# qemuMigrationDstPrepareResume hands a NULL descriptor to qemuProcessIncomingDefNew and the
# daemon crashes (or the call hangs while the destination QEMU waits for a page); measured
# in the lab (lab/README.md, "Faults"). Ferry does not make the call there: the item waits
# for the documented QEMU-level recovery and an operator.
POSTCOPY_RESUME_BROKEN = frozenset({11_003_000})

_BASE_UNDEFINE = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
)


class LiveMigrationSession(LibvirtSession):
    """A live move (mode live or live_copy) from the source host to the destination."""

    def __init__(self, ctx):
        self._thread: threading.Thread | None = None
        self._call_error: Exception | None = None
        self._returned = False
        self._attached = False
        self._completed_event: dict | None = None
        self._postcopy_event = False
        self._reconnect_deadline: float | None = None
        self._cpu_time: int | None = None
        self.flags = 0
        self.params: dict = {}
        self.dest_uri = ""
        self.source_autostart: bool | None = ctx.source_autostart
        super().__init__(ctx)

    # ------------------------------------------------------------------ preflight

    def preflight(self) -> list[dict]:
        dom, running = self._vm_running()
        if running["severity"] != "ok":
            return [running]
        findings = [running]
        try:
            other_job = self._other_job(dom)
        except ReadError as exc:
            other_job = f"unknown ({exc})"
        if other_job:
            findings.append(
                finding(
                    "live.no_other_job",
                    "blocker",
                    f"Another job runs on {self.ctx.vm_name} ({other_job}); Ferry does not "
                    "start a migration next to it.",
                    job=other_job,
                )
            )
        if self.dst is None:
            findings.append(
                finding(
                    "live.destination_reachable",
                    "blocker",
                    f"Destination {self.ctx.destination_host} does not answer.",
                    error=self.dst_error,
                )
            )
            return findings
        findings.append(finding("live.destination_reachable", "ok", "Destination libvirt answers."))
        there = domain_or_none(self.dst, self.ctx.vm_uuid)
        if there is not None:
            state, reason = state_and_reason(there)
            findings.append(
                finding(
                    "live.not_on_destination",
                    "blocker",
                    f"A domain with this VM's UUID already exists on "
                    f"{self.ctx.destination_host} ({state}, {reason}); remove that definition "
                    "if it is a leftover, or find out why the VM is there.",
                    state=state,
                    reason=reason,
                )
            )
        findings.append(self._agent_finding(dom))
        findings.extend(self._postcopy_findings(dom))
        findings.extend(self._space_findings(self.dst))
        return findings

    def _other_job(self, dom) -> str:
        try:
            stats = self.guard.call("jobStats", dom.jobStats, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NO_JOB_ERRORS:
                return ""
            raise ReadError(exc.get_error_message()) from None
        if not stats or stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
            return ""
        return f"operation {stats.get('operation', 'unknown')}"

    def _agent_finding(self, dom) -> dict:
        """Whether verify can ask the guest agent after the move (it must answer now)."""
        if not has_agent_channel(dom.XMLDesc(0)):
            self.ctx.agent_expected = False
            return finding(
                "live.guest_agent",
                "info",
                "The guest has no qemu-guest-agent channel: verify watches its state and vCPU "
                "time only.",
            )
        problem = self.guard.call("guest-ping", agent_ping, dom)
        self.ctx.agent_expected = not problem
        if problem:
            return finding(
                "live.guest_agent",
                "info",
                f"The guest agent does not answer on the source ({problem}): verify cannot "
                "ask it after the move.",
                error=problem,
            )
        return finding(
            "live.guest_agent",
            "ok",
            "The guest agent answers guest-ping; verify asks it again on the destination.",
        )

    def _postcopy_findings(self, dom) -> list[dict]:
        """Post-copy cannot run with hugepages, file-backed memory or assigned devices."""
        if not self.ctx.policy.may_postcopy:
            return []
        root = fromstring(dom.XMLDesc(0))
        blockers = []
        if root.find("memoryBacking/hugepages") is not None:
            blockers.append("hugepages")
        if root.find("memoryBacking/source[@type='file']") is not None:
            blockers.append("file-backed memory")
        if root.find("devices/hostdev") is not None:
            blockers.append("assigned host devices (VFIO)")
        if not blockers:
            return []
        return [
            finding(
                "live.postcopy_possible",
                "blocker",
                f"The policy falls back to post-copy, which QEMU cannot do with "
                f"{', '.join(blockers)}.",
                blockers=blockers,
            )
        ]

    # ------------------------------------------------------------------ prepare

    def prepare(self) -> dict:
        policy = self.ctx.policy
        dom = self._src_dom()
        if self.source_autostart is None:
            self.source_autostart = bool(dom.autostart()) if dom.isPersistent() else False
        flags = (
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST
        )
        names = ["LIVE", "PEER2PEER", "PERSIST_DEST"]
        evidence: dict = {"source_autostart": self.source_autostart}
        params: dict = {}
        if policy.require_tls:
            flags |= libvirt.VIR_MIGRATE_TLS
            names.append("TLS")
        copied = [d["target"] for d in self.ctx.disks]
        if self.ctx.mode == "live_copy" and copied:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            names.append("NON_SHARED_DISK")
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = copied
            evidence["copied_disks"] = copied
            evidence["kept_disks"] = [d["target"] for d in self.ctx.kept_disks]
        if self.ctx.unsafe_proof:
            # A directory pool proven shared by a probe that libvirt cannot recognise (no
            # network file system, not in the destination's shared_filesystems).
            flags |= libvirt.VIR_MIGRATE_UNSAFE
            names.append("UNSAFE")
            evidence["unsafe_reason"] = self.ctx.unsafe_proof
        if policy.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
            names.append("AUTO_CONVERGE")
        if policy.may_postcopy:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
            names.append("POSTCOPY")
        if policy.bandwidth_mib_s:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(policy.bandwidth_mib_s)
            if flags & libvirt.VIR_MIGRATE_POSTCOPY:
                # libvirt leaves post-copy unlimited unless told: the cap protects the
                # network the operator shares, in post-copy too.
                params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = int(policy.bandwidth_mib_s)
        flags = self._data_stream(flags, params, names, evidence)
        moved_paths = {
            d["source_path"]: d["dest_path"] for d in self.ctx.disks if d.get("dest_path")
        }
        if self.ctx.network_map or moved_paths:
            live_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
            config_xml = dom.XMLDesc(
                libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_INACTIVE
            )
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = self._remapped(live_xml, moved_paths)
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = self._remapped(config_xml, moved_paths)
            evidence["network_map"] = self.ctx.network_map
            evidence["disk_paths_on_destination"] = moved_paths
        self.flags = flags
        self.params = params
        self.dest_uri = p2p_uri(
            self.ctx.destination_ip, self.ctx.destination_uri, policy.require_tls
        )
        hidden = {libvirt.VIR_MIGRATE_PARAM_DEST_XML, libvirt.VIR_MIGRATE_PARAM_PERSIST_XML}
        shown = {k: v for k, v in params.items() if k not in hidden}
        evidence.update(flags=names, flags_value=flags, params=shown, destination_uri=self.dest_uri)
        return evidence

    def _data_stream(self, flags: int, params: dict, names: list, evidence: dict) -> int:
        """The data stream's flags and parameters: the migration network
        (VIR_MIGRATE_PARAM_URI, and with TLS the name the certificate is checked against),
        parallel connections and their compression; the evidence records the data path."""
        policy = self.ctx.policy
        uri = data_uri(self.ctx.destination_data_address)
        evidence["data_path"] = "migration network" if uri else "control connection"
        if uri:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = uri
            if flags & libvirt.VIR_MIGRATE_TLS:
                # The certificate names the host, not its migration network address.
                params[libvirt.VIR_MIGRATE_PARAM_TLS_DESTINATION] = self.ctx.destination_tls_name
        if policy.parallel_connections:
            flags |= libvirt.VIR_MIGRATE_PARALLEL
            names.append("PARALLEL")
            params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(
                policy.parallel_connections
            )
        if policy.compression != "none":
            flags |= libvirt.VIR_MIGRATE_COMPRESSED
            names.append("COMPRESSED")
            params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION] = policy.compression
        return flags

    def _remapped(self, xml: str, moved_paths: dict) -> str:
        """The XML with interfaces on the mapped networks and copied disks at their new
        paths (a storage map to a pool at another directory)."""
        root = fromstring(xml)
        for source in root.findall("devices/interface/source"):
            name = source.get("network")
            if name in self.ctx.network_map:
                source.set("network", self.ctx.network_map[name])
        for source in root.findall("devices/disk/source"):
            path = source.get("file")
            if path in moved_paths:
                source.set("file", moved_paths[path])
        return ET.tostring(root, encoding="unicode")

    # ------------------------------------------------------------------ transfer

    def _register_events(self, dom) -> None:
        def on_completed(_conn, _dom, stats, _opaque):
            self._completed_event = dict(stats)

        def on_lifecycle(_conn, _dom, event, detail, _opaque):
            if (
                event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED
                and detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY
            ):
                self._postcopy_event = True

        for event_id, callback in (
            (libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, on_completed),
            (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle),
        ):
            try:
                cb = self.src.domainEventRegisterAny(dom, event_id, callback, None)
                self._callbacks.append((self.src, cb))
            except libvirt.libvirtError:
                pass  # stats then come from jobStats(COMPLETED), post-copy from the reasons

    def start(self) -> None:
        dom = self._src_dom()
        self._require_dst()
        self._register_events(dom)
        if self.source_autostart:
            # Before the transfer: from here on no failure can leave a source definition
            # that starts by itself next to the VM on the destination.
            self.guard.act("disable source autostart", dom.setAutostart, 0)
        self.guard.fence("migrateToURI3")

        def call():
            try:
                dom.migrateToURI3(self.dest_uri, self.params, self.flags)
            except libvirt.libvirtError as exc:
                self._call_error = self._data_path_named(
                    errors.from_libvirt(exc, "Migration failed")
                )
            except Exception as exc:  # any other failure must still end the attempt
                self._call_error = errors.ExecutionError(errors.LIBVIRT, str(exc), repr(exc))
            finally:
                self._returned = True

        self._thread = threading.Thread(
            target=call, name=f"migrate {self.ctx.vm_name}", daemon=True
        )
        self._thread.start()

    def _data_path_named(self, error: errors.ExecutionError) -> errors.ExecutionError:
        """A connection failure to the migration network address says so: QEMU's data
        stream could not reach it (wrong address, or the destination's QEMU does not listen
        there), not Ferry's connection to libvirt. The class stays connection_lost."""
        address = self.ctx.destination_data_address
        if (
            address
            and error.error_class == errors.CONNECTION_LOST
            and address in (error.libvirt_message or "")
        ):
            error.message = (
                f"Migration failed: the source could not reach {self.ctx.destination_host}'s "
                f"migration network address {address} (QEMU's data stream). Check the "
                "address, the route from the source, and that the destination's QEMU listens "
                "there (qemu.conf migration_address); the VM stays on its source."
            )
        return error

    def attach(self) -> None:
        """Follow a migration another worker started: the flags and URI it used (for a
        post-copy resume) when the source still has the domain, and its events."""
        self._attached = True
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            return  # the source has undefined it already: only the destination matters
        try:
            self.prepare()
        except (errors.ExecutionError, libvirt.libvirtError) as exc:
            logger.info(
                "attempt %s: re-attach without the prepare step: %s", self.ctx.attempt_id, exc
            )
        self._register_events(dom)

    def poll(self) -> dict | None:
        try:
            dom = domain_or_none(self.src, self.ctx.vm_uuid)
        except libvirt.libvirtError as exc:
            raise ReadError(exc.get_error_message()) from None
        if dom is None:
            return None
        try:
            stats = self.guard.call("jobStats", dom.jobStats, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NO_JOB_ERRORS:
                return None
            raise ReadError(exc.get_error_message()) from None
        if not stats or stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        if stats.get("operation") not in (None, libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT):
            return None  # someone else's job (a backup, a dump): not this migration
        return stats

    def _client_connection_lost(self) -> bool:
        try:
            return self.src is None or self.src.isAlive() != 1
        except libvirt.libvirtError:
            return True

    def outcome(self) -> tuple[bool, Exception | None]:
        if self._returned and not self._attached:
            error = self._call_error
            if (
                error is not None
                and getattr(error, "error_class", "") == errors.CONNECTION_LOST
                and self._client_connection_lost()
            ):
                # Ferry's own connection to the source died, not necessarily the migration:
                # the source libvirtd drives a p2p migration by itself. Reconnect and follow
                # the job (Nova takes this error "with a pinch of salt" too).
                if self._reconnect_deadline is None:
                    self._reconnect_deadline = time.monotonic() + float(
                        settings.FERRY_RECONNECT_SECONDS
                    )
                    logger.warning(
                        "attempt %s: the connection to %s dropped during the migrate call; "
                        "reconnecting to follow the job",
                        self.ctx.attempt_id,
                        self.ctx.source_host,
                    )
                if self.reconnect():
                    self._attached = True
                    self._returned = False
                    self._call_error = None
                    return False, None
                if time.monotonic() < self._reconnect_deadline:
                    return False, None
            return True, error
        if self._attached:
            # The call was made by another worker or before the connection dropped: the job
            # is over when the source has none, and the outcome is where the VM is now.
            try:
                if self.poll() is not None:
                    return False, None
            except ReadError:
                return False, None
            where = self.locate()
            if where.errors:
                return False, None  # cannot tell yet; the monitor's limits still apply
            if where.destination == "running" and where.source not in ("running", "paused"):
                return True, None
            if self.postcopy_active():
                return False, None
            return True, errors.ExecutionError(
                errors.WORKER_LOST,
                "The migration ended without moving the VM while Ferry followed it.",
                f"source {where.source}/{where.source_reason}, destination "
                f"{where.destination}/{where.destination_reason}",
            )
        return False, None

    def call_result(self) -> str:
        """What this session knows of the migrate call: succeeded, failed or unknown."""
        if self._attached or not self._returned:
            return safety.CALL_UNKNOWN
        return safety.CALL_FAILED if self._call_error is not None else safety.CALL_SUCCEEDED

    def completed_stats(self) -> dict:
        if self._completed_event:
            return dict(self._completed_event)
        for conn in (self.dst, self.src):
            if conn is None:
                continue
            try:
                dom = domain_or_none(conn, self.ctx.vm_uuid)
                if dom is not None:
                    stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
                    if stats and len(stats) > 1:
                        return stats
            except libvirt.libvirtError:
                continue
        return {}

    def set_max_downtime(self, ms: int) -> bool:
        try:
            self.guard.act(
                "migrateSetMaxDowntime", self._src_dom().migrateSetMaxDowntime, int(ms), 0
            )
        except libvirt.libvirtError as exc:
            logger.warning(
                "attempt %s: migrateSetMaxDowntime(%s) refused: %s", self.ctx.attempt_id, ms, exc
            )
            return False
        return True

    def start_postcopy(self) -> None:
        self.guard.act("migrateStartPostCopy", self._src_dom().migrateStartPostCopy, 0)

    def postcopy_active(self) -> bool:
        if self._postcopy_event:
            return True
        try:
            src = domain_or_none(self.src, self.ctx.vm_uuid)
            dst = domain_or_none(self.dst, self.ctx.vm_uuid) if self.dst is not None else None
        except libvirt.libvirtError:
            return bool(self.ctx.postcopy_recorded)
        source_state, source_reason = state_and_reason(src)
        reasons = {source_reason, state_and_reason(dst)[1]}
        if reasons & safety.POSTCOPY_REASONS:
            return True
        if source_state == "running":
            # Ferry asked for post-copy, but the source still runs its guest: the switch
            # never happened (the link failed first), so this is a failed pre-copy.
            return False
        return bool(self.ctx.postcopy_recorded)

    def postcopy_resume_supported(self) -> tuple[bool, str]:
        """Whether libvirt on the destination can resume a failed post-copy, and why not."""
        version = self.ctx.destination_libvirt_version
        if version in POSTCOPY_RESUME_BROKEN:
            major, rest = divmod(version, 1_000_000)
            minor, micro = divmod(rest, 1_000)
            return False, (
                f"libvirt {major}.{minor}.{micro} on {self.ctx.destination_host} crashes or "
                "hangs on VIR_MIGRATE_POSTCOPY_RESUME; Ferry does not call it. Recover the "
                "migration at QEMU level (migrate-recover on the destination, migrate with "
                "resume on the source) or upgrade libvirt; Ferry follows the VM when it arrives."
            )
        return True, ""

    def postcopy_resume(self) -> bool:
        """One recovery try of a failed post-copy: VIR_MIGRATE_POSTCOPY_RESUME with the
        same URI and parameters; blocks until the resumed migration ends."""
        supported, _why = self.postcopy_resume_supported()
        if not supported:
            return False
        dom = self._src_dom()
        flags = self.flags | libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_POSTCOPY_RESUME
        self.guard.fence("migrateToURI3 (post-copy resume)")
        try:
            self.guard.call(
                "post-copy resume",
                dom.migrateToURI3,
                self.dest_uri,
                self.params,
                flags,
                timeout=float(settings.FERRY_POSTCOPY_RECOVER_SECONDS),
            )
        except libvirt.libvirtError as exc:
            logger.warning(
                "attempt %s: post-copy resume refused: %s",
                self.ctx.attempt_id,
                exc.get_error_message(),
            )
            return False
        return True

    def force_complete(self) -> None:
        dom = self._src_dom()
        try:
            self.guard.act("suspend source (force-complete)", dom.suspend)
        except libvirt.libvirtError as exc:
            raise errors.from_libvirt(exc, "The guest could not be paused") from None

    def resume_after_force_complete(self) -> str | None:
        dom = domain_or_none(self.dst, self.ctx.vm_uuid)
        if dom is None:
            return None
        state, reason = state_and_reason(dom)
        if state != "paused" or reason not in ("migration", "user"):
            return None
        self.guard.act("resume destination (after force-complete)", dom.resume)
        return f"resumed the VM on {self.ctx.destination_host} (paused for the force-complete)"

    def abort(self) -> bool:
        known = Known(postcopy=self.postcopy_active())
        allowed, why = safety.abort_allowed(self.situation(known))
        if not allowed:
            logger.warning("attempt %s: abort refused: %s", self.ctx.attempt_id, why)
            return False
        dom = self._src_dom()
        try:
            self.guard.act("abortJob", dom.abortJob)
        except libvirt.libvirtError as exc:
            # No job (it just finished) is not an error: the outcome says what happened.
            logger.info("abortJob: %s", exc)
            return False
        return True

    # ------------------------------------------------------------------ truth

    def situation(self, known: Known) -> safety.Situation:
        return safety.Situation(
            source=side_of(self.src, self.ctx.vm_uuid, source=True),
            destination=side_of(self.dst, self.ctx.vm_uuid, source=False, error=self.dst_error),
            postcopy_recorded=known.postcopy or self._postcopy_event,
            call=known.call,
            ferry_paused_source=known.ferry_paused_source,
            source_autostart=(
                known.source_autostart
                if known.source_autostart is not None
                else self.source_autostart
            ),
        )

    def apply(self, action: str) -> str:
        src_name, dst_name = self.ctx.source_host, self.ctx.destination_host
        try:
            # Each action reads only the side it acts on: a dead destination daemon must not
            # keep Ferry from putting the source's autostart back.
            on_source = action in (
                safety.PAUSE_SOURCE,
                safety.RESUME_SOURCE,
                safety.RESTORE_SOURCE_AUTOSTART,
                safety.DISABLE_SOURCE_AUTOSTART,
            )
            conn = self.src if on_source else self.dst
            dom = domain_or_none(conn, self.ctx.vm_uuid) if conn is not None else None
            src_dom = dom if on_source else None
            dst_dom = None if on_source else dom
            if action == safety.PAUSE_SOURCE and src_dom is not None:
                self.guard.act("suspend source", src_dom.suspend)
                return f"paused the copy on {src_name} (both copies ran)"
            if action == safety.PAUSE_DESTINATION and dst_dom is not None:
                self.guard.act("suspend destination", dst_dom.suspend)
                return f"paused the copy on {dst_name} (both copies ran)"
            if action == safety.DESTROY_INCOMING and dst_dom is not None:
                self.guard.act("destroy incoming", dst_dom.destroy)
                return f"destroyed the paused incoming copy on {dst_name}"
            if action == safety.UNDEFINE_DESTINATION_LEFTOVER and dst_dom is not None:
                if not dst_dom.isActive():
                    self.guard.act(
                        "undefine destination leftover",
                        dst_dom.undefineFlags,
                        _BASE_UNDEFINE | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM,
                    )
                    return f"removed the inactive definition left on {dst_name}"
                return f"left the definition on {dst_name}: it is active"
            if action == safety.RESUME_SOURCE and src_dom is not None:
                self.guard.act("resume source", src_dom.resume)
                return f"resumed the VM on {src_name} (paused by the migration)"
            if action == safety.RESTORE_SOURCE_AUTOSTART and src_dom is not None:
                self.guard.act("restore source autostart", src_dom.setAutostart, 1)
                return f"put autostart back on {src_name}"
            if action == safety.DISABLE_SOURCE_AUTOSTART and src_dom is not None:
                if src_dom.isPersistent() and src_dom.autostart():
                    self.guard.act("disable source autostart", src_dom.setAutostart, 0)
                    return f"turned autostart off on {src_name}"
                return f"{src_name}'s definition cannot autostart"
        except libvirt.libvirtError as exc:
            return f"{action} failed: {exc.get_error_message()}"
        return f"{action}: the domain is gone"

    def locate(self) -> Location:
        situation = self.situation(Known())
        src, dst = situation.source, situation.destination
        errs = [f"source: {src.error}"] if not src.reachable else []
        if not dst.reachable:
            errs.append(f"destination: {dst.error or 'unreachable'}")
        return Location(
            source=src.state if src.reachable else None,
            destination=dst.state if dst.reachable else None,
            job_active=src.migration_job,
            errors=errs,
            source_reason=src.reason,
            destination_reason=dst.reason,
        )

    def verify_once(self) -> str | None:
        where = self.locate()
        if where.errors and where.destination is None:
            return "; ".join(where.errors)
        if where.destination != "running" or where.destination_reason == "postcopy_failed":
            return (
                f"VM is {where.destination or 'absent'} ({where.destination_reason or '-'}) "
                f"on {self.ctx.destination_host}."
            )
        if where.source in ("running", "paused") and where.source_reason != "postcopy":
            return f"VM is still {where.source} on {self.ctx.source_host}."
        dom = domain_or_none(self.dst, self.ctx.vm_uuid)
        if dom is None:
            return f"VM is absent on {self.ctx.destination_host}."
        if self.ctx.agent_expected:
            problem = self.guard.call("guest-ping", agent_ping, dom)
            if problem:
                return f"The guest agent does not answer on {self.ctx.destination_host}: {problem}"
        return None

    def verify_progress(self) -> str | None:
        """Once per verify window: the guest's vCPU time must advance (a hung or frozen
        guest stays "running" to libvirt)."""
        dom = domain_or_none(self.dst, self.ctx.vm_uuid)
        if dom is None:
            return f"VM is absent on {self.ctx.destination_host}."
        now = self.guard.call("vCPU time", cpu_time_ns, dom)
        before, self._cpu_time = self._cpu_time, now
        if before is not None and now <= before:
            return f"The guest's vCPUs did not run on {self.ctx.destination_host} while watched."
        return None

    def cleanup(self, remove_source_disks: bool) -> dict:
        done: dict = {"source_undefined": False, "disks_removed": []}
        dst_dom = domain_or_none(self.dst, self.ctx.vm_uuid)
        dst_xml = dst_dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if dst_dom is not None else ""
        if dst_dom is not None and self.source_autostart and dst_dom.isPersistent():
            self.guard.act("destination autostart", dst_dom.setAutostart, 1)
            done["destination_autostart"] = True
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is not None and not dom.isActive() and dom.isPersistent():
            flags, kept = self._undefine_flags(dom, dst_xml)
            self.guard.act("undefine source", dom.undefineFlags, flags)
            done["source_undefined"] = True
            done["undefine_kept"] = kept
        if remove_source_disks and self.ctx.mode == "live_copy":
            referenced = dst_xml
            for disk in self.ctx.disks:
                path = disk.get("source_path")
                if not path:
                    continue
                if path in referenced:
                    # The destination runs on a file at the same path: the source's is
                    # another file only if a probe shows the two pools are two storages.
                    distinct, why = self._distinct_storage(disk)
                    done.setdefault("same_path_probes", []).append({"path": path, **why})
                    if not distinct:
                        done.setdefault("disks_kept", []).append(path)
                        continue
                try:
                    vol = self.src.storageVolLookupByPath(path)
                    self.guard.act(f"delete {path}", vol.delete, 0)
                    done["disks_removed"].append(path)
                except libvirt.libvirtError as exc:
                    done.setdefault("disk_errors", []).append(f"{path}: {exc.get_error_message()}")
        return done

    def _distinct_storage(self, disk: dict) -> tuple[bool, dict]:
        """Whether the source pool of a copied disk and its destination pool are two
        storages (a probe volume made through the source is not seen through the
        destination); any doubt keeps the source's file."""
        source_pool, dest_pool = disk.get("source_pool"), disk.get("dest_pool")
        if not source_pool or not dest_pool:
            return False, {"kept": "the disk's pools are not known"}
        try:
            shared, evidence = self.guard.act(
                f"probe pool {source_pool}",
                probe_shared,
                self.src,
                self.dst,
                source_pool,
                dest_pool,
            )
        except (libvirt.libvirtError, errors.ExecutionError) as exc:
            message = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else exc
            return False, {"kept": f"the storage probe failed: {message}"}
        if shared:
            return False, {"kept": "the probe shows one storage on both hosts", **evidence}
        return True, {"deleted": "the probe shows two storages", **evidence}

    def _undefine_flags(self, dom, dst_xml: str) -> tuple[int, list]:
        """Undefine flags for the source: its NVRAM goes with it, unless it is the very file
        the destination uses: same path AND under a directory both hosts declare shared
        (the same path on two hosts is usually two files: libvirt keeps NVRAM per host in
        /var/lib/libvirt/qemu/nvram)."""
        root = fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        flags, kept = _BASE_UNDEFINE, []
        nvram = (root.findtext("os/nvram") or "").strip()
        if nvram:
            dst_nvram = (fromstring(dst_xml).findtext("os/nvram") or "").strip() if dst_xml else ""
            if nvram == dst_nvram and under_any(nvram, self.ctx.shared_paths):
                flags |= libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
                kept.append(f"NVRAM {nvram} (the destination uses the same shared file)")
            else:
                flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        if root.find("devices/tpm") is not None:
            # vTPM state is per host; keep it: it is the guest's secrets, and small.
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM
            kept.append("vTPM state")
        return flags, kept

    def new_disk_pools(self) -> dict:
        return {d["target"]: d["dest_pool"] for d in self.ctx.disks if d.get("dest_pool")}

    def close(self) -> None:
        self._deregister_callbacks()
        # Wait briefly for a migrate thread that is about to return, so its connection is
        # not closed under it; a thread still blocked keeps its connections (they are not
        # handed to another session), as do calls the guard had to abandon.
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2)
            if self._thread.is_alive():
                return
        if self.guard.abandoned_calls:
            return
        self._give_back()


def under_any(path: str, directories) -> bool:
    """Whether `path` lies inside one of `directories` (whole path components)."""
    target = PurePosixPath(path)
    return any(
        target != PurePosixPath(d) and PurePosixPath(d) in target.parents for d in directories
    )


def dest_file_path(pool_path: str, source_path: str) -> str:
    """Where a copied disk lands in a destination pool at another directory."""
    return str(PurePosixPath(pool_path) / PurePosixPath(source_path).name)
