"""Balance and placement rules on the plan pages: the "balance a host group" form (a new
draft plan), and adding, switching and removing placement rules. Forms post to small
views that call the same services as the API; a refused input comes back as a message."""

import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from dashboard.errors import FerryError
from dashboard.permissions import role_required
from migrations_app.errors import PlanError
from migrations_app.models import PlacementRule
from migrations_app.services import rules as rule_services
from migrations_app.services.balancing import plan_create_balanced
from migrations_app.views.plans import _policy_from, _when

MIB_PER_GIB = 1024


def _number(post, name: str, label: str, *, integer: bool):
    raw = (post.get(name) or "").strip()
    if not raw:
        return None
    kind = "a whole number" if integer else "a number"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise PlanError(f"{label}: '{raw[:20]}' is not {kind}.") from None
    if not math.isfinite(value) or value < 0 or value > 2**40:
        raise PlanError(f"{label}: '{raw[:20]}' is not {kind} between 0 and 2^40.")
    return value


def balance_summary(run) -> str:
    """One sentence for the message after a balance plan was built."""
    before, after = run.result.get("spread_before_pts", {}), run.result.get("spread_after_pts", {})
    spread = (
        f"memory ±{before.get('memory')} → ±{after.get('memory')} pts, "
        f"CPU ±{before.get('cpu')} → ±{after.get('cpu')} pts"
    )
    if run.reached:
        return f"{run.moves} move(s) bring {run.group} within ±{run.target_pct:g} pts ({spread})."
    return (
        f"{run.moves} move(s); {run.group} does not reach ±{run.target_pct:g} pts ({spread}): "
        "the plan says why."
    )


@login_required
@require_POST
@role_required("plan.edit")
def plan_balance_new_view(request):
    post = request.POST
    try:
        gib = _number(post, "max_moved_gib", "Most memory moved (GiB)", integer=False)
        plan, run = plan_create_balanced(
            actor=request.user,
            group=post.get("group", ""),
            name=post.get("name", ""),
            change_ticket=post.get("change_ticket", ""),
            window_start=_when(post.get("window_start")),
            window_end=_when(post.get("window_end")),
            policy=_policy_from(post),
            target_pct=_number(post, "target_pct", "Target (± points)", integer=False) or 10.0,
            max_moves=_number(post, "max_moves", "Most moves", integer=True),
            max_moved_mib=None if gib is None else round(gib * MIB_PER_GIB),
            storage_copy=bool(post.get("storage_copy")),
        )
    except FerryError as exc:
        messages.error(request, str(exc))
        return redirect("plans:plan-list")
    messages.success(request, f"Plan '{plan.name}' created: {balance_summary(run)}")
    return redirect("plans:plan-detail", pk=plan.pk)


def _rule_action(request, action):
    try:
        text = action()
    except FerryError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, text)
    return redirect("plans:plan-list")


@login_required
@require_POST
@role_required("plan.edit")
def rule_create_view(request):
    def create():
        rule = rule_services.rule_create(
            actor=request.user,
            name=request.POST.get("name", ""),
            kind=request.POST.get("kind", ""),
            tag=request.POST.get("tag", ""),
            description=request.POST.get("description", ""),
        )
        return f"Rule '{rule.name}' added: {rule.get_kind_display()} for tag '{rule.tag}'."

    return _rule_action(request, create)


@login_required
@require_POST
@role_required("plan.edit")
def rule_toggle_view(request, rule_id):
    rule = get_object_or_404(PlacementRule, pk=rule_id)

    def toggle():
        updated = rule_services.rule_update(rule=rule, actor=request.user, enabled=not rule.enabled)
        return f"Rule '{updated.name}' {'enabled' if updated.enabled else 'disabled'}."

    return _rule_action(request, toggle)


@login_required
@require_POST
@role_required("plan.edit")
def rule_delete_view(request, rule_id):
    rule = get_object_or_404(PlacementRule, pk=rule_id)

    def delete():
        rule_services.rule_delete(rule=rule, actor=request.user)
        return f"Rule '{rule.name}' removed."

    return _rule_action(request, delete)
