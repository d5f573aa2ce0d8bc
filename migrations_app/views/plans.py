"""Plan pages: the list, and the editor/detail page (items, add VMs by filter, evacuate,
placement, validation results by severity, the estimate as a Gantt chart).

Forms post to small views that call the same services as the API; a refused input comes
back as a message on the page, never as an error page.
"""

from datetime import UTC

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from dashboard.errors import FerryError
from dashboard.permissions import can, role_required, scope_filter
from inventory.models import VM_BIG_FIELDS, Host, VirtualMachine, deferred_host_fields
from migrations_app.checks import CHECK_IDS
from migrations_app.errors import PlanError
from migrations_app.models import ItemAttempt, MigrationPlan, PlacementRule, PlanItem
from migrations_app.policy import Policy
from migrations_app.scoping import plans_in_scope, visible_plans
from migrations_app.selectors.plans import (
    plan_estimate_get,
    plan_items,
    plan_latest_validation,
    plan_list,
)
from migrations_app.selectors.runs import latest_run
from migrations_app.services import plans as services
from migrations_app.services.placing import plan_place
from migrations_app.services.validation import plan_validate

CANDIDATE_LIMIT = 200
FRESH_ESTIMATE_LIMIT = 500  # larger plans show the estimate of their latest validation
SEVERITIES = (("blocker", "Blockers"), ("warning", "Warnings"), ("info", "Notes"))
# The page shows names and sizes: the inventory's big columns stay in the database.
PAGE_DEFERRED = (
    *(f"vm__{field}" for field in VM_BIG_FIELDS),
    *deferred_host_fields("source_host", "destination_host"),
)


def _when(value: str):
    value = (value or "").strip()
    if not value:
        return None
    parsed = parse_datetime(value if len(value) > 16 else value + ":00")
    if parsed is None:
        raise PlanError(f"'{value}' is not a date and time (use YYYY-MM-DD HH:MM).")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        # In UTC: PostgreSQL refuses offsets beyond ±15:59, which Python accepts.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise PlanError(f"'{value}' is out of range.") from None


def _policy_from(post: QueryDict) -> dict:
    """Policy fields the form sent (blank ones keep the default)."""
    out = {}
    for name in (
        "max_downtime_ms",
        "bandwidth_mib_s",
        "max_concurrent",
        "on_no_convergence",
        "placement_strategy",
    ):
        raw = (post.get(f"policy_{name}") or "").strip()
        if not raw:
            continue
        if name in ("on_no_convergence", "placement_strategy"):
            out[name] = raw
        else:
            try:
                out[name] = int(raw)
            except ValueError:
                raise PlanError(f"policy.{name}: '{raw}' is not a whole number.") from None
    if post.get("policy_require_tls_off"):
        out["require_tls"] = False
    return out


@login_required
@role_required("plan.view")
def plan_list_view(request):
    context = {
        "plans": plans_in_scope(plan_list(), request.user)[:200],
        "can_edit": can(request.user, "plan.edit"),
        "policy_defaults": Policy(),
        "groups": sorted(
            set(
                scope_filter(Host.objects, request.user, "plan.edit")
                .exclude(group="")
                .values_list("group", flat=True)
            )
        ),
        "rules": PlacementRule.objects.order_by("name", "id"),
        "rule_kinds": PlacementRule.Kind.choices,
    }
    return render(request, "migrations_app/plan_list.html", context)


@login_required
@require_POST
@role_required("plan.edit")
def plan_create_view(request):
    try:
        plan = services.plan_create(
            actor=request.user,
            name=request.POST.get("name", ""),
            description=request.POST.get("description", ""),
            change_ticket=request.POST.get("change_ticket", ""),
            window_start=_when(request.POST.get("window_start")),
            window_end=_when(request.POST.get("window_end")),
            policy=_policy_from(request.POST),
        )
    except FerryError as exc:
        messages.error(request, str(exc))
        return redirect("plans:plan-list")
    messages.success(request, f"Plan '{plan.name}' created.")
    return redirect("plans:plan-detail", pk=plan.pk)


def _candidates(request, plan):
    """VMs matching the add-by-filter form (host, tag, name), not yet in the plan."""
    host, tag, name = (request.GET.get(k, "").strip() for k in ("host", "tag", "name"))
    if not (host or tag or name):
        return None
    qs = scope_filter(VirtualMachine.objects, request.user, "plan.edit", "host__group")
    qs = qs.select_related("host").exclude(plan_items__plan=plan)
    if host.isdigit():
        qs = qs.filter(host_id=int(host))
    if name:
        qs = qs.filter(name__icontains=name)
    rows = []
    for vm in qs.order_by("name", "id")[: CANDIDATE_LIMIT * 5]:
        if tag and tag not in (vm.tags or []):
            continue  # tags are a JSON list: filtered here, portable across databases
        rows.append(vm)
        if len(rows) >= CANDIDATE_LIMIT:
            break
    return rows


def _grouped(run):
    if run is None:
        return [], 0
    groups = {key: [] for key, _ in SEVERITIES}
    # Only the findings are read as rows: a plan of 30 VMs has 540 verdicts, nearly all
    # passes, and the page shows passes as a count.
    for result in run.results.filter(severity__in=list(groups)).order_by("id"):
        groups[result.severity].append(result)
    passed = run.results.exclude(severity__in=list(groups)).count()
    return [(key, label, groups[key]) for key, label in SEVERITIES], passed


def _actual_timeline(plan) -> list[dict]:
    """What really happened in the latest run, relative to its start, for the Gantt overlay."""
    latest = latest_run(plan)
    if latest is None:
        return []
    rows = []
    attempts = ItemAttempt.objects.filter(run=latest, started_at__isnull=False).select_related(
        "item__vm"
    )
    for attempt in attempts.order_by("started_at"):
        end = attempt.finished_at
        rows.append(
            {
                "vm": attempt.item.vm.name,
                "start_s": (attempt.started_at - latest.started_at).total_seconds(),
                "end_s": (end - latest.started_at).total_seconds() if end else None,
                "status": attempt.status,
                "downtime_ms": attempt.downtime_ms,
            }
        )
    return rows


@login_required
@role_required("plan.view")
def plan_detail_view(request, pk):
    plan = get_object_or_404(visible_plans(request.user), pk=pk)
    items = list(plan_items(plan).defer(*PAGE_DEFERRED))
    run = plan_latest_validation(plan, with_results=False)
    current = bool(run and run.plan_version == plan.version)
    # While the latest validation is current (no edit since), the page shows its estimate,
    # next to its check results: the one approvers saw and the run is compared with (a
    # fresh one would describe an inventory the run itself has changed). After an edit, a
    # fresh estimate while the plan is small enough.
    fresh = not current and len(items) <= FRESH_ESTIMATE_LIMIT
    estimate = plan_estimate_get(plan) if fresh else (run.estimate if run else {})
    gantt = {
        "items": [
            {
                "vm": e["vm"],
                "start_s": e["start_s"],
                "end_s": e["end_s"],
                "destination": e["destination"],
                "converges_by": e["converges_by"] or "does not converge",
            }
            for e in (estimate or {}).get("items", [])
        ],
        "makespan_s": (estimate or {}).get("makespan_s", 0),
        "window_s": (
            (plan.window_end - plan.window_start).total_seconds()
            if plan.window_start and plan.window_end
            else None
        ),
    }
    gantt["actual"] = _actual_timeline(plan)
    groups, passed = _grouped(run)
    context = {
        "plan": plan,
        "items": items,
        "run": run,
        "run_is_current": current,
        "groups": groups,
        "passed": passed,
        "estimate": estimate,
        "estimate_is_fresh": fresh,
        "gantt": gantt,
        "hosts": scope_filter(Host.objects, request.user, "plan.edit")
        .only("pk", "name", "state")
        .order_by("name"),
        "candidates": _candidates(request, plan),
        "filters": {k: request.GET.get(k, "") for k in ("host", "tag", "name")},
        "can_edit": can(request.user, "plan.edit") and plan.status in MigrationPlan.EDITABLE,
        "can_operate": can(request.user, "plan.run"),
        "modes": PlanItem.Mode.choices,
        "check_count": len(CHECK_IDS),
        "policy": plan.get_policy(),
        "stall_window_s": settings.FERRY_STALL_WINDOW_SECONDS,
        "balance": plan.balance_runs.order_by("-created_at", "-id").first(),
    }
    return render(request, "migrations_app/plan_detail.html", context)


def _edit(request, pk, action):
    """Run one page edit: service call, message, back to the plan (the views that call
    it carry @role_required("plan.edit"))."""
    plan = get_object_or_404(visible_plans(request.user), pk=pk)
    try:
        text = action(plan)
    except FerryError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, text)
    return redirect("plans:plan-detail", pk=plan.pk)


@login_required
@require_POST
@role_required("plan.edit")
def plan_add_view(request, pk):
    def add(plan):
        dest = request.POST.get("destination") or None
        items = services.plan_add_vms(
            plan=plan,
            vms=request.POST.getlist("vms"),
            destination=dest,
            mode=request.POST.get("mode") or PlanItem.Mode.LIVE,
            actor=request.user,
        )
        return f"{len(items)} VM(s) added."

    return _edit(request, pk, add)


@login_required
@require_POST
@role_required("plan.edit")
def plan_evacuate_view(request, pk):
    def evacuate(plan):
        result = services.plan_evacuate_host(
            plan=plan, host=request.POST.get("host", ""), actor=request.user
        )
        text = (
            f"Evacuating {result['host']}: {result['added']} VM(s) added, {result['placed']} placed"
        )
        if result["unplaced"]:
            text += f", {len(result['unplaced'])} without a destination (see their notes)"
        if result["skipped"]:
            text += f", {len(result['skipped'])} skipped (in other plans)"
        return text + "."

    return _edit(request, pk, evacuate)


@login_required
@require_POST
@role_required("plan.edit")
def plan_place_view(request, pk):
    def place(plan):
        placements = plan_place(
            plan=plan, actor=request.user, replace=bool(request.POST.get("replace"))
        )
        placed = sum(1 for p in placements if p.destination_id is not None)
        return f"Placement chose destinations for {placed} of {len(placements)} item(s)."

    return _edit(request, pk, place)


@login_required
@require_POST
@role_required("plan.edit")
def plan_validate_view(request, pk):
    def validate(plan):
        run = plan_validate(plan=plan, actor=request.user)
        return (
            f"Validated: {run.blockers} blocker(s), {run.warnings} warning(s), {run.infos} note(s)."
        )

    return _edit(request, pk, validate)


@login_required
@require_POST
@role_required("plan.edit")
def plan_item_update_view(request, pk, item_id):
    def update(plan):
        item = get_object_or_404(PlanItem, pk=item_id, plan=plan)
        changes = {}
        if "destination" in request.POST:
            changes["destination"] = request.POST.get("destination") or None
        if request.POST.get("mode"):
            changes["mode"] = request.POST["mode"]
        services.plan_item_update(item=item, actor=request.user, **changes)
        return f"{item.vm.name} updated."

    return _edit(request, pk, update)


@login_required
@require_POST
@role_required("plan.edit")
def plan_item_remove_view(request, pk, item_id):
    def remove(plan):
        item = get_object_or_404(PlanItem, pk=item_id, plan=plan)
        services.plan_item_remove(item=item, actor=request.user)
        return f"{item.vm.name} removed from the plan."

    return _edit(request, pk, remove)
