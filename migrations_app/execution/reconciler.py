"""The reconciler: attempts whose worker vanished end in the true state.

A lease that expired means the worker died, hung or was cut off. Before the transfer call
nothing was moved, so the attempt is queued again. After it, the reconciler takes the
lease over (a new epoch: the old worker's next action on a hypervisor is refused by its
fencing check) and asks both hypervisors, through the same decision table the runner uses
after a failure (execution.safety):
- Ferry's job still runs, or post-copy began, or the VM arrived and was not yet verified:
  re-attach and follow it to the end (verify and cleanup included; a failed post-copy is
  recovered there);
- the VM runs on its source only: the transfer failed; the hosts are made safe (the
  source's autostart put back, leftovers on the destination removed);
- anything else: the safety actions (pause a second copy, disarm the source's autostart)
  and an operator gets the evidence.
Run at worker start and by the periodic tick, so no attempt stays "running" forever.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from migrations_app.execution import claims, errors, runner, safety, services
from migrations_app.execution.drivers import open_session
from migrations_app.execution.drivers.base import Known
from migrations_app.execution.guard import Guard, LeaseLost
from migrations_app.execution.tasks import execute_attempt_task
from migrations_app.models import ItemAttempt, PlanRun

logger = logging.getLogger("ferry.execution.reconciler")

A = ItemAttempt.Status


def expired_attempt_ids() -> list[int]:
    """Attempts running under a lease that ran out."""
    return list(claims.expired().values_list("pk", flat=True))


def orphans_requeue() -> list[int]:
    """Queued attempts of running runs that no worker claimed for FERRY_ORPHAN_SECONDS:
    their task was lost (a worker died holding it, the claim's transaction failed, a queue
    dropped it), and nothing else would ever start them. Their task is enqueued again, at
    most once per period; claiming is conditional, so a task that was only slow and the
    new one cannot both act (the second finds it claimed and does nothing)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=float(settings.FERRY_ORPHAN_SECONDS))
    stale = ItemAttempt.objects.filter(
        status=A.QUEUED,
        cancel_requested=False,
        run__status=PlanRun.Status.RUNNING,
        queued_at__lt=cutoff,
    )
    ids = list(stale.values_list("pk", flat=True))
    if ids:
        ItemAttempt.objects.filter(pk__in=ids, status=A.QUEUED).update(queued_at=now)
        for attempt_id in ids:
            logger.warning(
                "attempt %s: queued and unclaimed since before %s; task enqueued again",
                attempt_id,
                cutoff,
            )
            transaction.on_commit(lambda a=attempt_id: execute_attempt_task.enqueue(a))
    return ids


def reconcile_attempt(attempt_id: int) -> str:
    """Bring one expired attempt to the truth (may follow a running job to its end)."""
    attempt = ItemAttempt.objects.filter(pk=attempt_id).select_related("item").first()
    if attempt is None or attempt.status != A.RUNNING:
        return "not running"
    if attempt.lease_expires_at and attempt.lease_expires_at >= timezone.now():
        return "lease still held"
    if attempt.migrate_called_at is None:
        ok = services.attempt_requeue(attempt=attempt, reason="worker lost before the transfer")
        return "requeued" if ok else "raced"
    worker = claims.worker_name()
    if not claims.take_over(attempt_id, worker):
        return "taken by another reconciler"
    attempt = services.attempt_load(attempt_id)
    guard = Guard(attempt.pk, worker, attempt.lease_epoch)
    try:
        session = open_session(attempt)
    except errors.ExecutionError as exc:
        services.attempt_finish(
            attempt=attempt,
            worker=worker,
            status=A.NEEDS_ATTENTION,
            error=errors.ExecutionError(
                errors.AMBIGUOUS,
                f"The worker was lost and the source host cannot be asked: {exc.message}",
                exc.libvirt_message,
            ),
            reconciled=True,
        )
        return "needs attention"
    session.guard = guard
    prepared = (attempt.evidence or {}).get("prepare") or {}
    known = Known(
        call=safety.CALL_UNKNOWN,
        postcopy=attempt.postcopy_at is not None,
        source_autostart=prepared.get("source_autostart"),
        ferry_paused_source=attempt.ferry_paused_source_at is not None,
    )
    try:
        if attempt.item.mode == "storage_only":
            session.attach()
            where = session.locate()
            follow = where.job_active or session.storage_moved()
            decision = None
        else:
            situation = session.situation(known)
            decision = safety.decide(situation)
            where = session.locate()
            # In flight, post-copy (recovery happens in the runner), or arrived but not yet
            # verified and cleaned up: the runner follows it from here.
            follow = decision.verdict in (safety.IN_FLIGHT, safety.ON_DESTINATION) or (
                situation.postcopy and decision.verdict == safety.NEEDS_ATTENTION
            )
        services.attempt_evidence(
            attempt=attempt,
            worker=worker,
            key="reconciled",
            value={
                "location": where.as_dict(),
                "decision": decision.as_dict() if decision else None,
            },
        )
        if follow:
            logger.info("attempt %s: re-attaching (%s)", attempt_id, where.as_dict())
            session.close()
            session = None
            return "reattached: " + runner.reattach(attempt_id, worker)
        made_safe = session.make_safe(known)
    except LeaseLost:
        return "lease lost"
    finally:
        if session is not None:
            session.close()
    verdict = made_safe["decision"]["verdict"]
    if verdict == safety.ON_SOURCE:
        with transaction.atomic():
            services.attempt_finish(
                attempt=attempt,
                worker=worker,
                status=A.FAILED,
                error=errors.ExecutionError(
                    errors.WORKER_LOST,
                    "The worker was lost and the transfer did not complete; the VM runs on "
                    "its source.",
                ),
                evidence={"failure": {"location": where.as_dict(), "safety": made_safe}},
                reconciled=True,
            )
        return "failed (on source)"
    services.attempt_finish(
        attempt=attempt,
        worker=worker,
        status=A.NEEDS_ATTENTION,
        error=errors.ExecutionError(
            errors.AMBIGUOUS,
            f"{errors.EXPLANATIONS[errors.AMBIGUOUS]} {made_safe['decision']['reason']}",
            "; ".join(where.errors),
        ),
        evidence={"failure": {"location": where.as_dict(), "safety": made_safe}},
        reconciled=True,
    )
    return "needs attention"
