"""Live migration of a running VM to another host: peer-to-peer, its memory (and with
live_copy its disks) sent by the source libvirtd.

Why these choices:
- PEER2PEER: the source libvirtd drives the whole migration, so a worker that dies after
  the call does not abort it (the reconciler re-attaches instead).
- No UNDEFINE_SOURCE: libvirt would remove the source definition at switchover, before
  Ferry has verified that the guest survived; cleanup removes it after verify.
- UNSAFE only when Ferry's inventory says the disks are on a shared directory pool that
  libvirt cannot recognise as shared (the choice is recorded in the attempt's evidence).
- The migrate call blocks, so it runs in a thread; the runner samples jobStats meanwhile
  from its own thread on the same (thread-safe) connection.
- The JOB_COMPLETED event delivers the final stats (after post-copy it is the only source).
"""

import threading
import xml.etree.ElementTree as ET  # noqa: S405 - only serialises XML we parsed safely

import libvirt
from defusedxml.ElementTree import fromstring

from migrations_app.execution import errors
from migrations_app.execution.drivers.base import Location
from migrations_app.execution.drivers.libvirt.common import (
    LibvirtSession,
    domain_or_none,
    finding,
    logger,
    p2p_uri,
    state_of,
)


class LiveMigrationSession(LibvirtSession):
    """A live move (mode live or live_copy) from the source host to the destination."""

    def __init__(self, ctx):
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None
        self._returned = False
        self._attached = False
        self._completed_event: dict | None = None
        self.flags = 0
        self.params: dict = {}
        self.dest_uri = ""
        self.postcopy_started = False
        super().__init__(ctx)

    # ------------------------------------------------------------------ preflight

    def preflight(self) -> list[dict]:
        _dom, running = self._vm_running()
        if running["severity"] != "ok":
            return [running]
        findings = [running]
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
            findings.append(
                finding(
                    "live.not_on_destination",
                    "blocker",
                    f"A domain with this VM's UUID already exists on {self.ctx.destination_host}.",
                    state=state_of(there),
                )
            )
        findings.extend(self._space_findings(self.dst))
        return findings

    # ------------------------------------------------------------------ prepare

    def prepare(self) -> dict:
        policy = self.ctx.policy
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

    def attach(self) -> None:
        self._attached = True

    def poll(self) -> dict | None:
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            return None
        try:
            stats = dom.jobStats(0)
        except libvirt.libvirtError:
            return None
        if not stats or stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return stats

    def outcome(self) -> tuple[bool, Exception | None]:
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
            dom = domain_or_none(self.src, self.ctx.vm_uuid)
            src_state = state_of(dom)
            if dom is not None and dom.isActive():
                job = dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
        except libvirt.libvirtError as exc:
            errs.append(f"source: {exc.get_error_message()}")
        if self.dst is None:
            errs.append(f"destination: {self.dst_error or 'unreachable'}")
        else:
            try:
                dst_state = state_of(domain_or_none(self.dst, self.ctx.vm_uuid))
            except libvirt.libvirtError as exc:
                errs.append(f"destination: {exc.get_error_message()}")
        return Location(src_state, dst_state, job, errs)

    def verify_once(self) -> str | None:
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
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is not None and not dom.isActive() and dom.isPersistent():
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            )
            done["source_undefined"] = True
        if remove_source_disks and self.ctx.mode == "live_copy":
            for disk in self.ctx.disks:
                path = disk.get("source_path")
                try:
                    self.src.storageVolLookupByPath(path).delete(0)
                    done["disks_removed"].append(path)
                except libvirt.libvirtError as exc:
                    done.setdefault("disk_errors", []).append(f"{path}: {exc.get_error_message()}")
        return done

    def make_safe(self) -> list[str]:
        """Resume a source left paused after a failed pre-copy; never after post-copy began."""
        actions = []
        if self.postcopy_started:
            return ["post-copy had started: neither side was touched (an operator must decide)"]
        try:
            dom = domain_or_none(self.src, self.ctx.vm_uuid)
            if dom is not None and dom.isActive():
                if dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                    try:
                        dom.abortJob()
                        actions.append("aborted a job still running on the source")
                    except libvirt.libvirtError:
                        pass
                if state_of(dom) == "paused":
                    dom.resume()
                    actions.append(f"resumed the paused VM on {self.ctx.source_host}")
        except libvirt.libvirtError as exc:
            actions.append(f"could not check the source: {exc.get_error_message()}")
        if self.dst is not None:
            try:
                there = domain_or_none(self.dst, self.ctx.vm_uuid)
                src_running = state_of(domain_or_none(self.src, self.ctx.vm_uuid)) == "running"
                if there is not None and state_of(there) == "paused" and src_running:
                    # An incoming guest that never started while the source runs: libvirt
                    # normally removes it; if not, it must not linger paused.
                    there.destroy()
                    actions.append(
                        f"destroyed the paused incoming copy on {self.ctx.destination_host}"
                    )
            except libvirt.libvirtError as exc:
                actions.append(f"could not check the destination: {exc.get_error_message()}")
        return actions

    def close(self) -> None:
        self._deregister_callbacks()
        # Wait briefly for a migrate thread that is about to return, so its connection is
        # not closed under it; a thread still blocked keeps its connections (they are not
        # handed to another session).
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2)
            if self._thread.is_alive():
                return
        self._give_back()
