"""Reading the audit trail: who may see which events, and the filters pages and API share.

Auditors and admins see everything. Everyone else (audit.view_own) sees the events they
caused themselves, plus events about objects their role may view anyway: each app
registers its object types with the permission that opens them (in its AppConfig.ready():
inventory.* with inventory.view, plans with plan.view). Logins of other people, user
administration, status links and notification subscriptions stay with auditors.
"""

import datetime as dt

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField

from dashboard.audit.models import AuditEvent
from dashboard.permissions import can, is_scoped

# (object_type prefix, permission that opens it, object types under the prefix kept back)
_OPEN_TO_ROLES: list[tuple[str, str, frozenset[str]]] = []


def audit_visibility_register(*, prefix: str, permission: str, exclude=()) -> None:
    """Let holders of `permission` read events whose object type starts with `prefix`."""
    entry = (prefix, permission, frozenset(exclude))
    if entry not in _OPEN_TO_ROLES:
        _OPEN_TO_ROLES.append(entry)


def audit_events_visible(user) -> QuerySet[AuditEvent]:
    """The events the user may read (none for someone without a role)."""
    events = AuditEvent.objects.all()
    if can(user, "audit.view"):
        return events
    if not can(user, "audit.view_own"):
        return events.none()
    visible = Q(actor_user_id=user.pk, actor_type=AuditEvent.ActorType.USER)
    for prefix, permission, excluded in _OPEN_TO_ROLES:
        # A role scoped to host groups reads its own actions only: these prefixes would
        # open every group's plans and hosts.
        if can(user, permission) and not is_scoped(user, permission):
            opened = Q(object_type__startswith=prefix)
            if excluded:
                opened &= ~Q(object_type__in=sorted(excluded))
            visible |= opened
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
