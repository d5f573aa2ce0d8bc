"""Force-complete: pause the guest on its source so the rest of its memory moves and the
migration ends (Nova's live_migration_force_complete, vMotion's "stun"). The pause adds
to the downtime: about the data still to send at the rate the move reaches now, which is
shown before an operator asks for it.

Asked by an operator (item action, role operator) or by the policy (a timeout or a
convergence-schedule step whose action is force_complete). The request is a row update the
worker sees at its next heartbeat; the worker records that it pauses the source *before*
the pause, so a failure after it resumes only the pause Ferry made (safety.decide).
"""

from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import audit_record
from migrations_app.errors import ExecutionStateError
from migrations_app.live.events import run_event
from migrations_app.models import ItemAttempt, PlanItem, ProgressSample

A = ItemAttempt.Status
P = ItemAttempt.Phase

# Phases in which the guest still runs on the source while its memory is sent.
FORCEABLE_PHASES = (P.TRANSFER, P.CONVERGE)


def refusal(item: PlanItem, attempt: ItemAttempt | None) -> str:
    """Why this item cannot be force-completed now ("" when it can)."""
    name = item.vm.name
    if attempt is None or attempt.status != A.RUNNING:
        return f"{name} is not moving now: there is nothing to force-complete."
    if item.mode == PlanItem.Mode.STORAGE_ONLY:
        return (
            f"{name} moves storage only: the guest never pauses for it, its disks pivot as "
            "soon as their copies are in step."
        )
    if attempt.postcopy_at is not None:
        return (
            f"{name} is in post-copy: it already runs on the destination and the rest of "
            "its memory follows on demand."
        )
    if attempt.force_complete_requested_at is not None:
        by = f" by {attempt.force_complete_by}" if attempt.force_complete_by else ""
        return f"Force-complete of {name} was already asked{by}."
    if attempt.cancel_requested:
        return f"{name} is being cancelled."
    if attempt.migrate_called_at is None or attempt.phase not in FORCEABLE_PHASES:
        return f"{name} is in phase {attempt.get_phase_display()}, not sending memory."
    return ""


def extra_downtime(attempt: ItemAttempt) -> dict:
    """What a force-complete would add to the downtime now: the memory still to send at the
    rate of the latest sample (None when no sample says)."""
    sample = (
        ProgressSample.objects.filter(attempt=attempt)
        .order_by("-elapsed_ms", "-id")
        .values("memory_remaining", "transfer_bps", "elapsed_ms")
        .first()
    )
    if not sample or not sample["memory_remaining"] or not sample["transfer_bps"]:
        return {"extra_downtime_ms": None, "remaining_bytes": None, "rate_bps": None}
    return {
        "extra_downtime_ms": int(sample["memory_remaining"] / sample["transfer_bps"] * 1000),
        "remaining_bytes": sample["memory_remaining"],
        "rate_bps": sample["transfer_bps"],
    }


def item_force_complete(*, item: PlanItem, actor, reason: str = "") -> dict:
    """An operator asks for force-complete; ExecutionStateError (409) with the reason when
    it makes no sense now. Returns the request with the expected extra downtime."""
    with transaction.atomic():
        # FOR NO KEY UPDATE: the worker inserts samples that reference this row (FOR KEY
        # SHARE) while it holds its run's event counter; a plain FOR UPDATE here, then the
        # run's counter, deadlocked with it on PostgreSQL.
        attempt = (
            ItemAttempt.objects.select_for_update(no_key=True)
            .filter(item=item)
            .order_by("-number", "-id")
            .first()
        )
        why = refusal(item, attempt)
        if why:
            raise ExecutionStateError(why)
        expected = extra_downtime(attempt)
        name = getattr(actor, "username", "") or str(actor)
        ItemAttempt.objects.filter(pk=attempt.pk).update(
            force_complete_requested_at=timezone.now(), force_complete_by=name[:150]
        )
        audit_record(
            actor=actor,
            action="item.force_complete_requested",
            obj=item,
            before={"phase": attempt.phase},
            after={"attempt": attempt.pk, **expected},
            reason=reason,
        )
    # The live event after the commit, in its own transaction: holding the attempt row
    # while taking the run's event counter is the order a worker may hold the other way.
    run_event(
        run=attempt.run,
        kind="item.force_complete_requested",
        item=item,
        payload={"attempt": attempt.pk, "by": name, "reason": reason, **expected},
    )
    return {"item": item.pk, "attempt": attempt.pk, "force_complete_requested": True, **expected}


def policy_force_complete(*, attempt: ItemAttempt, worker: str, why: str) -> bool:
    """The policy asks for force-complete (a timeout or a schedule step): the same request
    row an operator sets, marked as the policy's. False when already asked."""
    return bool(
        ItemAttempt.objects.filter(
            pk=attempt.pk, claimed_by=worker, status=A.RUNNING, force_complete_requested_at=None
        ).update(
            force_complete_requested_at=timezone.now(), force_complete_by=f"policy: {why}"[:150]
        )
    )


def record_pause(*, attempt: ItemAttempt, worker: str) -> bool:
    """Before the pause: record that Ferry pauses the source (once; owned attempts only)."""
    now = timezone.now()
    touched = ItemAttempt.objects.filter(
        pk=attempt.pk, claimed_by=worker, status=A.RUNNING, ferry_paused_source_at=None
    ).update(ferry_paused_source_at=now)
    if touched:
        attempt.ferry_paused_source_at = now
    return bool(touched)
