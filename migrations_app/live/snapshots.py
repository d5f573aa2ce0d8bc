"""Read models for live pages: the snapshot a subscriber gets before the event stream."""

from django.db.models import Prefetch

from migrations_app.models import ItemAttempt, MigrationPlan, PlanItem, ProgressSample
from migrations_app.selectors.runs import latest_run


def _latest_sample(attempt: ItemAttempt | None) -> ProgressSample | None:
    if attempt is None:
        return None
    return attempt.samples.order_by("-at", "-id").first()


def sample_dict(sample: ProgressSample | None) -> dict | None:
    """The wire form of a progress sample."""
    if sample is None:
        return None
    return {
        "at": sample.at.isoformat(),
        "elapsed_ms": sample.elapsed_ms,
        "phase": sample.phase,
        "memory_total": sample.memory_total,
        "memory_processed": sample.memory_processed,
        "memory_remaining": sample.memory_remaining,
        "dirty_rate_bps": sample.dirty_rate_bps,
        "transfer_bps": sample.transfer_bps,
        "iteration": sample.iteration,
        "disk_total": sample.disk_total,
        "disk_processed": sample.disk_processed,
        "disk_remaining": sample.disk_remaining,
        "expected_downtime_ms": sample.expected_downtime_ms,
        "throttle_pct": sample.throttle_pct,
    }


def attempt_dict(attempt: ItemAttempt | None) -> dict | None:
    """The wire form of an attempt (without its samples)."""
    if attempt is None:
        return None
    return {
        "id": attempt.pk,
        "number": attempt.number,
        "driver": attempt.driver,
        "phase": attempt.phase,
        "status": attempt.status,
        "started_at": attempt.started_at.isoformat() if attempt.started_at else None,
        "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
        "total_time_ms": attempt.total_time_ms,
        "downtime_ms": attempt.downtime_ms,
        "iterations": attempt.iterations,
        "error_class": attempt.error_class,
        "error_message": attempt.error_message,
        "phase_times": attempt.phase_times,
        "postcopy": attempt.postcopy_at is not None,
        "force_complete_requested": attempt.force_complete_requested_at is not None,
        "cancel_requested": attempt.cancel_requested,
    }


def plan_snapshot(plan: MigrationPlan, *, redact_hosts: bool = False) -> dict:
    """Plan state, items with their latest attempt and sample, and the run's last sequence."""
    run = latest_run(plan)
    items = (
        PlanItem.objects.filter(plan=plan)
        .select_related("vm", "source_host", "destination_host")
        .prefetch_related(
            Prefetch("attempts", queryset=ItemAttempt.objects.order_by("-number", "-id"))
        )
    )
    rows = []
    for item in items:
        attempts = list(item.attempts.all())
        latest = attempts[0] if attempts else None
        rows.append(
            {
                "id": item.pk,
                "vm": item.vm.name,
                "source": _host_label(item.source_host, redact_hosts, "source"),
                "destination": _host_label(item.destination_host, redact_hosts, "destination"),
                "mode": item.mode,
                "status": item.status,
                "status_reason": item.status_reason,
                "held_by": _held_by(item, redact_hosts),
                "attempt": attempt_dict(latest),
                "sample": sample_dict(_latest_sample(latest)),
            }
        )
    return {
        "plan": {
            "id": plan.pk,
            "name": plan.name,
            "status": plan.status,
            "status_reason": plan.status_reason,
            "window_start": plan.window_start.isoformat() if plan.window_start else None,
            "window_end": plan.window_end.isoformat() if plan.window_end else None,
        },
        "run": {
            "id": run.pk,
            "status": run.status,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        }
        if run
        else None,
        "last_seq": run.event_seq if run else 0,
        "items": rows,
    }


def _held_by(item: PlanItem, redact_hosts: bool) -> str:
    """What keeps a queued item waiting; a redacted status link does not name hosts."""
    if item.status != PlanItem.Status.QUEUED or not item.held_by:
        return ""
    return "a migration budget (slots in use)" if redact_hosts else item.held_by


def _host_label(host, redact: bool, role: str) -> str | None:
    if host is None:
        return None
    return f"({role} host)" if redact else host.name


def dashboard_snapshot(plans=None) -> dict:
    """Plans that are running or paused, with item counts by status (of `plans`, a queryset
    narrowed to what the reader may see; all of them by default)."""
    plans = (
        (MigrationPlan.objects if plans is None else plans)
        .filter(status__in=["running", "paused", "scheduled"])
        .order_by("id")
    )
    rows = []
    for plan in plans.prefetch_related("items"):
        counts: dict[str, int] = {}
        for item in plan.items.all():
            counts[item.status] = counts.get(item.status, 0) + 1
        rows.append({"id": plan.pk, "name": plan.name, "status": plan.status, "items": counts})
    return {"plans": rows}
