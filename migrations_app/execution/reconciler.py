"""The reconciler: attempts whose worker vanished end in the true state.

A lease that expired means the worker died or hung. Before the transfer call nothing was
moved, so the attempt is queued again. After it, both hypervisors are asked: a job still
running (or a VM already on its destination) is re-attached and followed to the end; a VM
running on its source only means the transfer failed; anything else is left for an
operator with the evidence. Run at worker start and by the periodic tick, so no attempt
stays "running" forever.
"""

import logging

from django.db import transaction
from django.utils import timezone

from migrations_app.execution import claims, errors, runner, services
from migrations_app.execution.drivers import open_session
from migrations_app.models import ItemAttempt

logger = logging.getLogger("ferry.execution.reconciler")

A = ItemAttempt.Status


def expired_attempt_ids() -> list[int]:
    """Attempts running under a lease that ran out."""
    return list(claims.expired().values_list("pk", flat=True))


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
    try:
        session.prepare() if attempt.item.mode == "storage_only" else None
        where = session.locate()
        moved = (
            session.storage_moved()
            if attempt.item.mode == "storage_only" and hasattr(session, "storage_moved")
            else where.destination == "running" and where.source not in ("running", "paused")
        )
    finally:
        session.close()
    services.attempt_evidence(
        attempt=attempt, worker=worker, key="reconciled", value={"location": where.as_dict()}
    )
    if where.job_active or moved:
        logger.info("attempt %s: re-attaching (%s)", attempt_id, where.as_dict())
        return "reattached: " + runner.reattach(attempt_id, worker)
    on_source = where.source == "running" and where.destination in (None, "shutoff")
    if on_source and not where.errors:
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
                evidence={"failure": {"location": where.as_dict()}},
                reconciled=True,
            )
        return "failed (on source)"
    services.attempt_finish(
        attempt=attempt,
        worker=worker,
        status=A.NEEDS_ATTENTION,
        error=errors.ExecutionError(
            errors.AMBIGUOUS,
            f"{errors.EXPLANATIONS[errors.AMBIGUOUS]} Source: {where.source}, "
            f"destination: {where.destination}.",
            "; ".join(where.errors),
        ),
        evidence={"failure": {"location": where.as_dict()}},
        reconciled=True,
    )
    return "needs attention"
