"""The "balance group G" service: a draft plan of the moves that bring the group's hosts
within a target spread, from measured load, under every check and placement rule.

1. The group's snapshot (`group_snapshot`): one item per VM on the group's hosts, no
   destination, read in a constant number of queries like a plan's; the enabled
   placement rules come with it.
2. The load: averages of the measured samples over FERRY_LOAD_WINDOW_MINUTES
   (inventory.load); a VM or host without samples falls back to rss at the last sync,
   then to its allocation, and the result counts which source each figure came from.
3. The planner (migrations_app.balance) chooses the moves; they become the plan's items in
   its order, each with its reason in the item's placement note, and the planner's whole
   answer (spread before and after, why the target was not reached) is kept as a
   BalanceRun for the plan page.

The plan then goes through the same validation, approval and execution as any plan.
"""

from django.conf import settings
from django.db import transaction

from dashboard.audit.record import as_actor, audit_record
from inventory.load import load_averages
from inventory.models import StoragePool, VirtualDisk, VirtualMachine, VirtualNIC
from migrations_app.balance import HostLoad, VmLoad, balance_group
from migrations_app.checks.snapshot import (
    VM_FIELDS,
    ItemInfo,
    Snapshot,
    attach_devices,
    snapshot_around,
    vm_info,
)
from migrations_app.errors import PlanStateError
from migrations_app.models import BalanceRun, MigrationPlan, PlanItem
from migrations_app.services.item_input import resolve_group
from migrations_app.services.plan_edits import (
    plan_content_changed,
    plan_lock,
    plan_require_editable,
)
from migrations_app.services.plans import plan_create

MAX_TARGET_PCT = 100.0


def group_snapshot(plan: MigrationPlan, group: str, *, storage_copy: bool = False) -> Snapshot:
    """The planner's input: every VM of the group's hosts as an item without destination.

    Items move live; a VM with a disk on a pool that is not shared moves with a storage
    copy only when `storage_copy` is set (otherwise the storage check pins it, and the
    plan says so).
    """
    rows = VirtualMachine.objects.filter(host__group=group).order_by("name", "id")
    vms = {row["id"]: vm_info(row) for row in rows.values(*VM_FIELDS)}
    attach_devices(
        vms,
        VirtualDisk.objects.filter(vm__host__group=group),
        VirtualNIC.objects.filter(vm__host__group=group),
    )
    shared = set(StoragePool.objects.filter(shared=True).values_list("pk", flat=True))
    policy = plan.get_policy()
    items = []
    for position, vm in enumerate(vms.values()):
        local = any(d.device in ("disk", "lun") and d.pool_id not in shared for d in vm.disks)
        items.append(
            ItemInfo(
                id=vm.id,  # no item exists yet: the VM's id stands for it
                position=position,
                vm=vm,
                source_id=vm.host_id,
                destination_id=None,
                mode=PlanItem.Mode.LIVE_COPY if local and storage_copy else PlanItem.Mode.LIVE,
                storage_map={},
                network_map={},
                policy=policy,
                status="pending",
            )
        )
    return snapshot_around(plan, policy, items, vm_ids=vms)


def measured_loads(snapshot: Snapshot, group: str) -> tuple[dict, dict]:
    """VmLoad / HostLoad per id from the measured averages (VMs or hosts without a
    sample in the window are left out: the planner falls back and says so)."""
    host_ids = [h.id for h in snapshot.hosts.values() if h.group == group]
    vm_avg, host_avg = load_averages(vm_ids=[i.vm.id for i in snapshot.items], host_ids=host_ids)
    vm_loads = {
        vm_id: VmLoad(cpu_cores=a["cpu_cores"], memory_used_mib=a["memory_used_mib"])
        for vm_id, a in vm_avg.items()
    }
    host_loads = {
        host_id: HostLoad(cpu_cores=a["cpu_cores"], memory_used_mib=a["memory_used_mib"])
        for host_id, a in host_avg.items()
    }
    return vm_loads, host_loads


def _note(move, group: str, target_pct: float) -> dict:
    return {
        "strategy": "balance",
        "group": group,
        "target_pct": target_pct,
        "chosen": move.destination,
        "reason": move.reason,
        "rule": move.rule,
        "improves": move.improves,
        "memory_used_mib": move.memory_used_mib,
        "memory_source": move.memory_source,
        "cpu_cores": move.cpu_cores,
        "cpu_source": move.cpu_source,
        "spread_before_pts": move.spread_before_pts,
        "spread_after_pts": move.spread_after_pts,
        "passed_over": move.passed_over,
    }


def plan_balance(
    *,
    plan: MigrationPlan,
    actor,
    group: str,
    target_pct: float = 10.0,
    max_moves: int | None = None,
    max_moved_mib: int | None = None,
    storage_copy: bool = False,
) -> BalanceRun:
    """Fill an empty editable plan with the moves that balance `group` (see the module)."""
    with transaction.atomic():
        plan = plan_lock(plan)
        plan_require_editable(plan)
        if PlanItem.objects.filter(plan=plan).exists():
            raise PlanStateError(
                f"Plan '{plan.name}' already has items: balancing builds the whole plan, so "
                "start from an empty draft (or remove the items first)."
            )
        group = resolve_group(group, actor)
        snapshot = group_snapshot(plan, group, storage_copy=storage_copy)
        vm_loads, host_loads = measured_loads(snapshot, group)
        result = balance_group(
            snapshot,
            group=group,
            target_pct=target_pct,
            max_moves=max_moves,
            max_moved_mib=max_moved_mib,
            rules=snapshot.rules,
            vm_loads=vm_loads,
            host_loads=host_loads,
        )
        modes = {item.vm.id: item.mode for item in snapshot.items}
        PlanItem.objects.bulk_create(
            [
                PlanItem(
                    plan=plan,
                    vm_id=move.vm_id,
                    source_host_id=move.source_id,
                    destination_host_id=move.destination_id,
                    destination_chosen_by="balance",
                    mode=modes[move.vm_id],
                    position=move.position - 1,
                    placement_note=_note(move, group, result.target_pct),
                )
                for move in result.moves
            ],
            batch_size=500,
        )
        run = BalanceRun.objects.create(
            plan=plan,
            group=group,
            target_pct=result.target_pct,
            max_moves=max_moves,
            max_moved_mib=max_moved_mib,
            reached=result.reached,
            moves=len(result.moves),
            memory_moved_mib=result.memory_moved_mib,
            load_window_minutes=settings.FERRY_LOAD_WINDOW_MINUTES,
            result=result.as_dict(),
            created_by_name=as_actor(actor).name,
        )
        plan_content_changed(plan, actor, what=f"balance of group {group}")
        audit_record(
            actor=actor,
            action="plan.balanced",
            obj=plan,
            after={
                "group": group,
                "target_pct": result.target_pct,
                "max_moves": max_moves,
                "max_moved_mib": max_moved_mib,
                "moves": len(result.moves),
                "memory_moved_mib": result.memory_moved_mib,
                "reached": result.reached,
                "spread_before_pts": result.spread_before_pts,
                "spread_after_pts": result.spread_after_pts,
                "why_not": result.why_not,
                "load_sources": result.load_sources,
                "balance_run": run.pk,
            },
        )
    return run


def plan_create_balanced(
    *,
    actor,
    group: str,
    name: str = "",
    description: str = "",
    change_ticket: str = "",
    window_start=None,
    window_end=None,
    policy: dict | None = None,
    target_pct: float = 10.0,
    max_moves: int | None = None,
    max_moved_mib: int | None = None,
    storage_copy: bool = False,
) -> tuple[MigrationPlan, BalanceRun]:
    """A new draft plan that balances `group` (plan_create + plan_balance, one transaction)."""
    with transaction.atomic():
        group = resolve_group(group, actor)
        plan = plan_create(
            actor=actor,
            name=(name or "").strip() or f"Balance {group}",
            description=description,
            change_ticket=change_ticket,
            window_start=window_start,
            window_end=window_end,
            policy=policy,
        )
        run = plan_balance(
            plan=plan,
            actor=actor,
            group=group,
            target_pct=target_pct,
            max_moves=max_moves,
            max_moved_mib=max_moved_mib,
            storage_copy=storage_copy,
        )
    plan.refresh_from_db()
    return plan, run
