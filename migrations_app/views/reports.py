"""Report pages of a plan: its change record (HTML and PDF) and its audit timeline."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from dashboard.audit.export import audit_export_csv, audit_export_json
from dashboard.audit.views import AUDIT_READER_ONLY
from dashboard.errors import TooManyRequests
from dashboard.permissions import role_required
from migrations_app.reports.change_record import audit_events_of_plan
from migrations_app.reports.change_record_pdf import change_record_html, change_record_pdf
from migrations_app.scoping import visible_plans


@login_required
@require_safe
@role_required("plan.view")
def change_record_page(request, pk):
    plan = get_object_or_404(visible_plans(request.user), pk=pk)
    return HttpResponse(change_record_html(plan, request=request))


@login_required
@require_safe
@role_required("plan.view")
def change_record_pdf_page(request, pk):
    plan = get_object_or_404(visible_plans(request.user), pk=pk)
    try:
        pdf = change_record_pdf(plan, request=request)
    except TooManyRequests as exc:
        return HttpResponse(str(exc), status=429, content_type="text/plain")
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="plan-{plan.pk}-change-record.pdf"'
    return response


@login_required
@require_safe
@role_required("audit.view", "audit.view_own", message=AUDIT_READER_ONLY)
@role_required("plan.view", message="Your role does not allow viewing plans.")
def audit_plan_timeline(request, pk):
    plan = get_object_or_404(visible_plans(request.user), pk=pk)
    events = audit_events_of_plan(request.user, plan)
    fmt = request.GET.get("export")
    if fmt == "csv":
        return audit_export_csv(events, f"plan-{plan.pk}-audit")
    if fmt == "json":
        return audit_export_json(events, f"plan-{plan.pk}-audit")
    return render(
        request, "migrations_app/audit_timeline.html", {"plan": plan, "events": events[:2000]}
    )
