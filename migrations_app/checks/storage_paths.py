"""Which disks of an item must be copied, and into which pool: shared by the storage checks,
the estimate and (later) the execution engine, so all three agree."""

from migrations_app.checks.snapshot import DiskInfo, HostInfo, ItemInfo, Snapshot

COPYABLE_DEVICES = ("disk", "lun")


def target_pool_id(snapshot: Snapshot, item: ItemInfo, disk: DiskInfo, dest: HostInfo | None):
    """The pool a copied disk goes to: the item's storage map, else the destination's pool
    of the same name, else None (the planner must map it)."""
    if disk.pool_id is not None and disk.pool_id in item.storage_map:
        return item.storage_map[disk.pool_id]
    if dest is None or disk.pool_id is None:
        return None
    source_pool = snapshot.pools.get(disk.pool_id)
    if source_pool is None:
        return None
    found = snapshot.pool_named(dest.id, source_pool.name)
    return found if found != disk.pool_id else None


def copied_disks(snapshot: Snapshot, item: ItemInfo, dest: HostInfo | None) -> list:
    """(disk, target pool id or None) for every disk that must be copied for this item."""
    out = []
    for disk in item.vm.disks:
        if disk.device not in COPYABLE_DEVICES:
            continue
        mapped = disk.pool_id is not None and disk.pool_id in item.storage_map
        if item.storage_only:
            if mapped:
                out.append((disk, item.storage_map[disk.pool_id]))
            continue
        if mapped:
            out.append((disk, item.storage_map[disk.pool_id]))
            continue
        if dest is None:
            pool = snapshot.pools.get(disk.pool_id)
            if pool is None or not pool.shared:
                out.append((disk, None))
            continue
        if disk.pool_id is not None and snapshot.reaches(disk.pool_id, item.source_id, dest.id):
            continue  # the destination reaches this disk's pool: nothing to copy
        out.append((disk, target_pool_id(snapshot, item, disk, dest)))
    return out
