"""Reading the audit trail: who may see which events, and the filters pages and API share.

Auditors and admins see everything. Everyone else (audit.view_own) sees events about
plans and inventory, which every role may view anyway (object types `migrations_app.*`
and `inventory.*`), plus the events they caused themselves. Logins of other people,
user administration, share links and notification subscriptions stay with auditors.
"""

import datetime as dt

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField

from dashboard.models import AuditEvent
from dashboard.permissions import can


def audit_events_visible(user) -> QuerySet[AuditEvent]:
    """The events the user may read (none for someone without a role)."""
    events = AuditEvent.objects.all()
    if can(user, "audit.view"):
        return events
    if not can(user, "audit.view_own"):
        return events.none()
    visible = Q(actor_user_id=user.pk, actor_type=AuditEvent.ActorType.USER)
    if can(user, "plan.view"):
        visible |= Q(object_type__startswith="migrations_app.")
    if can(user, "inventory.view"):
        visible |= Q(object_type__startswith="inventory.")
    return events.filter(visible)


class UTCIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date and time, in UTC: PostgreSQL refuses offsets beyond ±15:59, which
    Python accepts, and the query must not fail after the input was accepted."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError("This date and time is out of range.", code="invalid") from None


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


class AuditEventFilter(django_filters.FilterSet):
    """Filters of the audit list, its exports and the API."""

    object_type = django_filters.CharFilter()
    object_id = django_filters.CharFilter()
    actor = django_filters.CharFilter(field_name="actor_name", lookup_expr="iexact")
    actor_type = django_filters.ChoiceFilter(choices=AuditEvent.ActorType.choices)
    action = django_filters.CharFilter(method="filter_action", help_text="exact, or prefix.*")
    since = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    request_id = django_filters.CharFilter()

    class Meta:
        model = AuditEvent
        fields = ["object_type", "object_id", "actor", "actor_type", "action", "since", "until"]

    def filter_action(self, queryset, name, value):
        if value.endswith(".*"):
            return queryset.filter(action__startswith=value[:-1])
        return queryset.filter(action=value)


def audit_events_filtered(user, params) -> tuple[QuerySet[AuditEvent], AuditEventFilter]:
    """Visible events narrowed by query parameters, newest first, and the bound filter."""
    bound = AuditEventFilter(params, queryset=audit_events_visible(user))
    events = bound.qs if bound.is_valid() else bound.queryset.none()
    return events.order_by("-sequence"), bound


def audit_events_of_plan(user, plan) -> QuerySet[AuditEvent]:
    """A plan's timeline: its own events and its items', approvals', runs' and links'."""
    from dashboard.change_record import plan_audit_query
    from migrations_app.models import PlanRun

    runs = list(PlanRun.objects.filter(plan=plan).prefetch_related("attempts"))
    return audit_events_visible(user).filter(plan_audit_query(plan, runs)).order_by("sequence")
