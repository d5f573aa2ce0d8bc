"""What happens after an attempt that did not end well: a failed validation after
switchover (migrate back to the source, or keep the VM and call an operator), and a
transient failure (retry after a backoff, optionally to another host placement picks).

Each service runs inside the transaction that finished the attempt (the runner opens it),
so the scheduler can never see the item as ended between the attempt's end and what
follows it (it would close the run). Every decision is audited and sent as a run event.
"""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import audit_record
from migrations_app.checks.snapshot import snapshot_load
from migrations_app.execution import errors
from migrations_app.execution.services import attempt_create, worker_actor
from migrations_app.execution.tasks import execute_attempt_task, schedule_run_task
from migrations_app.execution.validation import validation_summary
from migrations_app.live.events import run_event
from migrations_app.models import ItemAttempt, PlanItem
from migrations_app.notifications.services import notify_plan_event
from migrations_app.placement import placement_run

I = PlanItem.Status  # noqa: E741
K = ItemAttempt.Kind
# Failures that say nothing about the VM or the hosts' fitness, only about a moment:
# worth another try (errors.py has the classes).
TRANSIENT = frozenset({errors.CONNECTION_LOST, errors.TIMEOUT, errors.CALL_TIMEOUT})


def attempt_validated(*, attempt: ItemAttempt, worker: str, result: dict) -> None:
    """Record a validation's result on the attempt (evidence), the audit trail and the run."""
    with transaction.atomic():
        row = ItemAttempt.objects.select_for_update(no_key=True).filter(
            pk=attempt.pk, claimed_by=worker
        )
        row = row.first()
        if row is None:
            return
        row.evidence = {**(row.evidence or {}), "validation": result}
        row.save(update_fields=["evidence"])
        attempt.evidence = row.evidence
        summary = validation_summary(result)
        audit_record(
            actor=worker_actor(row.driver),
            action="attempt.validated" if result["ok"] else "attempt.validation_failed",
            obj=row,
            after={"item": row.item_id, **result},
            reason="" if result["ok"] else summary,
        )
        run_event(
            run=attempt.run,
            kind="item.validation",
            item=attempt.item,
            payload={"attempt": row.pk, "ok": result["ok"], "summary": summary},
        )


def after_failed_validation(*, attempt: ItemAttempt, result: dict) -> str:
    """The move completed but validation failed: migrate back or keep, by the policy.
    Inside the transaction that finished the attempt; returns what was decided."""
    item = (
        PlanItem.objects.select_for_update(no_key=True).select_related("vm").get(pk=attempt.item_id)
    )
    summary = validation_summary(result)
    actor = worker_actor(attempt.driver)
    back = result.get("on_failure") == "migrate_back"
    if back and item.mode != PlanItem.Mode.LIVE:
        # A storage copy back needs the reverse storage map; Ferry does not guess one.
        back = False
        summary += " A migrate-back is automatic only for live moves on shared storage."
    if not back:
        _item_decided(
            item,
            status=I.NEEDS_ATTENTION,
            reason=f"{summary} The VM stays on {attempt.destination_host.name}.",
            actor=actor,
            action="item.validation_kept",
            before={"status": I.COMPLETED},
            after={"attempt": attempt.pk},
        )
        notify_plan_event(
            attempt.run.plan,
            "attention",
            actor=actor,
            extra={"item": item.pk, "vm": item.vm.name, "reason": item.status_reason},
        )
        run_event(
            run=attempt.run,
            kind="item.finished",
            item=item,
            payload={"status": item.status, "reason": item.status_reason},
        )
        return "kept"
    reason = (
        f"{summary} Ferry migrated the VM back from {attempt.destination_host.name} to "
        f"{attempt.source_host.name}."
    )
    back_attempt = attempt_create(
        run=attempt.run,
        item=item,
        driver=attempt.driver,
        kind=K.ROLLBACK,
        source_host=attempt.destination_host,
        destination_host=attempt.source_host,
        evidence={"rollback": {"of_attempt": attempt.pk, "reason": reason, "validation": result}},
    )
    _item_decided(
        item,
        status=I.RUNNING,
        reason=f"{summary} Migrating back to {attempt.source_host.name}.",
        actor=actor,
        action="item.rollback_started",
        before={"status": I.COMPLETED, "attempt": attempt.pk},
        after={
            "rollback_attempt": back_attempt.pk,
            "from": attempt.destination_host.name,
            "to": attempt.source_host.name,
        },
    )
    # At once, not through the scheduler's queue: the VM should not serve from a host
    # where it failed validation a moment longer than needed.
    transaction.on_commit(lambda: execute_attempt_task.enqueue(back_attempt.pk))
    return "migrating back"


def retry_after_failure(*, attempt: ItemAttempt, error: errors.ExecutionError) -> dict | None:
    """A transient failure with the VM on its source: queue the item again after the
    policy's backoff (another destination when asked and placement finds one). Inside the
    transaction that finished the attempt; None when no retry is due."""
    if error.error_class not in TRANSIENT or attempt.kind == K.ROLLBACK:
        return None
    item = (
        PlanItem.objects.select_for_update(no_key=True)
        .select_related("plan", "vm")
        .get(pk=attempt.item_id)
    )
    policy = item.get_policy()
    done = ItemAttempt.objects.filter(run=attempt.run, item=item, kind=K.RETRY).count()
    if done >= policy.retry_max or item.status != I.FAILED:
        return None
    number = done + 1
    delay = policy.retry_delay_s(number)
    after = timezone.now() + timedelta(seconds=delay)
    destination, placed = None, {}
    if policy.retry_other_host:
        destination, placed = _other_host(item, exclude={attempt.destination_host_id})
    retry = {
        "after": after.isoformat(),
        "number": number,
        "of": policy.retry_max,
        "delay_s": delay,
        "destination": destination,
        "reason": f"{error.message} (retry {number} of {policy.retry_max} in {delay} s)",
        **({"placement": placed} if placed else {}),
    }
    item.retry = retry
    _item_decided(
        item,
        status=I.QUEUED,
        reason=retry["reason"],
        actor=worker_actor(attempt.driver),
        action="item.retry_scheduled",
        before={"status": item.status, "reason": item.status_reason},
        after={"failed_attempt": attempt.pk, "error_class": error.error_class, **retry},
        fields=("retry",),
    )
    run_event(
        run=attempt.run,
        kind="item.retry_scheduled",
        item=item,
        payload={"attempt": attempt.pk, **retry},
    )
    run_id = attempt.run_id
    transaction.on_commit(lambda: _wake_scheduler(run_id, after))
    return retry


def _item_decided(item, *, status, reason, actor, action, before, after, fields=()) -> None:
    """Write the item's new status and reason (and `fields`) with its audit event."""
    item.status = status
    item.status_reason = reason
    item.save(update_fields=["status", "status_reason", *fields])
    audit_record(
        actor=actor,
        action=action,
        obj=item,
        before=before,
        after={"status": status, **after},
        reason=reason,
    )


def _wake_scheduler(run_id: int, after) -> None:
    """Ask for a scheduling pass when the backoff ends (the periodic tick does it too)."""
    backend = schedule_run_task.get_backend()
    if backend.supports_defer:
        schedule_run_task.using(run_after=after).enqueue(run_id)


def _other_host(item: PlanItem, exclude: set) -> tuple[int | None, dict]:
    """A destination other than `exclude` that passes every placement check for this item
    (placement over today's inventory); (None, note) when there is none."""
    snapshot = snapshot_load(item.plan, item_ids=[item.pk])
    for host_id in exclude | {item.destination_host_id}:
        snapshot.hosts.pop(host_id, None)
    for info in snapshot.items:
        info.destination_id = None
    placements = placement_run(snapshot, replace=True, only={item.pk})
    if not placements or placements[0].destination_id is None:
        note = placements[0].note if placements else {}
        return None, {"chosen": None, "reason": note.get("reason", "no other host fits")}
    chosen = placements[0]
    return chosen.destination_id, {
        "chosen": chosen.destination_id,
        "reason": (chosen.note or {}).get("reason", ""),
    }
