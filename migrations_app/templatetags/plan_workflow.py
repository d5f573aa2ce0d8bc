"""Template tags that plan and campaign pages include: the workflow actions and the status
links."""

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from dashboard.permissions import can
from inventory.models import Host
from migrations_app.selectors.approvals import (
    approvals_carried_count,
    approvals_required,
    approvals_valid_count,
)
from migrations_app.services.rerun import RERUN_FROM, RERUN_ITEMS
from migrations_app.workflow.services import in_window
from migrations_app.workflow.states import available_actions

register = template.Library()


def _share_links(context, obj, create_url: str, what: str) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    manage = can(user, "sharelink.manage")
    links = list(obj.share_links.all()) if manage else []
    for link in links:
        link.current_state = link.state()
    return {
        "create_url": create_url,
        "what": what,
        "links": links,
        "can_manage": manage,
        "default_days": getattr(settings, "FERRY_SHARE_LINK_DAYS", 7),
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }


@register.inclusion_tag("migrations_app/_share_links.html", takes_context=True)
def plan_share_links(context, plan):
    """The status links of a plan, with create/revoke forms for those who may manage them."""
    return _share_links(context, plan, reverse("sharelink-create", args=[plan.pk]), "plan")


@register.inclusion_tag("migrations_app/_share_links.html", takes_context=True)
def campaign_share_links(context, campaign):
    """The status links of a campaign (same list and forms as a plan's)."""
    url = reverse("plans:campaign-sharelink-create", args=[campaign.pk])
    return _share_links(context, campaign, url, "campaign")


@register.inclusion_tag("migrations_app/_workflow_actions.html", takes_context=True)
def plan_workflow_actions(context, plan):
    """Approval state and the buttons this user may press on the plan."""
    request = context.get("request")
    user = getattr(request, "user", None)
    return {
        "plan": plan,
        "actions": available_actions(plan, user),
        "approvals_valid": approvals_valid_count(plan),
        "approvals_required": approvals_required(),
        "decisions": list(plan.approvals.order_by("created_at", "id")),
        "outside_window": not in_window(plan, timezone.now()),
        "approvals_carried": approvals_carried_count(plan) if plan.rerun_of_id else 0,
        "rerun_failed": plan.status in RERUN_FROM
        and can(user, "plan.run")
        and plan.items.filter(status__in=RERUN_ITEMS).exists(),
        "reruns": list(plan.reruns.order_by("id")),
        # M1: the approver sees where the VMs go, how Ferry reaches it and who vouched for it.
        "destinations": Host.objects.filter(inbound_items__plan=plan).distinct().order_by("name"),
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }
