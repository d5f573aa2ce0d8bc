"""Storage checks: do the disks stay reachable, is there room where they are copied, and are
there devices that cannot follow the VM."""

from migrations_app.checks.base import BLOCKER, INFO, WARNING, Finding, ok
from migrations_app.checks.storage_paths import copied_disks

GIB = 1024**3


def _pool_name(ctx, pool_id) -> str:
    pool = ctx.snapshot.pools.get(pool_id)
    return pool.name if pool else "no known pool"


def check_storage_shared(ctx, item, dest) -> Finding:
    """storage.shared: every disk is on a pool the destination reaches, or will be copied."""
    snapshot = ctx.snapshot
    copies = copied_disks(snapshot, item, dest)
    reach_host = item.source_id if item.storage_only else dest.id
    disks = [
        {"disk": d.target, "pool": _pool_name(ctx, d.pool_id), "source": d.source}
        for d in item.vm.disks
        if d.device in ("disk", "lun")
    ]
    evidence = {
        "mode": item.mode,
        "disks": disks,
        "copies": [
            {
                "disk": d.target,
                "from_pool": _pool_name(ctx, d.pool_id),
                "to_pool": _pool_name(ctx, t) if t is not None else None,
                "gib": round(d.copy_bytes / GIB, 2),
            }
            for d, t in copies
        ],
    }
    if item.storage_only and not copies:
        return Finding(
            "storage.shared",
            BLOCKER,
            f"Storage-only move of {item.vm.name} maps none of its disks' pools.",
            "Set the item's storage map: source pool → destination pool.",
            evidence,
        )
    if not copies:
        return ok(
            "storage.shared",
            f"Every disk of {item.vm.name} is on storage {dest.name} already reaches.",
            **evidence,
        )
    names = ", ".join(f"{d.target} ({_pool_name(ctx, d.pool_id)})" for d, _ in copies)
    lookalike = [
        d.target
        for d, _ in copies
        if d.pool_id in snapshot.pools and dest.id in snapshot.pools[d.pool_id].host_ids
    ]
    if item.mode == "live" and lookalike:
        return Finding(
            "storage.shared",
            BLOCKER,
            f"The pool of disk(s) {', '.join(lookalike)} of {item.vm.name} has the same UUID "
            f"and path on both hosts, but a probe found that {dest.name} does not see the "
            "files written on the source: it is not shared storage.",
            "Move the VM with its disks (mode 'live with storage copy'), or put the disks on "
            "storage both hosts really share.",
            evidence,
        )
    if item.mode == "live":
        return Finding(
            "storage.shared",
            BLOCKER,
            f"{dest.name} cannot reach disk(s) {names} of {item.vm.name}; a plain live "
            "migration needs shared storage.",
            "Set the item's mode to 'live with storage copy', or choose a destination on "
            "the same shared storage.",
            evidence,
        )
    unmapped = [d.target for d, t in copies if t is None]
    if unmapped:
        return Finding(
            "storage.shared",
            BLOCKER,
            f"No target pool for disk(s) {', '.join(unmapped)} of {item.vm.name}: "
            f"{dest.name} has no pool of the same name.",
            "Set the item's storage map (source pool → a pool on the destination).",
            evidence,
        )
    unreachable = [
        d.target
        for d, t in copies
        if t not in snapshot.pools or reach_host not in snapshot.pools[t].host_ids
    ]
    if unreachable:
        host_name = snapshot.hosts[reach_host].name if reach_host in snapshot.hosts else "?"
        return Finding(
            "storage.shared",
            BLOCKER,
            f"The target pool of disk(s) {', '.join(unreachable)} is not reachable from "
            f"{host_name}.",
            f"Map the disks to a pool {host_name} reaches.",
            evidence,
        )
    total = sum(d.copy_bytes for d, _ in copies) / GIB
    return Finding(
        "storage.shared",
        INFO,
        f"{len(copies)} disk(s) of {item.vm.name} ({total:.1f} GiB) will be copied: {names}.",
        "",
        evidence,
    )


def check_storage_capacity(ctx, item, dest) -> Finding:
    """storage.capacity: the target pools have room for every copied disk (and the plan's
    other copies into them)."""
    copies = [(d, t) for d, t in copied_disks(ctx.snapshot, item, dest) if t is not None]
    if not copies:
        return ok("storage.capacity", "No disk is copied.")
    need: dict = {}
    virtual: dict = {}
    for disk, target in copies:
        need[target] = need.get(target, 0) + disk.copy_bytes
        virtual[target] = virtual.get(target, 0) + (disk.capacity_bytes or disk.copy_bytes)
    rows = []
    worst = None
    for target in sorted(need):
        pool = ctx.snapshot.pools.get(target)
        already = ctx.ledger.pool_copy[target]
        available = pool.available_bytes if pool else None
        rows.append(
            {
                "pool": pool.name if pool else str(target),
                "copy_gib": round(need[target] / GIB, 2),
                "virtual_gib": round(virtual[target] / GIB, 2),
                "already_copied_by_plan_gib": round(already / GIB, 2),
                "available_gib": round(available / GIB, 2) if available is not None else None,
            }
        )
        if available is None:
            worst = worst or ("unknown", rows[-1])
        elif need[target] + already > available:
            worst = ("full", rows[-1])
            break
        elif virtual[target] + already > available and (worst is None or worst[0] != "full"):
            worst = ("thin", rows[-1])
    evidence = {"pools": rows}
    if worst is None:
        return ok(
            "storage.capacity", "The target pools have room for the copied disks.", **evidence
        )
    kind, row = worst
    if kind == "full":
        return Finding(
            "storage.capacity",
            BLOCKER,
            f"Pool {row['pool']} has {row['available_gib']} GiB free but {item.vm.name} needs "
            f"{row['copy_gib']} GiB there (plus {row['already_copied_by_plan_gib']} GiB this "
            "plan already copies into it).",
            "Map the disks to a pool with more room, or free space in that pool.",
            evidence,
        )
    if kind == "thin":
        return Finding(
            "storage.capacity",
            WARNING,
            f"Pool {row['pool']} holds the copied data now, but not the disks' full virtual "
            f"size ({row['virtual_gib']} GiB) if the guest fills them.",
            "Fine for thin-provisioned pools you watch; otherwise pick a larger pool.",
            evidence,
        )
    return Finding(
        "storage.capacity",
        WARNING,
        f"The free space of pool {row['pool']} is unknown.",
        "Sync the destination host so the pool's size is known.",
        evidence,
    )


def check_storage_devices(ctx, item, dest) -> Finding:
    """storage.devices: local ISOs, raw host block devices and shareable disks."""
    pools = ctx.snapshot.pools
    problems, notes = [], []
    for disk in item.vm.disks:
        pool = pools.get(disk.pool_id)
        shared = bool(pool and pool.shared)
        if disk.device in ("cdrom", "floppy") and disk.source and not shared:
            notes.append(
                f"{disk.device} {disk.target} uses {disk.source}, which must exist at the "
                "same path on the destination"
            )
        elif disk.source_type == "block" and not shared:
            problems.append(f"{disk.target} is a raw host block device ({disk.source})")
        elif disk.shareable and not shared:
            problems.append(f"{disk.target} is a shareable disk on storage that is not shared")
        elif disk.shareable:
            notes.append(f"{disk.target} is shareable: other VMs use it during the move")
    evidence = {
        "disks": [
            {
                "disk": d.target,
                "device": d.device,
                "type": d.source_type,
                "source": d.source,
                "shareable": d.shareable,
                "readonly": d.readonly,
                "pool": pools[d.pool_id].name if d.pool_id in pools else None,
            }
            for d in item.vm.disks
        ]
    }
    if problems:
        return Finding(
            "storage.devices",
            BLOCKER,
            f"{item.vm.name}: {'; '.join(problems)}.",
            "Move the data to a pool (or shared storage) first, or detach the device.",
            evidence,
        )
    if notes:
        return Finding(
            "storage.devices",
            WARNING,
            f"{item.vm.name}: {'; '.join(notes)}.",
            "Eject the media before the move, or make sure the file exists on the destination.",
            evidence,
        )
    return ok(
        "storage.devices", "No local media, raw block devices or shareable disks.", **evidence
    )
