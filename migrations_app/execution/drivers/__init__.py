"""Choosing a driver and building its context from the database.

The rehearsal driver is used only when both hosts are on libvirt's test driver (which has
no migration API); a plan that mixes test and real hosts is refused rather than half
simulated, so a rehearsal can never touch a real VM.
"""

from inventory.models import Host, StoragePool
from migrations_app.execution import errors
from migrations_app.execution.drivers.base import Context, Location, Session
from migrations_app.execution.drivers.libvirt import libvirt_session
from migrations_app.execution.drivers.rehearsal import RehearsalSession
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
    """Everything a session needs, read once from the database."""
    item = attempt.item
    vm = item.vm
    src, dst = attempt.source_host, attempt.destination_host
    pool_names = {
        str(p.pk): p.name for p in StoragePool.objects.filter(pk__in=_pool_ids(item.storage_map))
    }
    disks = []
    shared = True
    for disk in vm.disks.select_related("pool").all():
        if disk.device != "disk":
            continue
        if disk.pool is None or not disk.pool.shared:
            shared = False
        dest_pool_id = item.storage_map.get(str(disk.pool_id)) if disk.pool_id else None
        if item.mode in ("live_copy", "storage_only") and dest_pool_id is None:
            if item.mode == "storage_only":
                continue  # a disk not in the map stays where it is
            dest_pool_id = disk.pool_id  # same pool name on the destination
        disks.append(
            {
                "target": disk.target,
                "source_path": disk.source,
                "source_pool": disk.pool.name if disk.pool else None,
                "dest_pool": pool_names.get(str(dest_pool_id))
                or (disk.pool.name if disk.pool and item.mode == "live_copy" else None),
                "dest_pool_id": int(dest_pool_id) if dest_pool_id else None,
                "capacity": disk.capacity_bytes or 0,
            }
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
        policy=item.get_policy(),
        disks=disks,
        shared_storage=shared,
        network_map=dict(item.network_map or {}),
        dirty_rate_mib_s=vm.dirty_rate_mib_s,
        migrate_called_epoch=started,
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
