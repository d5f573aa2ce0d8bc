"""Migration history: every finished attempt of every plan, filtered, with totals.

The page and the API read the same filters (`history_filters`, which refuses bad input
with a message) and the same queryset (`history_attempts`). Totals are computed on the
filtered set in a constant number of queries: counts per outcome and VMs moved in one
aggregate, downtime percentiles from the completed attempts' downtimes in one more.
"""

import datetime as dt
import math
import re
import uuid

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from dashboard.errors import InputError
from migrations_app.models import Approval, ItemAttempt
from migrations_app.reports.outcomes import (
    COMPLETED,
    FINISHED_STATUSES,
    LABELS,
    OUTCOMES,
    attempt_outcome,
    outcome_q,
)

FILTERS = ("host", "vm", "group", "person", "since", "until", "outcome")
PERCENTILES = (50, 95, 99)
_TEXT_LIMIT = 200


def _when(name: str, raw: str, *, end_of_day: bool) -> dt.datetime:
    value = raw.strip()
    try:  # both parsers raise ValueError on a well-formed but impossible date
        day = parse_date(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
        moment = None if day else parse_datetime(value)
    except ValueError:
        day = moment = None
    if day is None and moment is None:
        raise InputError(
            f"{name}: '{raw[:40]}' is not a date (YYYY-MM-DD) or a date and time "
            "(YYYY-MM-DDTHH:MM[:SS][+00:00])."
        )
    if day is not None:
        moment = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
        if end_of_day:
            moment += dt.timedelta(days=1)  # the whole day: strictly before the next one
    elif timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise InputError(f"{name}: '{raw[:40]}' is out of range.") from None


def history_filters(params) -> dict:
    """The filters of a request (query parameters), checked; unknown values are refused."""
    out: dict = {}
    for name in ("host", "vm", "group", "person"):
        value = (params.get(name) or "").strip()
        if len(value) > _TEXT_LIMIT:
            raise InputError(f"{name}: at most {_TEXT_LIMIT} characters.")
        if value:
            out[name] = value
    since, until = (params.get("since") or "").strip(), (params.get("until") or "").strip()
    if since:
        out["since"] = _when("since", since, end_of_day=False)
    if until:
        out["until"] = _when("until", until, end_of_day=True)
        out["until_inclusive"] = not re.fullmatch(r"\d{4}-\d{2}-\d{2}", until)
    if since and until and out["until"] < out["since"]:
        raise InputError("until is before since: nothing can match.")
    outcome = (params.get("outcome") or "").strip()
    if outcome:
        wanted = [o.strip() for o in outcome.split(",") if o.strip()]
        unknown = [o for o in wanted if o not in OUTCOMES]
        if unknown:
            raise InputError(
                f"outcome: {', '.join(repr(o[:30]) for o in unknown)} is not one of "
                f"{', '.join(OUTCOMES)}."
            )
        out["outcome"] = wanted
    return out


def _is_id(value: str) -> bool:
    return value.isdigit() and len(value) < 19  # a bigint: longer digit strings are names


def _host_q(value: str, field: str) -> Q:
    if _is_id(value):
        return Q(**{f"{field}_id": int(value)})
    return Q(**{f"{field}__name": value})


def history_attempts(filters: dict | None = None) -> QuerySet:
    """Finished attempts matching the filters, newest first, with what the rows show."""
    filters = filters or {}
    qs = ItemAttempt.objects.filter(status__in=FINISHED_STATUSES, finished_at__isnull=False)
    host = filters.get("host")
    if host:
        qs = qs.filter(_host_q(host, "source_host") | _host_q(host, "destination_host"))
    vm = filters.get("vm")
    if vm:
        vm_q = Q(item__vm__name=vm)
        if _is_id(vm):
            vm_q |= Q(item__vm_id=int(vm))
        try:
            vm_q |= Q(item__vm__uuid=uuid.UUID(vm))
        except ValueError:
            pass
        qs = qs.filter(vm_q)
    group = filters.get("group")
    if group:
        qs = qs.filter(Q(source_host__group=group) | Q(destination_host__group=group))
    person = filters.get("person")
    if person:
        approved = Approval.objects.filter(
            plan_id=OuterRef("item__plan_id"), approver_name=person, decision="approved"
        )
        qs = qs.filter(
            Q(run__started_by_name=person) | Q(item__plan__author_name=person) | Exists(approved)
        )
    if "since" in filters:
        qs = qs.filter(finished_at__gte=filters["since"])
    if "until" in filters:
        op = "lte" if filters.get("until_inclusive") else "lt"
        qs = qs.filter(**{f"finished_at__{op}": filters["until"]})
    if filters.get("outcome"):
        wanted = Q()
        for outcome in filters["outcome"]:
            wanted |= outcome_q(outcome)
        qs = qs.filter(wanted)
    return qs.select_related(
        "item__vm", "item__plan", "run", "source_host", "destination_host"
    ).order_by("-finished_at", "-id")


def _percentile(values: list, pct: float):
    """Nearest rank: the smallest value that pct % of the values do not exceed."""
    if not values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(values)))
    return values[rank - 1]


def history_totals(qs: QuerySet) -> dict:
    """Attempts per outcome, VMs moved (distinct VMs with a completed attempt) and the
    completed attempts' downtime percentiles, over the filtered attempts."""
    base = qs.order_by()
    counts = base.aggregate(
        attempts=Count("id"),
        vms_moved=Count("item__vm_id", distinct=True, filter=Q(status="completed")),
        **{f"n_{o}": Count("id", filter=outcome_q(o)) for o in OUTCOMES},
    )
    downtimes = sorted(
        base.filter(status=COMPLETED, downtime_ms__isnull=False).values_list(
            "downtime_ms", flat=True
        )
    )
    return {
        "attempts": counts["attempts"],
        "vms_moved": counts["vms_moved"],
        "outcomes": {o: counts[f"n_{o}"] for o in OUTCOMES},
        "downtime_ms": {
            "measured": len(downtimes),
            **{f"p{p}": _percentile(downtimes, p) for p in PERCENTILES},
            "max": downtimes[-1] if downtimes else None,
        },
    }


def history_row(attempt: ItemAttempt) -> dict:
    """One attempt as the history API and page show it."""
    outcome = attempt_outcome(attempt.status, attempt.migrate_called_at is not None, attempt.kind)
    plan = attempt.item.plan
    return {
        "attempt": attempt.pk,
        "number": attempt.number,
        "plan": plan.pk,
        "plan_name": plan.name,
        "change_ticket": plan.change_ticket,
        "vm": attempt.item.vm.name,
        "vm_id": attempt.item.vm_id,
        "source": attempt.source_host.name,
        "destination": attempt.destination_host.name,
        "groups": sorted({attempt.source_host.group, attempt.destination_host.group} - {""}),
        "mode": attempt.item.mode,
        "driver": attempt.driver,
        "outcome": outcome,
        "outcome_label": LABELS[outcome],
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "total_time_ms": attempt.total_time_ms,
        "downtime_ms": attempt.downtime_ms,
        "bytes_transferred": attempt.bytes_transferred,
        "iterations": attempt.iterations,
        "error_class": attempt.error_class,
        "started_by": attempt.run.started_by_name,
        "author": plan.author_name,
    }
