"""Capacity checks: memory and vCPU room on the destination, counting what this plan already
sends there (and what it takes away)."""

from migrations_app.checks.base import BLOCKER, WARNING, Finding, gib_text, ok


def memory_room_mib(ctx, item, dest) -> int | None:
    """Free memory left on dest for this item, after the reserve and the plan's other moves."""
    if dest.memory_free_mib is None:
        return None
    ledger = ctx.ledger
    return (
        dest.memory_free_mib
        - item.policy.memory_reserve_mib
        - ledger.in_mem[dest.id]
        + ledger.out_mem[dest.id]
    )


def check_capacity_memory(ctx, item, dest) -> Finding:
    """capacity.memory: the VM fits in the destination's free memory minus the reserve."""
    if item.storage_only:
        return ok("capacity.memory", "Storage-only move: memory does not move.")
    need = item.vm.memory_mib
    room = memory_room_mib(ctx, item, dest)
    evidence = {
        "vm_memory_mib": need,
        "destination_free_mib": dest.memory_free_mib,
        "reserve_mib": item.policy.memory_reserve_mib,
        "already_sent_by_plan_mib": ctx.ledger.in_mem[dest.id],
        "freed_by_plan_mib": ctx.ledger.out_mem[dest.id],
        "room_mib": room,
    }
    if room is None:
        return Finding(
            "capacity.memory",
            WARNING,
            f"{dest.name}'s free memory is unknown.",
            f"Sync {dest.name}.",
            evidence,
        )
    if need > room:
        sent = ctx.ledger.in_mem[dest.id]
        plan_part = f", of which this plan already sends {gib_text(sent)}" if sent else ""
        return Finding(
            "capacity.memory",
            BLOCKER,
            f"{item.vm.name} needs {gib_text(need)} but {dest.name} has only "
            f"{gib_text(max(room, 0))} left after the {gib_text(item.policy.memory_reserve_mib)} "
            f"reserve{plan_part}.",
            "Choose a destination with more free memory, move other VMs off it first, or "
            "spread the plan over more hosts (placement does this).",
            evidence,
        )
    return ok(
        "capacity.memory",
        f"{item.vm.name} ({gib_text(need)}) fits on {dest.name} "
        f"({gib_text(room - need)} left after it).",
        **evidence,
    )


def check_capacity_cpu(ctx, item, dest) -> Finding:
    """capacity.cpu: the destination's vCPU:pCPU ratio stays within the policy's limit."""
    if item.storage_only:
        return ok("capacity.cpu", "Storage-only move: vCPUs do not move.")
    limit = item.policy.cpu_allocation_ratio
    allocated = (
        dest.vcpus_allocated
        + ctx.ledger.in_vcpus[dest.id]
        - ctx.ledger.out_vcpus[dest.id]
        + item.vm.vcpus
    )
    evidence = {
        "vm_vcpus": item.vm.vcpus,
        "destination_cpus": dest.cpus,
        "vcpus_after": allocated,
        "ratio_limit": limit,
    }
    if not dest.cpus:
        return Finding(
            "capacity.cpu",
            WARNING,
            f"{dest.name}'s CPU count is unknown.",
            f"Sync {dest.name}.",
            evidence,
        )
    ratio = allocated / dest.cpus
    evidence["ratio_after"] = round(ratio, 2)
    if ratio > limit:
        return Finding(
            "capacity.cpu",
            BLOCKER,
            f"With {item.vm.name}, {dest.name} would run {allocated} vCPUs on {dest.cpus} "
            f"CPUs ({ratio:.2f}:1), above the policy's {limit}:1.",
            "Choose a less loaded destination, or raise policy.cpu_allocation_ratio if the "
            "overcommit is acceptable.",
            evidence,
        )
    return ok(
        "capacity.cpu",
        f"{dest.name} stays at {ratio:.2f}:1 vCPU per CPU (limit {limit}:1).",
        **evidence,
    )
