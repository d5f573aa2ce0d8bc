"""Campaign pages: the list with a create form, the detail with its per-host step timeline
(kept live by static/js/campaign_live.js reading the API), the workflow buttons, status
links and the change record (HTML and PDF). Writes go through the campaign services; their
errors become messages."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from dashboard.errors import FerryError, TooManyRequests
from dashboard.permissions import can, role_required
from inventory.models import Host
from migrations_app.campaigns import services
from migrations_app.campaigns.timeline import STEPS
from migrations_app.models import Campaign
from migrations_app.reports.change_record_pdf import campaign_record_html, campaign_record_pdf
from migrations_app.views.workflow import sharelink_create_from_form

# The host's steps as the change record names them (failback is the campaign's last stage).
STEP_PHASES = tuple(key for key, _ in STEPS if key != "failback")
PHASE_LABELS = tuple(name for key, name in STEPS if key != "failback")
# Action -> (matrix permission, the statuses it is offered in).
OFFERS = {
    "submit": ("plan.submit", {"draft", "rejected"}),
    "approve": ("plan.approve", {"submitted"}),
    "reject": ("plan.approve", {"submitted"}),
    "start": ("plan.run", {"approved"}),
    "pause": ("plan.run", {"running"}),
    "resume": ("plan.run", {"paused"}),
    "cancel": ("plan.run", {"draft", "submitted", "approved", "rejected", "running", "paused"}),
}


@login_required
@require_safe
@role_required("plan.view")
def campaign_list_view(request):
    context = {
        "campaigns": services.campaigns_in_scope(Campaign.objects.all(), request.user)[:200],
        "hosts": Host.objects.order_by("name"),
        "groups": sorted({g for g in Host.objects.values_list("group", flat=True) if g}),
        "can_create": can(request.user, "plan.edit"),
    }
    return render(request, "migrations_app/campaign_list.html", context)


@login_required
@require_POST
@role_required("plan.edit")
def campaign_create_view(request):
    hosts = [h for h in request.POST.get("hosts", "").replace(",", " ").split() if h]
    try:
        campaign = services.campaign_create(
            actor=request.user,
            name=request.POST.get("name", ""),
            hosts=hosts or None,
            group=request.POST.get("group", "") if not hosts else "",
            batch_size=request.POST.get("batch_size") or 1,
            change_ticket=request.POST.get("change_ticket", ""),
            failback=bool(request.POST.get("failback")),
            policy={"require_tls": False} if request.POST.get("no_tls") else {},
        )
    except FerryError as exc:
        messages.error(request, str(exc))
        return redirect("plans:campaign-list")
    return redirect("plans:campaign-detail", pk=campaign.pk)


@login_required
@require_safe
@role_required("plan.view")
def campaign_detail_view(request, pk):
    campaign = get_object_or_404(
        services.campaigns_in_scope(Campaign.objects.all(), request.user), pk=pk
    )
    steps = list(campaign.steps.select_related("host", "plan"))
    rows = [
        {"step": s, "phases": [(name, (s.timeline or {}).get(name, {})) for name in STEP_PHASES]}
        for s in steps
    ]
    actions = [
        name
        for name, (permission, states) in OFFERS.items()
        if campaign.status in states and can(request.user, permission)
    ]
    context = {
        "campaign": campaign,
        "rows": rows,
        "phases": list(zip(STEP_PHASES, PHASE_LABELS, strict=True)),
        "hooks": campaign.hooks.all(),
        "calls": campaign.hook_calls.select_related("host").order_by("-id")[:50],
        "plans": campaign.plans.order_by("id"),
        "actions": actions,
        "rehearsal": bool(steps) and all(s.host.transport == Host.Transport.TEST for s in steps),
    }
    return render(request, "migrations_app/campaign_detail.html", context)


@login_required
@require_POST
def campaign_action_view(request, pk, action):
    campaign = get_object_or_404(
        services.campaigns_in_scope(Campaign.objects.all(), request.user), pk=pk
    )
    reason = request.POST.get("reason", "")
    calls = {
        "submit": lambda: services.campaign_submit(campaign=campaign, actor=request.user),
        "approve": lambda: services.campaign_approve(
            campaign=campaign,
            actor=request.user,
            comment=request.POST.get("comment", ""),
            expected_hash=request.POST.get("content_hash", ""),
        ),
        "reject": lambda: services.campaign_reject(
            campaign=campaign, actor=request.user, reason=reason
        ),
        "start": lambda: services.campaign_start(
            campaign=campaign, actor=request.user, override_reason=reason
        ),
        "pause": lambda: services.campaign_pause(
            campaign=campaign, actor=request.user, reason=reason
        ),
        "resume": lambda: services.campaign_resume(campaign=campaign, actor=request.user),
        "cancel": lambda: services.campaign_cancel(
            campaign=campaign, actor=request.user, reason=reason
        ),
    }
    if action not in calls:
        messages.error(request, f"'{action}' is not a campaign action.")
        return redirect("plans:campaign-detail", pk=pk)
    try:
        calls[action]()
    except (FerryError, PermissionDenied) as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Campaign '{campaign.name}': {action} done.")
    return redirect("plans:campaign-detail", pk=pk)


def _visible(request, pk, action: str = "plan.view") -> Campaign:
    return get_object_or_404(
        services.campaigns_in_scope(Campaign.objects.all(), request.user, action), pk=pk
    )


@login_required
@require_safe
@role_required("plan.view")
def campaign_change_record_view(request, pk):
    campaign = _visible(request, pk)
    return HttpResponse(campaign_record_html(campaign, request=request))


@login_required
@require_safe
@role_required("plan.view")
def campaign_change_record_pdf_view(request, pk):
    campaign = _visible(request, pk)
    try:
        pdf = campaign_record_pdf(campaign, request=request)
    except TooManyRequests as exc:
        return HttpResponse(str(exc), status=429, content_type="text/plain")
    response = HttpResponse(pdf, content_type="application/pdf")
    name = f"campaign-{campaign.pk}-change-record.pdf"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
@require_POST
@role_required("sharelink.manage")
def campaign_sharelink_create_view(request, pk):
    campaign = _visible(request, pk, "sharelink.manage")
    sharelink_create_from_form(request, campaign=campaign)
    return redirect("plans:campaign-detail", pk=campaign.pk)
