"""Inventory services: registering and changing hosts, and recording what Ferry's moves did
to a VM (its host, its disks' pools, the measurements of the move). Syncing from libvirt
is inventory.sync.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from dashboard.audit.record import as_actor, audit_record
from dashboard.errors import InputError
from dashboard.permissions import can
from inventory.libvirt_client import uri_parse
from inventory.models import Host, StoragePool, VirtualMachine


class InventoryError(InputError):
    """A request the inventory cannot carry out; the message is meant for people."""


def host_add(*, name: str, uri: str, actor, group: str = "") -> Host:
    """Register a host by name and libvirt URI (no connection yet: a sync follows).

    Admins only (matrix action host.register; management commands act as the system): a
    URI is opened with credentials every hypervisor trusts, so it is allowlisted
    (inventory.libvirt_uri) and stored in its normal form.
    """
    if isinstance(actor, AbstractBaseUser) and not can(actor, "host.register"):
        raise PermissionDenied("Only an admin may register a host (its URI is run as code).")
    name = (name or "").strip()
    if not name:
        raise InventoryError("A host needs a name.")
    if len(name) > 100 or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InventoryError(
            "A host name is one line of at most 100 characters, without control characters."
        )
    if Host.objects.filter(name=name).exists():
        raise InventoryError(f"A host named '{name}' is already registered.")
    try:
        parsed = uri_parse(uri or "")
    except InputError as exc:
        raise InventoryError(str(exc)) from None
    uri, transport = parsed.uri, parsed.transport
    if Host.objects.filter(uri=uri).exists():
        raise InventoryError(f"The URI '{uri}' is already registered as another host.")
    who = as_actor(actor)
    try:
        with transaction.atomic():
            host = Host.objects.create(
                name=name,
                uri=uri,
                transport=transport,
                group=group.strip(),
                registered_by_name=who.name[:150],
            )
            audit_record(
                actor=actor,
                action="host.added",
                obj=host,
                after={"name": name, "uri": uri, "transport": transport, "group": host.group},
            )
    except IntegrityError:
        # Lost a race with a concurrent registration of the same name or URI.
        raise InventoryError(f"A host named '{name}' or with URI '{uri}' already exists.") from None
    return host


def host_update(*, host: Host, actor, state: str | None = None, group: str | None = None) -> Host:
    """Change a host's administrative state or group."""
    with transaction.atomic():
        locked = Host.objects.select_for_update().get(pk=host.pk)
        before = {"state": locked.state, "group": locked.group}
        if state is not None:
            if state not in Host.State.values:
                raise InventoryError(
                    f"'{state}' is not a host state; use one of {', '.join(Host.State.values)}."
                )
            locked.state = state
        if group is not None:
            locked.group = group.strip()
        after = {"state": locked.state, "group": locked.group}
        if after != before:
            locked.save(update_fields=["state", "group"])
            audit_record(actor=actor, action="host.updated", obj=locked, before=before, after=after)
    return locked


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


def vm_measurements_get(*, vm_id: int) -> dict:
    """What the estimate knows of a VM's memory before a move's measurements are stored."""
    return (
        VirtualMachine.objects.filter(pk=vm_id)
        .values("memory_rss_mib", "memory_footprint_mib")
        .first()
        or {}
    )


def vm_record_measurements(*, vm_id: int, measurements: dict) -> None:
    """Store what a completed migration measured on the VM (footprint, setup cost, QEMU
    overhead) for its next estimate.

    Not audited: these are measurements Ferry derives from libvirt's job statistics, not a
    change anyone made; the attempt that measured them keeps them as evidence.
    """
    allowed = {"memory_footprint_mib", "memory_rss_overhead_mib", "migration_setup_s"}
    VirtualMachine.objects.filter(pk=vm_id).update(
        **{k: v for k, v in measurements.items() if k in allowed}
    )


def host_qemu_overhead_record(*, host_id: int, overhead_mib: int, samples: int) -> None:
    """A host's QEMU memory overhead beyond the guest's footprint, learnt from its moves
    (the median the execution code computed over `samples` first moves; not audited, like
    vm_record_measurements)."""
    Host.objects.filter(pk=host_id).update(
        qemu_rss_overhead_mib=overhead_mib, qemu_rss_overhead_samples=samples
    )
