"""Checks that read the plan as a whole: convergence (from the estimate), the maintenance
window (from the timeline) and anti-affinity groups (from where the plan puts VMs)."""

import datetime as dt

from migrations_app.checks.base import BLOCKER, INFO, WARNING, Finding, ok


def check_convergence(ctx, item, dest) -> Finding:
    """convergence: the pre-copy model says the move finishes under the policy."""
    estimate = ctx.estimates.get(item.id)
    if estimate is None:
        return Finding("convergence", INFO, "No estimate for this item yet.", "")
    evidence = {
        "memory_mib": estimate.memory_mib,
        "dirty_rate_mib_s": estimate.dirty_rate_mib_s,
        "dirty_rate_source": estimate.dirty_rate_source,
        "bandwidth_mib_s": estimate.bandwidth_mib_s,
        "bandwidth_source": estimate.bandwidth_source,
        "max_downtime_ms": estimate.max_downtime_ms,
        "on_no_convergence": estimate.on_no_convergence,
        "iterations": estimate.iterations,
        "downtime_ms": estimate.downtime_ms,
        "converges_by": estimate.converges_by,
    }
    rates = (
        f"dirty rate {estimate.dirty_rate_mib_s:g} MiB/s ({estimate.dirty_rate_source}) vs "
        f"{estimate.bandwidth_mib_s:g} MiB/s ({estimate.bandwidth_source})"
    )
    if not estimate.converges:
        return Finding(
            "convergence",
            BLOCKER,
            f"{item.vm.name} will not converge: {estimate.note} ({rates}).",
            "Raise the bandwidth cap, allow more downtime, choose auto-converge or post-copy "
            "for this item, or quiesce the guest's workload during the move.",
            evidence,
        )
    if estimate.converges_by != "pre-copy":
        return Finding(
            "convergence",
            WARNING,
            f"{item.vm.name} {estimate.note} ({rates}).",
            "Expect a slower guest or a longer pause during the move; tell its owner.",
            evidence,
        )
    return ok(
        "convergence",
        f"{item.vm.name} converges in {estimate.iterations} pass(es), about "
        f"{estimate.downtime_ms:.0f} ms of downtime ({rates}).",
        **evidence,
    )


def check_window(ctx, item, dest) -> Finding:
    """window: the item's estimated finish falls inside the maintenance window."""
    plan = ctx.snapshot.plan
    estimate = ctx.estimates.get(item.id)
    if plan.window_start is None or plan.window_end is None or estimate is None:
        return Finding(
            "window",
            INFO,
            "The plan has no maintenance window (or no estimate); nothing to compare.",
            "Set a window so Ferry can tell whether the plan fits in it.",
            {"window_start": _iso(plan.window_start), "window_end": _iso(plan.window_end)},
        )
    finish = plan.window_start + dt.timedelta(seconds=estimate.end_s)
    length = (plan.window_end - plan.window_start).total_seconds()
    evidence = {
        "window_start": _iso(plan.window_start),
        "window_end": _iso(plan.window_end),
        "estimated_start_s": estimate.start_s,
        "estimated_end_s": estimate.end_s,
        "estimated_finish": _iso(finish),
    }
    if finish > plan.window_end:
        late = (finish - plan.window_end).total_seconds()
        return Finding(
            "window",
            BLOCKER,
            f"{item.vm.name} is estimated to finish at {finish:%Y-%m-%d %H:%M} UTC, "
            f"{late / 60:.0f} min after the window closes.",
            "Lengthen the window, raise the concurrency limits or bandwidth, or split the plan.",
            evidence,
        )
    if length > 0 and estimate.end_s > 0.9 * length:
        return Finding(
            "window",
            WARNING,
            f"{item.vm.name} finishes in the last 10% of the window; little slack for retries.",
            "Consider a longer window or a smaller plan.",
            evidence,
        )
    return ok("window", f"{item.vm.name} finishes inside the window.", **evidence)


def _iso(value):
    return value.isoformat() if value is not None else None


def check_affinity(ctx, item, dest) -> Finding:
    """affinity: VMs of one anti-affinity group (tag anti:NAME) never share a host."""
    groups = item.vm.anti_groups
    if not groups or item.storage_only:
        return ok("affinity", "No anti-affinity group involved.", groups=list(groups))
    clashes = {}
    for group in groups:
        staying = {
            vm_id: name
            for vm_id, name in dest.anti_members.get(group, {}).items()
            if vm_id not in ctx.ledger.leaving
        }
        staying.update(ctx.ledger.arriving[dest.id].get(group, {}))
        staying.pop(item.vm.id, None)
        if staying:
            clashes[group] = sorted(staying.values())
    evidence = {"groups": list(groups), "destination": dest.name, "clashes": clashes}
    if clashes:
        text = "; ".join(f"anti:{g} with {', '.join(names)}" for g, names in clashes.items())
        return Finding(
            "affinity",
            BLOCKER,
            f"{item.vm.name} would share {dest.name} with members of its anti-affinity "
            f"group ({text}).",
            "Choose another destination (placement avoids this), or move the other member "
            "elsewhere in the same plan.",
            evidence,
        )
    return ok(
        "affinity",
        f"No other member of {', '.join('anti:' + g for g in groups)} is on {dest.name}.",
        **evidence,
    )
