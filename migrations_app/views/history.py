"""The history page: every finished attempt, filtered by host, VM, group, person, dates
and outcome, with totals (the same selector as /api/v1/history/)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_safe

from dashboard.api.pagination import CachedCountKeysetPaginator
from dashboard.errors import InputError
from dashboard.permissions import role_required
from migrations_app.reports.history import (
    FILTERS,
    history_attempts,
    history_filters,
    history_row,
    history_totals,
)
from migrations_app.reports.outcomes import LABELS, OUTCOMES
from migrations_app.scoping import visible_plans

PAGE_SIZE = 50


@login_required
@require_safe
@role_required("plan.view")
def history_page(request):
    raw = {name: request.GET.get(name, "") for name in FILTERS}
    context = {
        "filters": raw,
        "outcomes": [(o, LABELS[o]) for o in OUTCOMES],
        "rows": [],
        "totals": None,
        "page": None,
    }
    try:
        filters = history_filters(request.GET)
    except InputError as exc:
        messages.error(request, str(exc))
        return render(request, "migrations_app/history.html", context)
    qs = history_attempts(filters).filter(run__plan__in=visible_plans(request.user))
    paginator = CachedCountKeysetPaginator(qs, PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context.update(
        rows=[history_row(a) for a in page.object_list],
        totals=history_totals(qs),
        page=page,
        query=query.urlencode(),
    )
    return render(request, "migrations_app/history.html", context)
