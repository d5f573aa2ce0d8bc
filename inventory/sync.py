"""Syncing the inventory from libvirt: a whole host, or one VM and a host's capacity.

A sync reads the whole host first (no transaction open while libvirt answers), then writes
everything in one transaction with its audit event, so the inventory is never half-written.
"""

import logging
from dataclasses import dataclass, field

import libvirt
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import audit_record, lock_for_audit
from inventory.counts import hosts_vm_count_refresh
from inventory.libvirt_client import HostUnreachable, open_connection
from inventory.libvirt_read import (
    HostFacts,
    PoolFacts,
    read_capacity,
    read_domain,
    read_domain_states,
    read_host,
    read_load,
)
from inventory.load import load_record, measurable
from inventory.models import (
    Host,
    Network,
    StoragePool,
    VirtualDisk,
    VirtualMachine,
    VirtualNIC,
)
from inventory.xmlparse import UnsafeXML

logger = logging.getLogger("ferry.inventory")

# Directory-like pools that several hosts can mount at the same path (a cluster file
# system, or the lab's shared directory). libvirt cannot tell whether they are shared;
# Ferry treats them as one shared pool when hosts report the same pool UUID and path.
_PATH_POOL_TYPES = {"dir", "fs"}

_HOST_FACT_FIELDS = (
    "hostname",
    "host_uuid",
    "hypervisor_type",
    "hypervisor_version",
    "libvirt_version",
    "arch",
    "cpu_vendor",
    "cpu_model",
    "cpu_features",
    "cpu_xml",
    "cpu_sockets",
    "cpu_cores",
    "cpu_threads",
    "cpus",
    "memory_total_mib",
    "memory_free_mib",
    "machine_types",
    "domain_types",
    "migration_address",
)
_VM_FACT_FIELDS = (
    "name",
    "state",
    "vcpus",
    "memory_mib",
    "max_memory_mib",
    "cpu_mode",
    "cpu_model",
    "cpu_features",
    "machine_type",
    "arch",
    "domain_type",
    "persistent",
    "autostart",
    "hostdevs",
    "xml",
)


@dataclass
class SyncResult:
    """What one sync found and changed."""

    ok: bool
    error: str = ""
    vms_created: list[str] = field(default_factory=list)
    vms_updated: list[str] = field(default_factory=list)
    vms_moved: list[str] = field(default_factory=list)
    vms_missing: list[str] = field(default_factory=list)
    vms_unchanged: int = 0
    pools: int = 0
    networks: int = 0
    host_fields_changed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.vms_created
            or self.vms_updated
            or self.vms_moved
            or self.vms_missing
            or self.host_fields_changed
        )

    def summary(self) -> dict:
        return {
            "ok": self.ok,
            "error": self.error,
            "vms_created": self.vms_created,
            "vms_updated": self.vms_updated,
            "vms_moved": self.vms_moved,
            "vms_missing": self.vms_missing,
            "vms_unchanged": self.vms_unchanged,
            "pools": self.pools,
            "networks": self.networks,
            "host_fields_changed": self.host_fields_changed,
        }


def host_sync(*, host: Host, actor=None) -> SyncResult:
    """Read the host through libvirt and bring the inventory in line with it."""
    timeout = settings.LIBVIRT_CONNECT_TIMEOUT
    load = None
    try:
        conn = open_connection(host.uri, timeout)
        try:
            facts = read_host(conn)
            load = _read_load_quietly(host, conn)
        finally:
            conn.close()
    except HostUnreachable as exc:
        return _record_sync_failure(host, actor, exc.reason, exc.detail, unreachable=True)
    except libvirt.libvirtError as exc:
        detail = f"libvirt error: {exc.get_error_message()}"
        return _record_sync_failure(host, actor, "libvirt error while reading the host", detail)
    except UnsafeXML as exc:
        detail = f"Host sent XML Ferry refuses to read: {exc}"
        return _record_sync_failure(host, actor, "the host sent XML Ferry refuses to read", detail)
    result = _apply_facts(host, facts, actor)
    if load is not None:
        # After the facts: a VM the sync just created is in the inventory to be sampled.
        load_record(host=host, facts=load)
    return result


def _read_load_quietly(host: Host, conn):
    """The host's measured load on the sync's connection (inventory.load); a host that
    cannot report it still syncs."""
    if not measurable(host):
        return None
    try:
        return read_load(conn)
    except libvirt.libvirtError as exc:
        logger.info("load statistics of %s unavailable: %s", host.name, exc)
        return None


def vm_refresh(*, vm: VirtualMachine, conn, actor=None) -> str:
    """Re-read one VM's domain on its host, on a connection the caller already holds.

    Before a move this replaces a whole sync of the source (every domain, every volume):
    state, CPU, memory and touched memory of this one VM. When its disks or NICs changed
    (a partial read could attribute them to the wrong pool or network) the whole host is
    synced instead.
    """
    dom = conn.lookupByUUIDString(str(vm.uuid))
    facts = read_domain(dom)
    stored_disks = {(d.target, d.source) for d in vm.disks.all()}
    stored_nics = {(n.mac, n.network_name, n.bridge) for n in vm.nics.all()}
    if (
        {(d.target, d.source) for d in facts.disks} != stored_disks
        or {(n.mac, n.network_name, n.bridge) for n in facts.nics} != stored_nics
        or vm.host is None
    ):
        if vm.host is not None:
            host_sync(host=vm.host, actor=actor)
        return "host synced (devices changed)"
    values = {name: getattr(facts, name) for name in _VM_FACT_FIELDS}
    if facts.rss_mib is not None:
        values["memory_rss_mib"] = facts.rss_mib
    with transaction.atomic():
        locked = lock_for_audit(VirtualMachine.objects).get(pk=vm.pk)
        before = {name: getattr(locked, name) for name in values if name != "xml"}
        changed = _set_changed(locked, values)
        locked.last_seen_at = timezone.now()
        locked.save()
        audited = [c for c in changed if c not in ("xml", "memory_rss_mib")]
        if audited:
            audit_record(
                actor=actor,
                action="vm.synced",
                obj=locked,
                before={c: before[c] for c in audited},
                after={c: getattr(locked, c) for c in audited},
                reason="re-read before a move",
            )
    return "refreshed"


def host_capacity_refresh(*, host: Host, conn, actor=None) -> str:
    """Free memory and pool space of a host, or a whole sync if its domains changed.

    Before a move this replaces a whole sync of the destination. Its residents count for
    capacity and anti-affinity, so when the set of domains (or their states) differs from
    the inventory the whole host is synced.
    """
    live = read_domain_states(conn)
    stored = host.vms.filter(missing=False).values_list("uuid", "state")
    if {str(uuid): state for uuid, state in stored} != live:
        host_sync(host=host, actor=actor)
        return "host synced (its domains changed)"
    memory, pools = read_capacity(conn, {pool.name: pool.pk for pool in host.storage_pools.all()})
    values = dict(memory)
    with transaction.atomic():
        Host.objects.filter(pk=host.pk).update(**values)
        for pk, (capacity, allocation, available) in pools.items():
            StoragePool.objects.filter(pk=pk).update(
                capacity_bytes=capacity, allocation_bytes=allocation, available_bytes=available
            )
    return "refreshed"


def _record_sync_failure(
    host: Host, actor, message: str, detail: str = "", unreachable: bool = False
) -> SyncResult:
    # Only the classified `message` goes into the audit chain (append-only: it can never be
    # scrubbed) and to every role; libvirt's `detail` may quote files, addresses and
    # certificate names, so it stays on the host row for admins and in the server log.
    with transaction.atomic():
        locked = lock_for_audit(Host.objects).get(pk=host.pk)
        before = {"state": locked.state, "last_sync_error": locked.last_sync_error}
        locked.last_sync_at = timezone.now()
        locked.last_sync_error = message
        locked.last_sync_error_detail = detail
        if unreachable and locked.state == Host.State.ACTIVE:
            locked.state = Host.State.UNREACHABLE
        locked.save(
            update_fields=["last_sync_at", "last_sync_error", "last_sync_error_detail", "state"]
        )
        audit_record(
            actor=actor,
            action="host.sync_failed",
            obj=locked,
            before=before,
            after={"state": locked.state, "last_sync_error": message},
        )
    logger.warning("sync of host #%s failed: %s (%s)", host.pk, message, detail)
    return SyncResult(ok=False, error=message)


def _pool_identity(host: Host, facts: HostFacts, pool: PoolFacts) -> tuple[str, bool]:
    if pool.identity_source:
        return pool.identity_source, True
    if pool.pool_type in _PATH_POOL_TYPES and pool.uuid:
        return f"path:{pool.uuid}:{pool.target_path}", False
    host_key = facts.host_uuid or f"host-{host.pk}"
    return f"local:{host_key}:{pool.uuid or pool.name}", False


def _set_changed(obj, values: dict) -> list[str]:
    changed = []
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed


def _apply_facts(host: Host, facts: HostFacts, actor) -> SyncResult:
    result = SyncResult(ok=True, pools=len(facts.pools), networks=len(facts.networks))
    now = timezone.now()
    with transaction.atomic():
        host = lock_for_audit(Host.objects).get(pk=host.pk)
        values = {name: getattr(facts, name) for name in _HOST_FACT_FIELDS}
        if host.migration_address:
            # Sync only fills an empty peer address from the URI's host: an address set by
            # an administrator (host_update) stays.
            values.pop("migration_address")
        # Free memory moves on every sync; only count it as a change worth auditing when
        # something else changed too.
        result.host_fields_changed = [
            f for f in _set_changed(host, values) if f != "memory_free_mib"
        ]
        previous_state = host.state
        if host.state == Host.State.UNREACHABLE:
            host.state = Host.State.ACTIVE
            result.host_fields_changed.append("state")
        host.last_sync_at = now
        host.last_sync_error = ""
        host.last_sync_error_detail = ""
        host.save()

        pools_by_name = _sync_pools(host, facts)
        networks_by_name = _sync_networks(host, facts)
        volumes = {}
        for pool_facts in facts.pools:
            for path, volume in pool_facts.volumes.items():
                volumes[path] = (pools_by_name[pool_facts.name], volume)
        moved_from = _sync_domains(
            host, facts, pools_by_name, networks_by_name, volumes, result, now, actor
        )
        hosts_vm_count_refresh({host.pk, *moved_from})

        audit_record(
            actor=actor,
            action="host.synced",
            obj=host,
            before={"state": previous_state},
            after=result.summary(),
        )
    return result


def _sync_pools(host: Host, facts: HostFacts) -> dict[str, StoragePool]:
    by_name = {}
    for pool_facts in facts.pools:
        identity, network_shared = _pool_identity(host, facts, pool_facts)
        pool, _ = StoragePool.objects.get_or_create(
            identity=identity,
            defaults={"name": pool_facts.name, "pool_type": pool_facts.pool_type},
        )
        values = {
            "name": pool_facts.name,
            "pool_type": pool_facts.pool_type,
            "uuid": pool_facts.uuid,
            "target_path": pool_facts.target_path,
            "source": pool_facts.source,
            "capacity_bytes": pool_facts.capacity_bytes,
            "allocation_bytes": pool_facts.allocation_bytes,
            "available_bytes": pool_facts.available_bytes,
            "active": pool_facts.active,
        }
        if _set_changed(pool, values):
            pool.save()
        pool.hosts.add(host)
        shared = network_shared or pool.hosts.count() > 1
        if pool.shared != shared:
            pool.shared = shared
            pool.save(update_fields=["shared"])
        by_name[pool_facts.name] = pool
    seen = {p.pk for p in by_name.values()}
    for gone in host.storage_pools.exclude(pk__in=seen):
        gone.hosts.remove(host)
        if (
            gone.shared
            and gone.hosts.count() <= 1
            and not gone.identity.startswith(
                tuple(f"{t}:" for t in ("netfs", "rbd", "iscsi", "iscsi-direct", "gluster"))
            )
        ):
            gone.shared = False
            gone.save(update_fields=["shared"])
    return by_name


def _sync_networks(host: Host, facts: HostFacts) -> dict[str, Network]:
    by_name = {}
    for net in facts.networks:
        network, _ = Network.objects.get_or_create(name=net.name)
        if _set_changed(
            network, {"bridge": net.bridge, "vlan": net.vlan, "forward_mode": net.forward_mode}
        ):
            network.save()
        network.hosts.add(host)
        by_name[net.name] = network
    host.networks.remove(*host.networks.exclude(pk__in=[n.pk for n in by_name.values()]))
    return by_name


def _sync_domains(host, facts, pools_by_name, networks_by_name, volumes, result, now, actor):
    """Create, update and mark missing this host's VMs; returns the ids of the hosts VMs
    were found to have moved from (their VM counts change too)."""
    moved_from: set = set()
    uuids = [d.uuid for d in facts.domains]
    existing = {
        str(vm.uuid): vm
        for vm in VirtualMachine.objects.filter(uuid__in=uuids).select_related("host")
    }
    disks_by_vm: dict[int, dict[str, VirtualDisk]] = {}
    nics_by_vm: dict[int, dict[str, VirtualNIC]] = {}
    for disk in VirtualDisk.objects.filter(vm__uuid__in=uuids):
        disks_by_vm.setdefault(disk.vm_id, {})[disk.target] = disk
    for nic in VirtualNIC.objects.filter(vm__uuid__in=uuids):
        nics_by_vm.setdefault(nic.vm_id, {})[nic.mac] = nic

    for dom in facts.domains:
        vm = existing.get(dom.uuid)
        values = {name: getattr(dom, name) for name in _VM_FACT_FIELDS}
        values["tags"] = dom.tags
        if dom.rss_mib is not None:
            values["memory_rss_mib"] = dom.rss_mib
        if dom.owner:
            values["owner"] = dom.owner
        if dom.criticality in VirtualMachine.Criticality.values:
            values["criticality"] = dom.criticality
        if vm is None:
            vm = VirtualMachine.objects.create(uuid=dom.uuid, host=host, last_seen_at=now, **values)
            result.vms_created.append(dom.name)
        else:
            elsewhere = vm.host_id is not None and vm.host_id != host.pk
            if (
                elsewhere
                and not vm.missing
                and vm.state in ("running", "paused")
                and dom.state not in ("running", "paused")
            ):
                # An inactive leftover definition (e.g. the source after a migration that
                # kept it) must not pull a running VM back to this host.
                continue
            changed = _set_changed(vm, values)
            if elsewhere:
                moved_from.add(vm.host_id)
                old_host = vm.host.name if vm.host else "?"
                vm.host = host
                changed.append("host")
                result.vms_moved.append(dom.name)
                audit_record(
                    actor=actor,
                    action="vm.moved",
                    obj=vm,
                    before={"host": old_host},
                    after={"host": host.name},
                    reason="found on another host during sync",
                )
            if vm.missing:
                vm.missing = False
                vm.missing_since = None
                changed.append("missing")
            vm.last_seen_at = now
            vm.save()
            if changed and dom.name not in result.vms_moved:
                result.vms_updated.append(dom.name)
            elif not changed:
                result.vms_unchanged += 1
        _sync_disks(vm, dom, disks_by_vm.get(vm.pk, {}), pools_by_name, volumes, result)
        _sync_nics(vm, dom, nics_by_vm.get(vm.pk, {}), networks_by_name, result)

    gone = host.vms.filter(missing=False).exclude(uuid__in=uuids)
    for vm in gone:
        vm.missing = True
        vm.missing_since = now
        vm.save(update_fields=["missing", "missing_since"])
        result.vms_missing.append(vm.name)
        audit_record(
            actor=actor,
            action="vm.missing",
            obj=vm,
            after={"host": host.name},
            reason="not seen on its host during sync; kept, not deleted",
        )
    return moved_from


def _disk_pool(disk, pools_by_name, volumes):
    if disk.source_type == "volume":
        return pools_by_name.get(disk.pool_name), None
    found = volumes.get(disk.source)
    if found:
        return found
    # Not a known volume: attribute it to the pool whose directory holds the file.
    for pool in pools_by_name.values():
        if pool.target_path and disk.source.startswith(pool.target_path.rstrip("/") + "/"):
            return pool, None
    return None, None


def _sync_disks(vm, dom, current, pools_by_name, volumes, result):
    seen = set()
    for disk in dom.disks:
        seen.add(disk.target)
        pool, volume = _disk_pool(disk, pools_by_name, volumes)
        values = {
            "bus": disk.bus,
            "device": disk.device,
            "source_type": disk.source_type,
            "source": disk.source,
            "pool": pool,
            "volume": disk.volume or (volume or {}).get("name", ""),
            "format": disk.format or (volume or {}).get("format", ""),
            "capacity_bytes": (volume or {}).get("capacity"),
            "allocation_bytes": (volume or {}).get("allocation"),
            "shareable": disk.shareable,
            "readonly": disk.readonly,
        }
        row = current.get(disk.target)
        if row is None:
            VirtualDisk.objects.create(vm=vm, target=disk.target, **values)
            _note_update(vm, result)
        elif _set_changed(row, values):
            row.save()
            _note_update(vm, result)
    stale = [t for t in current if t not in seen]
    if stale:
        VirtualDisk.objects.filter(vm=vm, target__in=stale).delete()
        _note_update(vm, result)


def _sync_nics(vm, dom, current, networks_by_name, result):
    seen = set()
    for nic in dom.nics:
        seen.add(nic.mac)
        network = networks_by_name.get(nic.network_name) if nic.network_name else None
        values = {
            "model": nic.model,
            "source_type": nic.source_type,
            "network": network,
            "network_name": nic.network_name,
            "bridge": nic.bridge or (network.bridge if network else ""),
            "vlan": nic.vlan if nic.vlan is not None else (network.vlan if network else None),
        }
        row = current.get(nic.mac)
        if row is None:
            VirtualNIC.objects.create(vm=vm, mac=nic.mac, **values)
            _note_update(vm, result)
        elif _set_changed(row, values):
            row.save()
            _note_update(vm, result)
    stale = [m for m in current if m not in seen]
    if stale:
        VirtualNIC.objects.filter(vm=vm, mac__in=stale).delete()
        _note_update(vm, result)


def _note_update(vm, result):
    if vm.name in result.vms_created or vm.name in result.vms_moved:
        return
    if vm.name not in result.vms_updated:
        result.vms_updated.append(vm.name)
        if result.vms_unchanged:
            result.vms_unchanged -= 1
