"""Read-only API of the audit trail: /api/v1/audit-events/ with filters and exports."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission

from dashboard.audit.export import EXPORT_FIELDS, audit_export_csv, audit_export_json
from dashboard.audit.models import AuditEvent
from dashboard.audit.selectors import AuditEventFilter, audit_events_visible
from dashboard.permissions import can


class AuditReader(BasePermission):
    """Auditors and admins read everything; other roles a subset (see audit_selectors)."""

    message = "Your role does not allow reading the audit trail."

    def has_permission(self, request, view):
        return can(request.user, "audit.view") or can(request.user, "audit.view_own")


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = list(EXPORT_FIELDS)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Audit events, newest first; filter by object, actor, action (or prefix.*), time."""

    serializer_class = AuditEventSerializer
    permission_classes = [AuditReader]
    filterset_class = AuditEventFilter
    search_fields = ["object_repr", "reason", "actor_name"]
    ordering_fields = ["sequence", "created_at"]
    lookup_field = "sequence"

    def get_queryset(self):
        return audit_events_visible(self.request.user).order_by("-sequence")

    @extend_schema(
        parameters=[OpenApiParameter("as", str, enum=["csv", "json"], description="file type")],
        # The JSON export is an array of event objects (a bytes/binary schema made every
        # JSON export off-schema for clients that validate).
        responses={
            (200, "text/csv"): bytes,
            (200, "application/json"): {"type": "array", "items": {"type": "object"}},
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request):
        """The filtered events as a CSV or JSON file (?as=csv|json), oldest first."""
        events = self.filter_queryset(self.get_queryset()).order_by("sequence")
        kind = request.query_params.get("as", "csv")
        if kind not in ("csv", "json"):
            raise NotFound("Use ?as=csv or ?as=json.")
        if kind == "csv":
            return audit_export_csv(events, "ferry-audit")
        return audit_export_json(events, "ferry-audit")
