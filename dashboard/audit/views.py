"""Audit pages: the filtered list and exports of any filtered view (a plan's timeline is a
plan feature: migrations_app.views.reports)."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

from dashboard.audit.export import audit_export_csv, audit_export_json
from dashboard.audit.models import AuditEvent
from dashboard.audit.selectors import audit_events_filtered
from dashboard.permissions import can, role_required

AUDIT_READER_ONLY = "Your role does not allow reading the audit trail."


@login_required
@require_safe
@role_required("audit.view", "audit.view_own", message=AUDIT_READER_ONLY)
def audit_list(request):
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
@role_required("audit.view", "audit.view_own", message=AUDIT_READER_ONLY)
def audit_export(request, fmt):
    if fmt not in ("csv", "json"):
        raise Http404("Export as .csv or .json.")
    events, _ = audit_events_filtered(request.user, request.GET)
    events = events.order_by("sequence")
    if fmt == "csv":
        return audit_export_csv(events, "ferry-audit")
    return audit_export_json(events, "ferry-audit")
