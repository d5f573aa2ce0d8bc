"""Report API: a plan's per-VM report as CSV or JSON, and the migration history over every
plan (finished attempts, filtered, paginated, with totals). Reads only; bad filters are a
400 with the selector's message (dashboard.api.errors)."""

from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard.api.permissions import action_permission
from migrations_app.reports.history import (
    history_attempts,
    history_filters,
    history_row,
    history_totals,
)
from migrations_app.reports.outcomes import OUTCOMES
from migrations_app.reports.plan_report import plan_report, plan_report_csv
from migrations_app.scoping import visible_plans

ReportPermission = action_permission("plan.view")

HISTORY_PARAMETERS = [
    OpenApiParameter("host", str, description="host name or id (source or destination)"),
    OpenApiParameter("vm", str, description="VM name, id or UUID"),
    OpenApiParameter("group", str, description="host group of the source or destination"),
    OpenApiParameter(
        "person", str, description="username who drafted, approved or started the plan"
    ),
    OpenApiParameter(
        "since", str, description="finished at or after (YYYY-MM-DD or ISO date and time)"
    ),
    OpenApiParameter(
        "until", str, description="finished at or before (a date means the whole day)"
    ),
    OpenApiParameter(
        "outcome", str, description=f"one or more (comma-separated) of {', '.join(OUTCOMES)}"
    ),
    OpenApiParameter("page", int),
    OpenApiParameter("page_size", int),
]


class PlanReportView(APIView):
    """GET /api/v1/plans/{id}/report.csv|json: per VM start, end, bytes, passes, achieved
    downtime, result and error class."""

    permission_classes = [ReportPermission]

    @extend_schema(
        operation_id="plans_report",
        parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=["csv", "json"])],
        responses={(200, "text/csv"): bytes, (200, "application/json"): OpenApiTypes.OBJECT},
    )
    def get(self, request, pk: int, kind: str):
        plan = get_object_or_404(visible_plans(request.user), pk=pk)
        if kind == "csv":
            return plan_report_csv(plan)
        response = Response(plan_report(plan))
        response["Content-Disposition"] = f'inline; filename="plan-{plan.pk}-report.json"'
        return response


class HistoryViewSet(viewsets.GenericViewSet):
    """Finished attempts of every plan, newest first, with totals over the whole filter."""

    permission_classes = [ReportPermission]
    filter_backends: list = []  # the history filters are checked by the selector

    def get_queryset(self):
        rows = history_attempts(history_filters(self.request.query_params))
        return rows.filter(run__plan__in=visible_plans(self.request.user))

    def get_serializer_class(self):  # schema only; rows are built by history_row
        return serializers.Serializer

    @extend_schema(
        operation_id="history_list", parameters=HISTORY_PARAMETERS, responses=OpenApiTypes.OBJECT
    )
    def list(self, request):
        filters = history_filters(request.query_params)
        qs = history_attempts(filters)
        page = self.paginate_queryset(qs)
        response = self.get_paginated_response([history_row(a) for a in page])
        response.data["totals"] = history_totals(qs)
        return response
