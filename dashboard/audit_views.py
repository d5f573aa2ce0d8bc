"""Audit pages: the filtered list, a plan's timeline, and exports of any filtered view."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from dashboard.audit_export import audit_export_csv, audit_export_json
from dashboard.audit_selectors import audit_events_filtered, audit_events_of_plan
from dashboard.models import AuditEvent
from dashboard.permissions import can
from migrations_app.models import MigrationPlan


def _require_audit_reader(request):
    if not (can(request.user, "audit.view") or can(request.user, "audit.view_own")):
        raise PermissionDenied("Your role does not allow reading the audit trail.")


@login_required
@require_safe
def audit_list(request):
    _require_audit_reader(request)
    events, bound = audit_events_filtered(request.user, request.GET)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "filter": bound,
        "query": query.urlencode(),
        "actor_types": AuditEvent.ActorType.choices,
        "sees_everything": can(request.user, "audit.view"),
    }
    return render(request, "dashboard/audit_list.html", context)


@login_required
@require_safe
def audit_export(request, fmt):
    _require_audit_reader(request)
    if fmt not in ("csv", "json"):
        raise Http404("Export as .csv or .json.")
    events, _ = audit_events_filtered(request.user, request.GET)
    events = events.order_by("sequence")
    if fmt == "csv":
        return audit_export_csv(events, "ferry-audit")
    return audit_export_json(events, "ferry-audit")


@login_required
@require_safe
def audit_plan_timeline(request, pk):
    _require_audit_reader(request)
    if not can(request.user, "plan.view"):
        raise PermissionDenied("Your role does not allow viewing plans.")
    plan = get_object_or_404(MigrationPlan, pk=pk)
    events = audit_events_of_plan(request.user, plan)
    fmt = request.GET.get("export")
    if fmt == "csv":
        return audit_export_csv(events, f"plan-{plan.pk}-audit")
    if fmt == "json":
        return audit_export_json(events, f"plan-{plan.pk}-audit")
    return render(request, "dashboard/audit_timeline.html", {"plan": plan, "events": events[:2000]})
