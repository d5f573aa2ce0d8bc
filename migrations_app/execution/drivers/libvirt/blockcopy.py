"""Storage-only moves of a running VM: its disks copied to another pool on the same host by
libvirt's block copy, then pivoted (the "switchover" of a storage move).

Why these choices:
- VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB: a persistent domain refuses a block copy without it.
- The destination is given as `<disk type='file'>` with the target path: a `type='volume'`
  destination is not translated by libvirt for block copy.
- Pivot with blockJobAbort(PIVOT) once every mirror has caught up; libvirt then rewrites the
  live and (best effort) the persistent disk source. Best effort is not enough: after the
  pivots Ferry compares the persistent definition with the live one and redefines it if a
  pivoted disk still points at its old file, so the next cold boot does not roll the disk
  back to the moment of the pivot.
- What has pivoted is read from the domain's XML, never from memory alone: after a lost
  reply, a restarted daemon or another worker's crash, the XML is the truth.
- Nothing the live or persistent XML references is ever deleted, and copies are deleted
  only through libvirt on their host (never with a file system call on the worker): after a
  failure, only copies whose job was cancelled before their pivot go. A move that pivoted
  some disks but not others is handed over as it is: each disk runs on a valid file, and
  an operator decides whether to finish or undo it.
"""

import os
import time
import xml.etree.ElementTree as ET  # noqa: S405 - only serialises XML parsed safely
from xml.sax.saxutils import escape

import libvirt
from defusedxml.ElementTree import fromstring

from migrations_app.execution import errors, faults, safety
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
    state_and_reason,
)

# A pivot refused this many times in a row, while another disk already pivoted, ends the
# move as a partial one (handed over) instead of retrying forever.
PIVOT_TRIES = 5


def disk_sources(xml: str) -> dict[str, str]:
    """{target dev: source file} of a domain's disks."""
    out = {}
    for disk in fromstring(xml).findall("devices/disk"):
        target = disk.find("target")
        source = disk.find("source")
        if target is None or source is None:
            continue
        path = source.get("file") or source.get("dev") or source.get("volume")
        if path:
            out[target.get("dev")] = path
    return out


def copy_format(disk: dict) -> str:
    """The format of a disk's copy: the source's own (a storage move does not convert a raw
    disk to qcow2 or back); qcow2 for anything Ferry does not know to be raw."""
    return "raw" if disk.get("format") == "raw" else "qcow2"


class BlockCopySession(LibvirtSession):
    """A storage-only move on the VM's own host."""

    two_hosts = False

    def __init__(self, ctx):
        # target -> path of its copy; the targets pivoted so far (read from the XML)
        self.copies: dict[str, str] = {}
        self.pivoted: set[str] = set()
        self._pivot_refusals: dict[str, int] = {}
        self._partial: str = ""
        self._config_fixed: list[str] = []
        self._cpu_time: int | None = None
        super().__init__(ctx)

    # ------------------------------------------------------------------ preflight

    def preflight(self) -> list[dict]:
        dom, running = self._vm_running()
        if running["severity"] != "ok":
            return [running]
        findings = [running]
        busy = [d["target"] for d in self.ctx.disks if self._job_info(dom, d["target"])]
        if busy:
            findings.append(
                finding(
                    "live.no_other_job",
                    "blocker",
                    f"A block job already runs on disk(s) {', '.join(busy)} of "
                    f"{self.ctx.vm_name}; Ferry does not start a copy next to it.",
                    disks=busy,
                )
            )
        if has_agent_channel(dom.XMLDesc(0)):
            problem = self.guard.call("guest-ping", agent_ping, dom)
            self.ctx.agent_expected = not problem
            findings.append(
                finding(
                    "live.guest_agent",
                    "info" if problem else "ok",
                    "The guest agent answers guest-ping; verify asks it again after the pivot."
                    if not problem
                    else f"The guest agent does not answer ({problem}).",
                )
            )
        findings.extend(self._space_findings(self.src))
        return findings

    def _job_info(self, dom, target: str) -> dict:
        """The block job on a disk ({} for none); ReadError when libvirt cannot tell."""
        try:
            return self.guard.call(f"blockJobInfo {target}", dom.blockJobInfo, target, 0) or {}
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NO_JOB_ERRORS:
                return {}
            raise ReadError(exc.get_error_message()) from None

    # ------------------------------------------------------------------ prepare / start

    def prepare(self) -> dict:
        made = {}
        for disk in self.ctx.disks:
            target_dir = self._pool_path(self.src, disk["dest_pool"])
            extension = "img" if copy_format(disk) == "raw" else "qcow2"
            name = f"{self.ctx.vm_name}-{disk['target']}-a{self.ctx.attempt_id}.{extension}"
            made[disk["target"]] = os.path.join(target_dir, name)
        self.copies = made
        return {"block_copy_destinations": made, "flags": ["TRANSIENT_JOB"]}

    def start(self) -> None:
        dom = self._src_dom()
        bandwidth = self.ctx.policy.bandwidth_mib_s
        params = {}
        if bandwidth:
            params[libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH] = int(bandwidth) * 1024 * 1024
        formats = {d["target"]: copy_format(d) for d in self.ctx.disks}
        for target, path in self.copies.items():
            dest = (
                f"<disk type='file'><source file='{escape(path)}'/>"
                f"<driver type='{formats.get(target, 'qcow2')}'/></disk>"
            )
            try:
                self.guard.act(
                    f"blockCopy {target}",
                    dom.blockCopy,
                    target,
                    dest,
                    params,
                    libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB,
                )
            except libvirt.libvirtError as exc:
                raise errors.from_libvirt(exc, f"Block copy of {target} failed") from None

    def attach(self) -> None:
        self.prepare()
        self._read_pivots()

    def _read_pivots(self) -> dict[str, str]:
        """Which copies the VM runs on now, from its live XML (the truth after a crash or
        a lost reply); returns the live disk sources."""
        live = disk_sources(self._src_dom().XMLDesc(0))
        self.pivoted = {t for t, path in self.copies.items() if live.get(t) == path}
        return live

    # ------------------------------------------------------------------ transfer

    def poll(self) -> dict | None:
        try:
            return self._poll()
        except libvirt.libvirtError as exc:
            # A dead connection or a restarted daemon says nothing about the copies, which
            # QEMU keeps running: the monitor retries and reconnects.
            raise ReadError(exc.get_error_message()) from None

    def _poll(self) -> dict | None:
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            return None
        total = processed = 0
        waiting = []
        for target in self.copies:
            if target in self.pivoted:
                continue
            info = self._job_info(dom, target)
            if not info:
                continue  # no job: ended (outcome decides whether it pivoted)
            total += info.get("end", 0)
            processed += info.get("cur", 0)
            if not info.get("end") or info.get("cur") != info.get("end"):
                waiting.append(target)
        pending = [t for t in self.copies if t not in self.pivoted]
        if pending and not waiting:
            self._pivot_all(dom, pending)
        return {
            "type": 2,
            "disk_total": total,
            "disk_processed": processed,
            "disk_remaining": total - processed,
            "data_processed": processed,
        }

    def _pivot_all(self, dom, pending: list[str]) -> None:
        """Every mirror caught up: pivot each disk, reading back from the XML what happened."""
        answered: set = set()  # pivots libvirt accepted in this pass
        for index, target in enumerate(pending):
            if index:
                faults.point(
                    "blockcopy.between_pivots", session=self, pivoted=self.pivoted | answered
                )
            try:
                self.guard.act(
                    f"pivot {target}",
                    dom.blockJobAbort,
                    target,
                    libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT,
                )
                self._pivot_refusals.pop(target, None)
                answered.add(target)
            except libvirt.libvirtError as exc:
                self._pivot_refusals[target] = self._pivot_refusals.get(target, 0) + 1
                logger.warning(
                    "attempt %s: pivot of %s refused (%s/%s): %s",
                    self.ctx.attempt_id,
                    target,
                    self._pivot_refusals[target],
                    PIVOT_TRIES,
                    exc.get_error_message(),
                )
        self._read_pivots()  # a pivot whose reply was lost shows in the XML
        stuck = [t for t, n in self._pivot_refusals.items() if n >= PIVOT_TRIES]
        if stuck and self.pivoted:
            self._partial = (
                f"disk(s) {', '.join(sorted(self.pivoted))} moved; the pivot of "
                f"{', '.join(sorted(stuck))} was refused {PIVOT_TRIES} times"
            )

    def outcome(self) -> tuple[bool, Exception | None]:
        try:
            return self._outcome()
        except libvirt.libvirtError as exc:
            raise ReadError(exc.get_error_message()) from None

    def _outcome(self) -> tuple[bool, Exception | None]:
        if self._partial:
            return True, errors.ExecutionError(
                errors.PARTIAL_STORAGE_MOVE,
                f"{errors.EXPLANATIONS[errors.PARTIAL_STORAGE_MOVE]} ({self._partial})",
            )
        if self.copies and len(self.pivoted) == len(self.copies):
            self._persistent_follows()
            return True, None
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            return True, errors.ExecutionError(
                errors.AMBIGUOUS, "The VM disappeared during the copy."
            )
        try:
            active = [t for t in self.copies if t not in self.pivoted and self._job_info(dom, t)]
        except ReadError:
            return False, None  # cannot tell now; ask again next tick
        if active:
            return False, None
        self._read_pivots()
        if self.copies and len(self.pivoted) == len(self.copies):
            self._persistent_follows()
            return True, None
        if self.pivoted:
            self._partial = (
                f"disk(s) {', '.join(sorted(self.pivoted))} moved; the copy of "
                f"{', '.join(sorted(set(self.copies) - self.pivoted))} ended without a pivot"
            )
            return self._outcome()
        return True, errors.ExecutionError(
            errors.LIBVIRT, "The block copy job ended without a pivot."
        )

    def _persistent_follows(self) -> None:
        """Make the persistent definition use the copies the VM now runs on (libvirt
        rewrites it only on a best-effort basis)."""
        dom = self._src_dom()
        if not dom.isPersistent():
            return
        config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        stale = {
            t: path
            for t, path in self.copies.items()
            if t in self.pivoted and disk_sources(config).get(t) != path
        }
        if not stale:
            return
        root = fromstring(config)
        for disk in root.findall("devices/disk"):
            target = disk.find("target")
            source = disk.find("source")
            if target is not None and source is not None and target.get("dev") in stale:
                source.attrib.pop("dev", None)
                source.set("file", stale[target.get("dev")])
        self.guard.act(
            "define persistent config", self.src.defineXML, ET.tostring(root, encoding="unicode")
        )
        self._config_fixed = sorted(stale)
        logger.warning(
            "attempt %s: the persistent definition still named the old file of %s after the "
            "pivot; it was redefined to use the copy",
            self.ctx.attempt_id,
            ", ".join(self._config_fixed),
        )

    def completed_stats(self) -> dict:
        # A storage move has no migration job: its figures are the copies'. jobStats
        # (COMPLETED) could hold a previous migration's statistics.
        total = sum(int(d.get("capacity") or 0) for d in self.ctx.disks)
        return {"disk_total": total, "data_processed": total}

    def set_max_downtime(self, ms: int) -> bool:
        """A storage move has no downtime to set."""
        return True

    def start_postcopy(self) -> None:
        raise errors.ExecutionError(errors.LIBVIRT, "A storage-only move has no post-copy.")

    def abort(self) -> bool:
        dom = self._src_dom()
        stopped = False
        for target in self.copies:
            if target in self.pivoted:
                continue
            try:
                if self._job_info(dom, target):
                    self.guard.act(f"cancel copy of {target}", dom.blockJobAbort, target, 0)
                    stopped = True
            except (libvirt.libvirtError, ReadError) as exc:
                logger.warning("attempt %s: cancel of %s: %s", self.ctx.attempt_id, target, exc)
        return stopped

    # ------------------------------------------------------------------ truth

    def situation(self, known: Known) -> safety.Situation:
        raise NotImplementedError("storage moves decide per disk (make_safe)")

    def locate(self) -> Location:
        errs = []
        state = reason = None
        job = False
        try:
            dom = domain_or_none(self.src, self.ctx.vm_uuid)
            state, reason = state_and_reason(dom)
            if dom is not None and dom.isActive():
                job = any(self._job_info(dom, t) for t in self.copies if t not in self.pivoted)
        except (libvirt.libvirtError, ReadError) as exc:
            errs.append(f"source: {exc}")
        return Location(state, None, job, errs, source_reason=reason or "")

    def storage_moved(self) -> bool:
        """Whether the live XML already uses every copy."""
        if domain_or_none(self.src, self.ctx.vm_uuid) is None:
            return False
        self._read_pivots()
        return bool(self.copies) and len(self.pivoted) == len(self.copies)

    def verify_once(self) -> str | None:
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        state, reason = state_and_reason(dom)
        if state != "running":
            return f"VM is {state or 'gone'} ({reason or '-'}) on {self.ctx.source_host}."
        live = disk_sources(dom.XMLDesc(0))
        config = (
            disk_sources(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if dom.isPersistent()
            else live
        )
        for target, path in self.copies.items():
            if live.get(target) != path:
                return f"Disk {target} does not run on its copy ({live.get(target)})."
            if config.get(target) != path:
                return (
                    f"Disk {target} runs on its copy but the persistent definition names "
                    f"{config.get(target)}: the next boot would use the old file."
                )
        if self.ctx.agent_expected:
            problem = self.guard.call("guest-ping", agent_ping, dom)
            if problem:
                return f"The guest agent does not answer: {problem}"
        return None

    def verify_progress(self) -> str | None:
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            return f"VM is absent on {self.ctx.source_host}."
        now = self.guard.call("vCPU time", cpu_time_ns, dom)
        before, self._cpu_time = self._cpu_time, now
        if before is not None and now <= before:
            return "The guest's vCPUs did not run while watched."
        return None

    def _referenced(self, dom) -> set[str]:
        """Every path the live or the persistent XML of the VM names."""
        paths = set(disk_sources(dom.XMLDesc(0)).values())
        if dom.isPersistent():
            paths |= set(disk_sources(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).values())
        return paths

    def _delete_volume(self, path: str) -> str:
        """Delete a file through libvirt's pool on the host (never on the worker's disks)."""
        for disk in self.ctx.disks:
            try:
                self.src.storagePoolLookupByName(disk["dest_pool"]).refresh(0)
            except libvirt.libvirtError:
                pass
        try:
            vol = self.src.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            return f"left {path}: libvirt on {self.ctx.source_host} knows no volume there"
        try:
            self.guard.act(f"delete {path}", vol.delete, 0)
        except libvirt.libvirtError as exc:
            return f"could not delete {path}: {exc.get_error_message()}"
        return f"deleted the unused copy {path}"

    def cleanup(self, remove_source_disks: bool) -> dict:
        done: dict = {"source_undefined": False, "disks_removed": [], "disks_kept": []}
        if self._config_fixed:
            done["persistent_config_redefined"] = self._config_fixed
        if remove_source_disks:
            referenced = self._referenced(self._src_dom())
            for disk in self.ctx.disks:
                path = disk.get("source_path")
                if not path or path in referenced:
                    done["disks_kept"].append(path)
                    continue
                result = self._delete_volume(path)
                (
                    done["disks_removed"] if result.startswith("deleted") else done["disks_kept"]
                ).append(path)
        for disk in self.ctx.disks:
            try:
                self.src.storagePoolLookupByName(disk["dest_pool"]).refresh(0)
            except libvirt.libvirtError:
                pass
        return done

    def make_safe(self, known: Known) -> dict:
        """Cancel copies that did not pivot, delete only copies nothing references, keep
        every pivoted disk where it runs (its persistent definition made to follow), and
        never resume a VM Ferry did not pause."""
        done: list[str] = []
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            decision = safety.Decision(
                safety.NEEDS_ATTENTION, "The VM is not defined on its host any more."
            )
            return {"decision": decision.as_dict(), "done": done}
        if not self.copies:
            self.prepare()
        self._read_pivots()
        for target in self.copies:
            if target not in self.pivoted:
                try:
                    if self._job_info(dom, target):
                        self.guard.act(f"cancel copy of {target}", dom.blockJobAbort, target, 0)
                        done.append(f"cancelled the copy of {target} (it had not pivoted)")
                except (libvirt.libvirtError, ReadError) as exc:
                    done.append(f"could not cancel the copy of {target}: {exc}")
        deadline = time.monotonic() + 10
        while True:
            live = self._read_pivots()
            try:
                active = {
                    t for t in self.copies if t not in self.pivoted and self._job_info(dom, t)
                }
            except ReadError:
                active = set(self.copies) - self.pivoted
            if not active or time.monotonic() > deadline:
                break
            self.guard.beat()
            time.sleep(0.5)
        if self.pivoted:
            self._persistent_follows()
            if self._config_fixed:
                done.append(
                    f"made the persistent definition use the copies of {', '.join(self._config_fixed)}"
                )
        for path in safety.storage_copies_to_delete(self.copies, self._referenced(dom), active):
            done.append(self._delete_volume(path))
        for target in sorted(set(self.copies) & active):
            done.append(f"kept {self.copies[target]}: its copy job still runs")
        state, reason = state_and_reason(dom)
        where = {t: live.get(t) for t in self.copies}
        if self.copies and len(self.pivoted) == len(self.copies):
            verdict, why = safety.ON_DESTINATION, "Every disk runs on its copy."
        elif self.pivoted:
            verdict = safety.NEEDS_ATTENTION
            why = (
                f"Disks split between the pools: {', '.join(f'{t} on {p}' for t, p in sorted(where.items()))}; "
                "each runs on a valid file, nothing referenced was deleted."
            )
        else:
            verdict, why = safety.ON_SOURCE, "No disk pivoted: the VM runs on its original disks."
        if state != "running":
            verdict = safety.NEEDS_ATTENTION
            why += f" The VM is {state} ({reason}) and was left as it is."
        decision = safety.Decision(verdict, why)
        return {"decision": decision.as_dict(), "done": done, "disks": where}

    def new_disk_pools(self) -> dict:
        return {
            d["target"]: d["dest_pool"]
            for d in self.ctx.disks
            if d.get("dest_pool") and d["target"] in self.pivoted
        }
