"""Plans, campaigns and role scopes: which host groups a plan touches, and who may see or
act on it (a campaign: the groups of the hosts it walks).

A plan touches the groups of its items' source and destination hosts. A person whose role
is scoped to host groups sees a plan only when every group it touches lies in their scope
(otherwise its VMs would show), and may edit, submit, approve or run it on the same terms.
"""

from dashboard.permissions import ALL_HOSTS, actor_scope, scope_label
from inventory.models import Host
from migrations_app.models import Campaign, MigrationPlan, PlanItem


def plan_host_groups(plan) -> set[str]:
    """The host groups the plan's items come from and go to ("" for ungrouped hosts)."""
    rows = PlanItem.objects.filter(plan=plan).values_list(
        "source_host__group", "destination_host__group"
    )
    return {group for pair in rows for group in pair if group is not None}


def plan_scope_outside(plan, actor, action: str) -> set[str]:
    """The groups the plan touches that the actor's scope for `action` does not reach."""
    scope = actor_scope(actor, action)
    if scope is ALL_HOSTS:
        return set()
    return plan_host_groups(plan) - scope


def plan_scope_used(actor, action: str):
    """The scope an action was taken under, as the audit trail records it."""
    return scope_label(actor_scope(actor, action))


def plans_in_scope(queryset, user, action: str = "plan.view"):
    """`queryset` of plans narrowed to those touching only groups the user's scope reaches."""
    scope = actor_scope(user, action) if user is not None else frozenset()
    if scope is ALL_HOSTS:
        return queryset
    outside = Host.objects.exclude(group__in=sorted(scope))
    return queryset.exclude(items__source_host__in=outside).exclude(
        items__destination_host__in=outside
    )


def visible_plans(user, action: str = "plan.view"):
    """Every plan the user may see (or act on, with `action`) under their role scope."""
    return plans_in_scope(MigrationPlan.objects.all(), user, action)


def campaigns_in_scope(queryset, user, action: str = "plan.view"):
    """`queryset` of campaigns narrowed to those whose hosts all lie in the user's scope."""
    scope = actor_scope(user, action) if user is not None else frozenset()
    if scope is ALL_HOSTS:
        return queryset
    outside = Host.objects.exclude(group__in=sorted(scope))
    return queryset.exclude(steps__host__in=outside)


def visible_campaigns(user, action: str = "plan.view"):
    """Every campaign the user may see (or act on, with `action`) under their role scope."""
    return campaigns_in_scope(Campaign.objects.all(), user, action)
