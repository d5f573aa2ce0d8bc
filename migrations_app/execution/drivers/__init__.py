"""Choosing a driver and building its context from the database.

The rehearsal driver is used only when both hosts are on libvirt's test driver (which has
no migration API); a plan that mixes test and real hosts is refused rather than half
simulated, so a rehearsal can never touch a real VM.
"""

from inventory.models import Host, StoragePool
from migrations_app.execution import errors
from migrations_app.execution.drivers.base import Context, Location, Session
from migrations_app.execution.drivers.libvirt import libvirt_session
from migrations_app.execution.drivers.libvirt.live import dest_file_path
from migrations_app.execution.drivers.rehearsal import RehearsalSession
from migrations_app.migration_network import tls_name
from migrations_app.models import ItemAttempt

__all__ = ["Context", "Location", "Session", "driver_name_for", "open_session"]


def driver_name_for(source: Host, destination: Host) -> str:
    """'rehearsal' for two test-driver hosts, 'libvirt' for two real ones."""
    test = {source.transport == Host.Transport.TEST, destination.transport == Host.Transport.TEST}
    if test == {True}:
        return ItemAttempt.Driver.REHEARSAL
    if test == {False}:
        return ItemAttempt.Driver.LIBVIRT
    raise errors.ExecutionError(
        errors.PREFLIGHT_BLOCKED,
        f"{source.name} and {destination.name} mix libvirt's test driver with a real host; "
        "Ferry neither simulates a real VM nor moves one to a simulated host.",
    )


def build_context(attempt: ItemAttempt) -> Context:
    """Everything a session needs, read once from the database.

    A disk is copied when the item maps its pool (storage map) or, for live_copy, when the
    destination does not reach its pool; every other disk is kept where it is (live_copy
    names only the copied ones to libvirt). A copied disk whose target pool sits at another
    directory gets its path there (`dest_path`), written into the destination XML.
    """
    item = attempt.item
    vm = item.vm
    src, dst = attempt.source_host, attempt.destination_host
    storage_map = {str(k): v for k, v in (item.storage_map or {}).items()}
    pools = {
        p.pk: p
        for p in StoragePool.objects.filter(pk__in=_pool_ids(storage_map)).prefetch_related("hosts")
    }
    dst_pool_ids = set(dst.storage_pools.values_list("pk", flat=True))
    copied, kept = [], []
    shared = True
    for disk in vm.disks.select_related("pool").prefetch_related("pool__hosts").all():
        if disk.device != "disk":
            continue
        mapped = storage_map.get(str(disk.pool_id)) if disk.pool_id else None
        reaches = disk.pool_id is not None and disk.pool_id in dst_pool_ids
        if disk.pool is None or not reaches:
            shared = False
        copy = mapped is not None or (item.mode == "live_copy" and not reaches)
        if item.mode == "storage_only" and mapped is None:
            copy = False  # a disk not in the map stays where it is
        if not copy:
            kept.append(
                {
                    "target": disk.target,
                    "source_path": disk.source,
                    "pool": disk.pool.name if disk.pool else None,
                    "pool_id": disk.pool_id,
                    "pool_type": disk.pool.pool_type if disk.pool else None,
                }
            )
            continue
        dest_pool = pools.get(int(mapped)) if mapped is not None else disk.pool
        entry = {
            "target": disk.target,
            "source_path": disk.source,
            "source_pool": disk.pool.name if disk.pool else None,
            "dest_pool": dest_pool.name if dest_pool else None,
            "dest_pool_id": dest_pool.pk if dest_pool else None,
            "capacity": disk.capacity_bytes or 0,
            "format": disk.format or "qcow2",
        }
        if item.mode == "live_copy" and dest_pool is not None and dest_pool.target_path:
            moved_to = dest_file_path(dest_pool.target_path, disk.source)
            if moved_to != disk.source:
                entry["dest_path"] = moved_to
        copied.append(entry)
    evidence = attempt.evidence or {}
    prepared = evidence.get("prepare") or {}
    agent = any(
        f.get("check_id") == "live.guest_agent" and f.get("severity") == "ok"
        for f in evidence.get("preflight") or []
    )
    started = attempt.migrate_called_at.timestamp() if attempt.migrate_called_at else None
    return Context(
        attempt_id=attempt.pk,
        mode=item.mode,
        vm_name=vm.name,
        vm_uuid=str(vm.uuid),
        memory_mib=int(vm.memory_mib or 0),
        source_uri=src.uri,
        destination_uri=dst.uri,
        source_host=src.name,
        destination_host=dst.name,
        destination_ip=dst.migration_address,
        destination_data_address=dst.migration_network_address,
        destination_tls_name=tls_name(dst.uri, dst.hostname, dst.migration_address),
        policy=item.get_policy(),
        disks=copied,
        kept_disks=kept,
        shared_storage=shared,
        network_map=dict(item.network_map or {}),
        dirty_rate_mib_s=vm.dirty_rate_mib_s,
        migrate_called_epoch=started,
        source_autostart=prepared.get("source_autostart"),
        postcopy_recorded=attempt.postcopy_at is not None,
        agent_expected=agent,
        destination_libvirt_version=dst.libvirt_version,
        shared_paths=sorted(set(src.shared_paths or ()) & set(dst.shared_paths or ())),
        ferry_paused_epoch=(
            attempt.ferry_paused_source_at.timestamp() if attempt.ferry_paused_source_at else None
        ),
    )


def _pool_ids(storage_map: dict) -> list[int]:
    ids = []
    for value in (storage_map or {}).values():
        try:
            ids.append(int(value))
        except (TypeError, ValueError):
            continue
    return ids


def open_session(attempt: ItemAttempt) -> Session:
    """A driver session for the attempt (the driver recorded on it decides)."""
    ctx = build_context(attempt)
    if attempt.driver == ItemAttempt.Driver.REHEARSAL:
        return RehearsalSession(ctx)
    return libvirt_session(ctx)
