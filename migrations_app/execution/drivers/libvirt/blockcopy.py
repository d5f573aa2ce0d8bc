"""Storage-only moves of a running VM: its disks copied to another pool on the same host by
libvirt's block copy, then pivoted (the "switchover" of a storage move).

Why these choices:
- VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB: a persistent domain refuses a block copy without it.
- The destination is given as `<disk type='file'>` with the target path: a `type='volume'`
  destination is not translated by libvirt for block copy.
- Pivot with blockJobAbort(PIVOT) once every mirror has caught up; libvirt then rewrites the
  live and (best effort) persistent disk source.
"""

import os

import libvirt

from migrations_app.execution import errors
from migrations_app.execution.drivers.base import Location
from migrations_app.execution.drivers.libvirt.common import (
    LibvirtSession,
    domain_or_none,
    logger,
    state_of,
)


class BlockCopySession(LibvirtSession):
    """A storage-only move on the VM's own host."""

    two_hosts = False

    def __init__(self, ctx):
        # target -> path of its copy; the targets pivoted so far
        self.copies: dict[str, str] = {}
        self.pivoted: set[str] = set()
        super().__init__(ctx)

    def preflight(self) -> list[dict]:
        _dom, running = self._vm_running()
        if running["severity"] != "ok":
            return [running]
        return [running, *self._space_findings(self.src)]

    def prepare(self) -> dict:
        made = {}
        for disk in self.ctx.disks:
            target_dir = self._pool_path(self.src, disk["dest_pool"])
            name = f"{self.ctx.vm_name}-{disk['target']}-a{self.ctx.attempt_id}.qcow2"
            made[disk["target"]] = os.path.join(target_dir, name)
        self.copies = made
        return {"block_copy_destinations": made, "flags": ["TRANSIENT_JOB"]}

    def start(self) -> None:
        dom = self._src_dom()
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

    def attach(self) -> None:
        self.prepare()

    def poll(self) -> dict | None:
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if dom is None:
            return None
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
        if self.copies and len(self.pivoted) == len(self.copies):
            return True, None
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
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

    def _pivoted_in_xml(self, dom) -> bool:
        xml = dom.XMLDesc(0)
        return bool(self.copies) and all(path in xml for path in self.copies.values())

    def completed_stats(self) -> dict:
        try:
            dom = domain_or_none(self.src, self.ctx.vm_uuid)
            if dom is not None:
                stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
                if stats and len(stats) > 1:
                    return stats
        except libvirt.libvirtError:
            pass
        return {}

    def set_max_downtime(self, ms: int) -> None:
        """A storage move has no downtime to set."""

    def start_postcopy(self) -> None:
        raise errors.ExecutionError(errors.LIBVIRT, "A storage-only move has no post-copy.")

    def abort(self) -> None:
        dom = self._src_dom()
        for target in self.copies:
            try:
                if dom.blockJobInfo(target, 0):
                    dom.blockJobAbort(target, 0)
            except libvirt.libvirtError as exc:
                logger.info("blockJobAbort(%s): %s", target, exc)

    def locate(self) -> Location:
        errs = []
        src_state = None
        job = False
        try:
            dom = domain_or_none(self.src, self.ctx.vm_uuid)
            src_state = state_of(dom)
            if dom is not None and dom.isActive():
                job = any(dom.blockJobInfo(t, 0) for t in self.copies)
        except libvirt.libvirtError as exc:
            errs.append(f"source: {exc.get_error_message()}")
        return Location(src_state, None, job, errs)

    def storage_moved(self) -> bool:
        """Whether the live XML already uses the new files."""
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        return dom is not None and self._pivoted_in_xml(dom)

    def verify_once(self) -> str | None:
        dom = domain_or_none(self.src, self.ctx.vm_uuid)
        if state_of(dom) != "running":
            return f"VM is {state_of(dom) or 'gone'} on {self.ctx.source_host}."
        if not self._pivoted_in_xml(dom):
            return "The VM's disks do not point at the copies."
        return None

    def cleanup(self, remove_source_disks: bool) -> dict:
        done: dict = {"source_undefined": False, "disks_removed": []}
        if remove_source_disks:
            for disk in self.ctx.disks:
                path = disk.get("source_path")
                try:
                    self.src.storageVolLookupByPath(path).delete(0)
                    done["disks_removed"].append(path)
                except libvirt.libvirtError as exc:
                    done.setdefault("disk_errors", []).append(f"{path}: {exc.get_error_message()}")
        for disk in self.ctx.disks:
            try:
                self.src.storagePoolLookupByName(disk["dest_pool"]).refresh(0)
            except libvirt.libvirtError:
                pass
        return done

    def make_safe(self) -> list[str]:
        """Resume a source left paused and remove the partial copies."""
        actions = []
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
        for path in self.copies.values():
            if os.path.exists(path):
                try:
                    self.src.storageVolLookupByPath(path).delete(0)
                except libvirt.libvirtError:
                    os.unlink(path)
                actions.append(f"removed the partial copy {path}")
        return actions
