"""Template tags that plan pages include: the plan's status links."""

from django import template

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
