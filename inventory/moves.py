"""Inventory service for moves Ferry carried out: the VM's host and its disks' pools.

Called by the execution code in the transaction that records an attempt as completed, so
the inventory and the attempt agree; the next host sync confirms it from libvirt.
"""

from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import audit_record
from inventory.models import Host, StoragePool, VirtualMachine


def vm_record_move(
    *, vm: VirtualMachine, host: Host, disk_pools: dict, actor, reason: str = ""
) -> VirtualMachine:
    """Record that a VM now runs on `host` and that disks {target: pool id} moved pools."""
    with transaction.atomic():
        locked = VirtualMachine.objects.select_for_update().get(pk=vm.pk)
        before = {
            "host": locked.host.name if locked.host_id else None,
            "disks": {d.target: d.pool.name if d.pool else None for d in locked.disks.all()},
        }
        locked.host = host
        locked.missing = False
        locked.missing_since = None
        locked.last_seen_at = timezone.now()
        locked.save(update_fields=["host", "missing", "missing_since", "last_seen_at"])
        pools = {str(p.pk): p for p in StoragePool.objects.filter(pk__in=list(disk_pools.values()))}
        for disk in locked.disks.all():
            pool = pools.get(str(disk_pools.get(disk.target)))
            if pool is not None and disk.pool_id != pool.pk:
                disk.pool = pool
                disk.save(update_fields=["pool"])
        after = {
            "host": host.name,
            "disks": {d.target: d.pool.name if d.pool else None for d in locked.disks.all()},
        }
        audit_record(
            actor=actor, action="vm.moved", obj=locked, before=before, after=after, reason=reason
        )
    return locked
