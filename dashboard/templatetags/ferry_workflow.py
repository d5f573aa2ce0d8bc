"""Template tags that plan pages include: the workflow actions and the status links."""

from django import template
from django.utils import timezone

from dashboard.permissions import can

register = template.Library()


@register.inclusion_tag("migrations_app/_share_links.html", takes_context=True)
def plan_share_links(context, plan):
    """The status links of a plan, with create/revoke forms for those who may manage them."""
    request = context.get("request")
    user = getattr(request, "user", None)
    manage = can(user, "sharelink.manage")
    links = list(plan.share_links.all()) if manage else []
    for link in links:
        link.current_state = link.state()
    return {
        "plan": plan,
        "links": links,
        "can_manage": manage,
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }


def workflow_actions_for(user, plan) -> list[str]:
    """The workflow actions worth offering this user now (the services still decide)."""
    status = plan.status
    actions = []
    if status == "draft" and can(user, "plan.submit"):
        actions.append("submit")
    author = plan.author_id is not None and plan.author_id == getattr(user, "pk", None)
    if status in ("submitted", "approved") and can(user, "plan.approve") and not author:
        if status == "submitted":
            actions += ["approve", "reject"]
    runner = can(user, "plan.run")
    if runner:
        if status in ("approved", "scheduled"):
            actions.append("start")
            actions.append("release" if plan.hold else "hold")
        elif status == "running":
            actions.append("pause")
        elif status == "paused":
            actions.append("resume")
    pre_run = status in ("draft", "submitted", "approved", "rejected", "scheduled")
    if not plan.is_terminal and (runner or (pre_run and can(user, "plan.edit"))):
        actions.append("cancel")
    return actions


@register.inclusion_tag("migrations_app/_workflow_actions.html", takes_context=True)
def plan_workflow_actions(context, plan):
    """Approval state and the buttons this user may press on the plan."""
    from migrations_app.selectors.approvals import approvals_required, approvals_valid_count
    from migrations_app.services.workflow import in_window

    request = context.get("request")
    user = getattr(request, "user", None)
    return {
        "plan": plan,
        "actions": workflow_actions_for(user, plan),
        "approvals_valid": approvals_valid_count(plan),
        "approvals_required": approvals_required(),
        "decisions": list(plan.approvals.order_by("created_at", "id")),
        "outside_window": not in_window(plan, timezone.now()),
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }
