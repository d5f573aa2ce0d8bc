"""Inventory services: registering and changing hosts, and recording what Ferry's moves did
to a VM (its host, its disks' pools, the measurements of the move). Syncing from libvirt
is inventory.sync.
"""

import ipaddress
import re

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from dashboard.audit.record import as_actor, audit_record, lock_for_audit
from dashboard.errors import InputError
from dashboard.permissions import can
from inventory.counts import hosts_vm_count_refresh
from inventory.libvirt_client import uri_parse
from inventory.models import Host, PoolShareProof, StoragePool, VirtualMachine


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


def host_update(
    *,
    host: Host,
    actor,
    state: str | None = None,
    group: str | None = None,
    lock_manager: str | None = None,
    shared_paths: list | None = None,
    migration_address: str | None = None,
    migration_network_address: str | None = None,
    **budgets,
) -> Host:
    """Change a host's administrative state or group, what its qemu.conf declares (its
    lock manager and the directories libvirt treats as shared), where migrations reach it
    (admins only: hypervisors connect to these addresses), or its budgets (max_outbound,
    max_inbound: moves at once across all plans; link_bandwidth_mib_s: its migration link;
    0 clears a budget back to the Ferry-wide default)."""
    addresses = {"migration_address": migration_address}
    addresses["migration_network_address"] = migration_network_address
    addresses = {k: v for k, v in addresses.items() if v is not None}
    if addresses and isinstance(actor, AbstractBaseUser) and not can(actor, "host.register"):
        raise PermissionDenied(
            "Only an admin may set a host's migration addresses (hypervisors connect to them)."
        )
    cleaned = {name: host_address_clean(value, name) for name, value in addresses.items()}
    with transaction.atomic():
        locked = lock_for_audit(Host.objects).get(pk=host.pk)
        fields = (
            "state",
            "group",
            "lock_manager",
            "shared_paths",
            "migration_address",
            "migration_network_address",
            *HOST_BUDGETS,
        )
        before = {name: getattr(locked, name) for name in fields}
        if state is not None:
            if state not in Host.State.values:
                raise InventoryError(
                    f"'{state}' is not a host state; use one of {', '.join(Host.State.values)}."
                )
            locked.state = state
        if group is not None:
            locked.group = group.strip()
        if lock_manager is not None:
            if lock_manager not in Host.LockManager.values:
                raise InventoryError(
                    f"'{lock_manager}' is not a lock manager; use lockd, sanlock, none or ''."
                )
            locked.lock_manager = lock_manager
        if shared_paths is not None:
            locked.shared_paths = _clean_shared_paths(shared_paths)
        for name, value in cleaned.items():
            setattr(locked, name, value)
        _set_budgets(locked, budgets, HOST_BUDGETS)
        after = {name: getattr(locked, name) for name in fields}
        if after != before:
            locked.save(update_fields=list(fields))
            audit_record(actor=actor, action="host.updated", obj=locked, before=before, after=after)
    return locked


# Budget fields and their largest value (0 or None: the Ferry-wide default).
HOST_BUDGETS = {"max_outbound": 64, "max_inbound": 64, "link_bandwidth_mib_s": 1_000_000}
POOL_BUDGETS = {"max_copies": 64}


def _set_budgets(row, budgets: dict, allowed: dict) -> None:
    """Set budget fields on `row`: whole numbers within bounds; 0 or None clears one."""
    for name, value in budgets.items():
        if name not in allowed:
            raise InventoryError(f"'{name}' is not a budget here.")
        if value in (None, 0):
            value = None
        elif (
            isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= allowed[name]
        ):
            raise InventoryError(
                f"{name} is a whole number from 1 to {allowed[name]} (0 clears it)."
            )
        setattr(row, name, value)


def pool_update(*, pool: StoragePool, actor, **budgets) -> StoragePool:
    """Change a storage pool's copy budget (moves copying a disk out of or into it at once,
    across all plans; 0 clears it back to FERRY_POOL_MAX_COPIES)."""
    with transaction.atomic():
        locked = lock_for_audit(StoragePool.objects).get(pk=pool.pk)
        before = {name: getattr(locked, name) for name in POOL_BUDGETS}
        _set_budgets(locked, budgets, POOL_BUDGETS)
        after = {name: getattr(locked, name) for name in POOL_BUDGETS}
        if after != before:
            locked.save(update_fields=list(POOL_BUDGETS))
            audit_record(actor=actor, action="pool.updated", obj=locked, before=before, after=after)
    return locked


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def host_address_clean(value, field: str = "address") -> str:
    """An IP address or DNS host name other hosts can connect to, in normal form ("" clears).

    Only the address: no scheme, port, path or user (Ferry builds the URIs). Loopback,
    unspecified, multicast and link-local addresses are refused: from another host they
    name the wrong machine or none (a link-local IPv6 address needs a zone Ferry cannot
    know for the source)."""
    if not isinstance(value, str):
        raise InventoryError(f"{field} must be text: an IP address or a host name.")
    text = value.strip()
    if not text:
        return ""
    if len(text) > 253:
        raise InventoryError(f"{field}: at most 253 characters.")
    try:
        ip = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_link_local:
            raise InventoryError(
                f"{field}: {ip} is a loopback, unspecified, multicast or link-local address; "
                "give one that other hosts reach this host on."
            )
        return str(ip)
    name = text.rstrip(".").lower()
    labels = name.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels) or name.replace(".", "").isdigit():
        raise InventoryError(
            f"{field}: '{text}' is neither an IP address nor a host name (letters, digits and "
            "hyphens in dot-separated labels; no scheme, port or path)."
        )
    if name == "localhost" or name.endswith(".localhost"):
        raise InventoryError(f"{field}: 'localhost' names every host; give this host's own name.")
    return name


def host_maintenance_enter(*, host: Host, actor, reason: str = "") -> Host:
    """Put a host into maintenance: closed to new placements from now on (every plan and the
    planner see it at once), its VMs still movable away. Audited; idempotent refusal."""
    if isinstance(actor, AbstractBaseUser) and not can(actor, "host.maintenance"):
        raise PermissionDenied("Your role does not allow you to put hosts into maintenance.")
    reason = " ".join((reason or "").split())[:300]
    with transaction.atomic():
        locked = lock_for_audit(Host.objects).get(pk=host.pk)
        if locked.state == Host.State.MAINTENANCE:
            raise InventoryError(f"Host {locked.name} is already in maintenance.")
        if locked.state == Host.State.DISABLED:
            raise InventoryError(f"Host {locked.name} is disabled; enable it first.")
        before = {"state": locked.state}
        locked.state = Host.State.MAINTENANCE
        locked.maintenance_reason = reason
        locked.maintenance_since = timezone.now()
        locked.maintenance_by = as_actor(actor).name[:150]
        locked.save(
            update_fields=["state", "maintenance_reason", "maintenance_since", "maintenance_by"]
        )
        audit_record(
            actor=actor,
            action="host.maintenance_entered",
            obj=locked,
            before=before,
            after={"state": locked.state},
            reason=reason,
        )
    return locked


def host_maintenance_exit(*, host: Host, actor, reason: str = "") -> Host:
    """Take a host out of maintenance: it receives VMs again. Audited."""
    if isinstance(actor, AbstractBaseUser) and not can(actor, "host.maintenance"):
        raise PermissionDenied("Your role does not allow you to take hosts out of maintenance.")
    reason = " ".join((reason or "").split())[:300]
    with transaction.atomic():
        locked = lock_for_audit(Host.objects).get(pk=host.pk)
        if locked.state != Host.State.MAINTENANCE:
            raise InventoryError(f"Host {locked.name} is not in maintenance.")
        since = locked.maintenance_since
        locked.state = Host.State.ACTIVE
        locked.maintenance_reason = ""
        locked.maintenance_since = None
        locked.maintenance_by = ""
        locked.save(
            update_fields=["state", "maintenance_reason", "maintenance_since", "maintenance_by"]
        )
        audit_record(
            actor=actor,
            action="host.maintenance_exited",
            obj=locked,
            before={"state": Host.State.MAINTENANCE, "since": since},
            after={"state": locked.state},
            reason=reason,
        )
    return locked


def _clean_shared_paths(paths) -> list[str]:
    """Absolute, normalised directories (qemu.conf's shared_filesystems takes such)."""
    if not isinstance(paths, list) or len(paths) > 20:
        raise InventoryError("shared_paths is a list of at most 20 directories.")
    out = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/") or len(path) > 500:
            raise InventoryError(f"{path!r} is not an absolute directory path.")
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts) or any(c in path for c in "\n\r\0"):
            raise InventoryError(f"{path!r} is not a plain directory path.")
        out.append("/" + "/".join(parts))
    return sorted(set(out))


def vm_record_move(
    *, vm: VirtualMachine, host: Host, disk_pools: dict, actor, reason: str = ""
) -> VirtualMachine:
    """Record that a VM now runs on `host` and that disks {target: pool id} moved pools."""
    with transaction.atomic():
        locked = lock_for_audit(VirtualMachine.objects).get(pk=vm.pk)
        locked_host_before = locked.host_id
        before = {
            "host": locked.host.name if locked.host_id else None,
            "disks": {d.target: d.pool.name if d.pool else None for d in locked.disks.all()},
        }
        locked.host = host
        locked.missing = False
        locked.missing_since = None
        locked.last_seen_at = timezone.now()
        locked.save(update_fields=["host", "missing", "missing_since", "last_seen_at"])
        hosts_vm_count_refresh({locked_host_before, host.pk})
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
        .values(
            "memory_mib",
            "memory_rss_mib",
            "memory_footprint_mib",
            "memory_rss_overhead_mib",
            "dirty_rate_mib_s",
        )
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
        **{k: v for k, v in measurements.items() if k in allowed},
        migration_measured_at=timezone.now(),
    )


def host_qemu_overhead_record(*, host_id: int, overhead_mib: int, samples: int) -> None:
    """A host's QEMU memory overhead beyond the guest's footprint, learnt from its moves
    (the median the execution code computed over `samples` first moves; not audited, like
    vm_record_measurements)."""
    Host.objects.filter(pk=host_id).update(
        qemu_rss_overhead_mib=overhead_mib, qemu_rss_overhead_samples=samples
    )


def host_link_fit_record(*, host_ids: tuple, fit: dict) -> None:
    """Keep the estimate's inputs fitted on the moves between two hosts on both of them
    (each under the other's id), not audited like vm_record_measurements.

    The rows are locked in id order so two moves finishing at once between the same hosts
    cannot lose one another's key (each rewrites the whole JSON of a host)."""
    first, second = sorted(host_ids)
    with transaction.atomic():
        hosts = {
            h.pk: h
            for h in Host.objects.select_for_update(no_key=True).filter(pk__in=(first, second))
        }
        for host_id, peer in ((first, second), (second, first)):
            host = hosts.get(host_id)
            if host is None:
                continue
            fits = dict(host.link_fits or {})
            fits[str(peer)] = fit
            Host.objects.filter(pk=host_id).update(link_fits=fits)


def pool_share_proof_get(*, pool: StoragePool, host_a: Host, host_b: Host, max_age_s: float):
    """The recorded proof for a pool between two hosts, when younger than `max_age_s`."""
    first, second = sorted((host_a, host_b), key=lambda h: h.pk)
    proof = PoolShareProof.objects.filter(pool=pool, host_a=first, host_b=second).first()
    if proof is None or (timezone.now() - proof.proven_at).total_seconds() > max_age_s:
        return None
    return proof


def pool_share_proof_record(
    *, pool: StoragePool, host_a: Host, host_b: Host, shared: bool, evidence: dict, actor
) -> PoolShareProof:
    """Record what a probe found (replacing an older proof), with its audit event."""
    first, second = sorted((host_a, host_b), key=lambda h: h.pk)
    with transaction.atomic():
        proof, _ = PoolShareProof.objects.update_or_create(
            pool=pool,
            host_a=first,
            host_b=second,
            defaults={"shared": shared, "proven_at": timezone.now(), "evidence": evidence},
        )
        audit_record(
            actor=actor,
            action="pool.share_proven" if shared else "pool.share_disproven",
            obj=pool,
            after={"hosts": [first.name, second.name], "shared": shared, **evidence},
        )
    return proof
