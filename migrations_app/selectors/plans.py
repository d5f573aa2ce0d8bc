"""Reads of plans for the API and the pages (no writes here)."""

from django.db.models import Count, Prefetch, Q

from migrations_app.checks.snapshot import snapshot_load
from migrations_app.estimate import plan_estimate
from migrations_app.models import CheckResult, MigrationPlan, PlanItem, ValidationRun


def plan_list():
    """Plans with their item counts, newest first (one query)."""
    return MigrationPlan.objects.annotate(
        item_count=Count("items", distinct=True),
        unplaced_count=Count(
            "items",
            filter=Q(items__destination_host__isnull=True),
            distinct=True,
        ),
    ).order_by("-created_at", "-id")


def plan_items(plan: MigrationPlan):
    """A plan's items with their VM and hosts (one query)."""
    return (
        PlanItem.objects.filter(plan=plan)
        .select_related("vm", "source_host", "destination_host")
        .order_by("position", "id")
    )


def plan_latest_validation(plan: MigrationPlan, with_results: bool = True) -> ValidationRun | None:
    """The plan's most recent validation run, with its results prefetched (or not: the
    plan page reads only the findings itself)."""
    runs = ValidationRun.objects.filter(plan=plan)
    if with_results:
        runs = runs.prefetch_related(
            Prefetch("results", queryset=CheckResult.objects.order_by("id"))
        )
    return runs.order_by("-created_at", "-id").first()


def plan_estimate_get(plan: MigrationPlan) -> dict:
    """A fresh estimate of the plan as it is now (nothing stored)."""
    snapshot = snapshot_load(plan)
    estimate = plan_estimate(snapshot)
    data = estimate.as_dict()
    data["plan"] = plan.pk
    data["plan_version"] = plan.version
    return data


def plan_memory_changes_of_host(host) -> list[tuple[str, int]]:
    """(plan name, MiB in minus out) of each open plan whose unfinished items move VMs into
    or out of `host` (the host page's "memory after each plan")."""
    touching = (
        PlanItem.objects.filter(plan__status__in=MigrationPlan.EDITABLE | {"running", "paused"})
        .exclude(mode=PlanItem.Mode.STORAGE_ONLY)
        .exclude(status="completed")  # already in the host's current memory
        .filter(Q(source_host=host) | Q(destination_host=host))
        .select_related("vm", "plan")
    )
    delta: dict[int, tuple[str, int]] = {}
    for item in touching:
        name, change = delta.get(item.plan_id, (item.plan.name, 0))
        if item.destination_host_id == host.pk:
            change += item.vm.memory_mib
        if item.source_host_id == host.pk:
            change -= item.vm.memory_mib
        delta[item.plan_id] = (name, change)
    return list(delta.values())
