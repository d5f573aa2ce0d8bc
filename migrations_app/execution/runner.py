"""The runner: one attempt, phase by phase.

preflight → prepare → transfer (→ converge) → switchover → verify → cleanup → done.
The runner holds the lease through its Guard (heartbeats, and the fencing check before
every action on a hypervisor), makes the decisions the policy asks for, and records every
step through services; the driver session only talks to the hypervisor. The transfer call
is made at most once per attempt: `claims.mark_migrate_called` must touch exactly one row
right before it. After any failure both hosts are asked and the decision table
(execution.safety) says what makes them safe; the inventory is then re-read from libvirt
so it says where the VM really is.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, OperationalError, transaction
from django.utils import timezone

from inventory.sync import host_sync
from migrations_app.execution import (
    claims,
    errors,
    faults,
    item_hooks,
    recovery,
    safety,
    services,
)
from migrations_app.execution.drivers import open_session
from migrations_app.execution.drivers.base import Known, ReadError, Session
from migrations_app.execution.drivers.rehearsal import speed as rehearsal_speed
from migrations_app.execution.guard import Guard, LeaseLost
from migrations_app.execution.monitor import TransferMonitor, phase_enter
from migrations_app.execution.preflight import preflight_run
from migrations_app.execution.validation import validation_run
from migrations_app.models import ItemAttempt

logger = logging.getLogger("ferry.execution.runner")

P = ItemAttempt.Phase
A = ItemAttempt.Status
A_LIBVIRT = ItemAttempt.Driver.LIBVIRT

__all__ = ["LeaseLost", "execute", "reattach"]


def execute(attempt_id: int) -> str:
    """Claim a queued attempt and carry it out; returns what happened (for task results)."""
    worker = claims.worker_name()
    for tried in range(1, claims.CLAIM_TRIES + 1):
        try:
            # The claim, the start (audit, events) and entering preflight commit together.
            with transaction.atomic():
                if not claims.claim(attempt_id, worker):
                    # Delivered twice, cancelled before start, or already taken: never
                    # act twice.
                    return "not claimed"
                attempt = services.attempt_load(attempt_id)
                services.attempt_started(attempt=attempt, worker=worker, phase=P.PREFLIGHT)
            break
        except OperationalError as exc:
            # Rolled back whole (nothing was asked of libvirt yet): the attempt is still
            # queued, and a task that gave up here would leave it waiting for nobody.
            if not claims.lock_conflict(exc) or tried == claims.CLAIM_TRIES:
                raise
            logger.warning(
                "attempt %s: claim rolled back by the database (%s); again", attempt_id, exc
            )
            time.sleep(0.1 * tried)
    return _drive(attempt, Guard(attempt.pk, worker, attempt.lease_epoch), reattach=False)


def reattach(attempt_id: int, worker: str) -> str:
    """Follow a transfer whose worker vanished (the caller has taken over the lease)."""
    attempt = services.attempt_load(attempt_id)
    guard = Guard(attempt.pk, worker, attempt.lease_epoch)
    services.attempt_started(attempt=attempt, worker=worker, reattached=True)
    return _drive(attempt, guard, reattach=True)


def _drive(attempt: ItemAttempt, guard: Guard, reattach: bool) -> str:
    session: Session | None = None
    policy = attempt.item.get_policy()
    worker = guard.worker
    try:
        session = open_session(attempt)
        session.guard = guard
        if not reattach:
            _transfer_start(attempt, guard, session)
        else:
            session.attach()
        failure = TransferMonitor(
            attempt,
            guard,
            session,
            policy,
            scale=_scale(attempt),
            timeout_s=_timeout_s(attempt, policy) * _scale(attempt),
        ).run()
        if failure is not None and _postcopy_failed(attempt, session, failure):
            failure = _recover_postcopy(attempt, guard, session, failure)
        if failure is not None:
            raise failure
        phase_enter(attempt, guard, P.SWITCHOVER)
        stats = session.completed_stats()
        forced = _after_force_complete(attempt, guard, session, stats)
        services.attempt_note(
            attempt=attempt,
            kind="item.switchover",
            payload={
                "downtime_ms": stats.get("downtime"),
                "total_time_ms": stats.get("time_elapsed"),
                "iterations": stats.get("memory_iteration"),
                **({"force_complete": forced} if forced else {}),
            },
        )
        phase_enter(attempt, guard, P.VERIFY)
        _verify(attempt, guard, session, policy)
        validation = _validate(attempt, guard, session, policy)
        phase_enter(attempt, guard, P.CLEANUP)
        cleaned = session.cleanup(policy.remove_source_disks)
        # The attempt's end and what a failed validation starts commit together (recovery).
        with transaction.atomic():
            finished = services.attempt_finish(
                attempt=attempt,
                worker=worker,
                status=A.COMPLETED,
                stats=stats,
                evidence={"cleanup": cleaned, "reattached": reattach},
                disk_pools=session.new_disk_pools(),
            )
            if finished and validation is not None and not validation["ok"]:
                return "completed; " + recovery.after_failed_validation(
                    attempt=attempt, result=validation
                )
        item_hooks.post_migration(attempt)
        return "completed"
    except LeaseLost:
        logger.warning("attempt %s: lease lost, leaving it to its new owner", attempt.pk)
        return "lease lost"
    except errors.ExecutionError as exc:
        return _fail(attempt, guard, session, exc)
    except DatabaseError:
        # Ferry's own database went away (failover, terminated backend), not the migration:
        # leave the attempt claimed; its lease expires and the reconciler asks libvirt for
        # the truth (requeue before the migrate call, re-attach after it).
        logger.warning("attempt %s: lost the database; leaving it to the reconciler", attempt.pk)
        raise
    except Exception as exc:
        if hasattr(exc, "get_error_message"):
            # A libvirt error no step turned into an ExecutionError: keep where it came from.
            logger.warning("attempt %s: libvirt error: %s", attempt.pk, exc, exc_info=True)
            return _fail(attempt, guard, session, errors.from_libvirt(exc))
        logger.exception("attempt %s failed unexpectedly", attempt.pk)
        return _fail(
            attempt, guard, session, errors.ExecutionError(errors.LIBVIRT, str(exc), repr(exc))
        )
    finally:
        if session is not None:
            session.close()


def _transfer_start(attempt, guard, session) -> None:
    """Preflight, prepare, the one-call gate, then the one transfer call."""
    worker = guard.worker
    item_hooks.pre_migration(attempt)
    findings = preflight_run(attempt, session)
    blockers = [f for f in findings if f.get("severity") == "blocker"]
    if blockers:
        services.attempt_evidence(attempt=attempt, worker=worker, key="preflight", value=findings)
        raise errors.ExecutionError(
            blockers[0].get("error_class", errors.PREFLIGHT_BLOCKED),
            "Preflight: " + "; ".join(f["message"] for f in blockers),
            str(blockers[0].get("evidence", {}).get("libvirt", "")),
        )
    prepare_started = timezone.now().isoformat()
    try:
        prepared = session.prepare()
    except Exception:
        # The failure belongs to prepare; the checks that passed stay on record.
        services.attempt_evidence(attempt=attempt, worker=worker, key="preflight", value=findings)
        phase_enter(attempt, guard, P.PREPARE)
        raise
    # Evidence (with the source's autostart, recorded before anything changes it), the
    # phases, the lease and the one-call gate: one commit, then the call.
    gate = services.attempt_transfer_begin(
        attempt=attempt,
        worker=worker,
        evidence={"preflight": findings, "prepare": prepared},
        prepare_started=prepare_started,
    )
    if gate == "cancelled":
        raise errors.ExecutionError(
            errors.ABORTED_BY_OPERATOR, "Cancelled before the transfer started."
        )
    if gate != "go":
        raise LeaseLost()
    guard.last_beat = time.monotonic()  # the gate renewed the lease
    session.start()


def _after_force_complete(attempt, guard, session, stats: dict) -> dict | None:
    """A move Ferry force-completed has arrived: resume the guest on the destination if
    libvirt left it paused, and count the downtime from Ferry's pause (QEMU counts only its
    own stop-and-copy, not a pause that was already there)."""
    attempt.refresh_from_db(fields=["ferry_paused_source_at"])
    if attempt.ferry_paused_source_at is None:
        return None
    resumed = session.resume_after_force_complete()
    ended = timezone.now()
    elapsed_ms = stats.get("time_elapsed")
    if resumed is None and elapsed_ms and attempt.migrate_called_at is not None:
        # libvirt ran the guest on at the switch, which may be long before now when the
        # worker was lost and a reconciler re-attached: the job's end is the pause's end.
        ended = min(ended, attempt.migrate_called_at + timedelta(milliseconds=int(elapsed_ms)))
    stood_ms = max(0, int((ended - attempt.ferry_paused_source_at).total_seconds() * 1000))
    reported = stats.get("downtime")
    stats["downtime"] = max(int(reported or 0), stood_ms)
    forced = {
        "paused_at": attempt.ferry_paused_source_at.isoformat(),
        "downtime_ms_from_pause": stood_ms,
        "downtime_ms_reported_by_hypervisor": reported,
        "resumed_on_destination": resumed,
    }
    services.attempt_evidence(
        attempt=attempt,
        worker=guard.worker,
        key="force_complete",
        value={**((attempt.evidence or {}).get("force_complete") or {}), **forced},
    )
    return forced


def _timeout_s(attempt: ItemAttempt, policy) -> float:
    """The policy's completion timeout for the GiB to move (memory, plus copied disks)."""
    gib = max(attempt.item.vm.memory_mib or 0, 256) / 1024
    if attempt.item.mode in ("live_copy", "storage_only"):
        disk_bytes = sum(d.capacity_bytes or 0 for d in attempt.item.vm.disks.all())
        gib += disk_bytes / 1024**3
    return policy.completion_timeout_s(gib)


def _scale(attempt: ItemAttempt) -> float:
    """Real seconds per policy second: a rehearsal runs faster than real time."""
    if attempt.driver == ItemAttempt.Driver.REHEARSAL:
        return 1.0 / max(rehearsal_speed(), 0.001)
    return 1.0


# --------------------------------------------------------------------------- post-copy


def _postcopy_failed(attempt, session, failure) -> bool:
    """Whether the transfer failed after post-copy began (and not because Ferry aborted)."""
    if attempt.item.mode == "storage_only":
        return False
    attempt.refresh_from_db(fields=["postcopy_at"])
    return (attempt.postcopy_at is not None or session.postcopy_active()) and (
        failure.error_class not in (errors.ABORTED_BY_OPERATOR, errors.PREFLIGHT_BLOCKED)
    )


def _recover_postcopy(attempt, guard, session, failure) -> errors.ExecutionError | None:
    """A failed post-copy leaves both sides paused with the guest's memory split between
    them: retry VIR_MIGRATE_POSTCOPY_RESUME while the budget lasts (the link may come back);
    after it, both sides stay paused and an operator decides. The source is never resumed."""
    services.attempt_note(
        attempt=attempt,
        kind="item.postcopy_failed",
        payload={"error_class": failure.error_class, "message": failure.message},
    )
    deadline = time.monotonic() + float(settings.FERRY_POSTCOPY_RECOVER_SECONDS)
    tries = 0
    supported, why = getattr(session, "postcopy_resume_supported", lambda: (True, ""))()
    if not supported:
        services.attempt_note(
            attempt=attempt, kind="item.postcopy_resume_unavailable", payload={"why": why}
        )
    while time.monotonic() < deadline:
        guard.beat()
        tries += 1
        try:
            resumed = session.postcopy_resume()
        except errors.ExecutionError as exc:
            logger.warning("attempt %s: post-copy resume: %s", attempt.pk, exc)
            resumed = False
        if resumed or _arrived(session):
            services.attempt_note(
                attempt=attempt, kind="item.postcopy_recovered", payload={"tries": tries}
            )
            services.attempt_evidence(
                attempt=attempt,
                worker=guard.worker,
                key="postcopy_recovery",
                value={"tries": tries, "recovered": True},
            )
            return None
        for _ in range(5):  # wait ~5 s between tries, renewing the lease
            time.sleep(1.0)
            guard.beat()
    services.attempt_evidence(
        attempt=attempt,
        worker=guard.worker,
        key="postcopy_recovery",
        value={
            "tries": tries if supported else 0,
            "recovered": False,
            "budget_s": float(settings.FERRY_POSTCOPY_RECOVER_SECONDS),
            "resume_unavailable": why,
        },
    )
    tried = (
        f"Post-copy resume was tried {tries} time(s) over "
        f"{settings.FERRY_POSTCOPY_RECOVER_SECONDS:.0f} s without success"
        if supported
        else f"{why} The VM did not arrive within {settings.FERRY_POSTCOPY_RECOVER_SECONDS:.0f} s"
    )
    return errors.ExecutionError(
        errors.POSTCOPY_FAILED,
        f"{errors.EXPLANATIONS[errors.POSTCOPY_FAILED]} {tried}; both sides are left paused "
        "for an operator.",
        failure.libvirt_message,
    )


def _arrived(session) -> bool:
    try:
        where = session.locate()
    except (ReadError, errors.ExecutionError):
        return False
    # Arrived means the whole migration ended: the destination runs, and the source is no
    # longer the paused half of a post-copy (libvirt learns of a QEMU-level recovery from
    # QEMU's events a little later than the destination resumes; verify must not start in
    # between, or it sees the stale source).
    return (
        where.destination == "running"
        and where.destination_reason != "postcopy_failed"
        and not (where.source == "paused" and where.source_reason in safety.POSTCOPY_REASONS)
    )


# --------------------------------------------------------------------------- verify


def _verify(attempt, guard, session, policy) -> None:
    """Watch the VM for verify_seconds: running where it should, the guest agent answering
    (when it did before the move), and its vCPUs running over the window."""
    seconds = policy.verify_seconds * _scale(attempt)
    deadline = time.monotonic() + seconds
    interval = min(1.0, float(settings.FERRY_SAMPLE_SECONDS))
    checks = 0
    faults.point("verify.started", session=session, attempt=attempt)
    problem = session.verify_progress()  # the vCPU time baseline
    while problem is None:
        guard.beat()
        problem = session.verify_once()
        checks += 1
        if problem is not None or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if problem is None and checks and attempt.driver == ItemAttempt.Driver.LIBVIRT:
        problem = session.verify_progress()
    if problem is not None:
        raise errors.ExecutionError(
            errors.GUEST_DIED, f"{errors.EXPLANATIONS[errors.GUEST_DIED]} {problem}", problem
        )
    services.attempt_evidence(
        attempt=attempt,
        worker=guard.worker,
        key="verify",
        value={
            "seconds": policy.verify_seconds,
            "checks": checks,
            "guest_agent": getattr(session.ctx, "agent_expected", False),
            "vcpu_time_advanced": attempt.driver == ItemAttempt.Driver.LIBVIRT,
        },
    )


def _validate(attempt, guard, session, policy) -> dict | None:
    """Validation after switchover (policy.validation), recorded on the attempt and in the
    audit trail; None when none is asked (and never for a migrate-back)."""
    spec = policy.validation_spec
    if not spec or attempt.kind == ItemAttempt.Kind.ROLLBACK:
        return None
    result = validation_run(spec, session, guard.beat)
    recovery.attempt_validated(attempt=attempt, worker=guard.worker, result=result)
    return result


# --------------------------------------------------------------------------- failure


def _known(attempt, session, exc) -> Known:
    """What the database knows that the hypervisors may not say."""
    attempt.refresh_from_db(
        fields=["migrate_called_at", "postcopy_at", "ferry_paused_source_at", "evidence"]
    )
    prepared = (attempt.evidence or {}).get("prepare") or {}
    if attempt.migrate_called_at is None:
        call = safety.CALL_NOT_MADE
    else:
        call = getattr(session, "call_result", lambda: safety.CALL_UNKNOWN)()
    return Known(
        call=call,
        postcopy=attempt.postcopy_at is not None,
        source_autostart=prepared.get("source_autostart"),
        ferry_paused_source=attempt.ferry_paused_source_at is not None,
    )


def _fail(attempt, guard, session, exc: errors.ExecutionError) -> str:
    """Record a failure truthfully: make both hosts safe, say where the VM is, and bring
    the inventory in line with libvirt."""
    known = _known(attempt, session, exc) if session is not None else Known()
    made_safe: dict = {}
    where = None
    if session is not None:
        try:
            made_safe = session.make_safe(known)
        except LeaseLost:
            logger.warning("attempt %s: lease lost while making it safe", attempt.pk)
            return "lease lost"
        except Exception as safe_exc:  # the record must still be written
            logger.exception("attempt %s: making it safe failed", attempt.pk)
            made_safe = {"error": f"safety check failed: {safe_exc}"}
        try:
            where = session.locate().as_dict()
        except Exception as loc_exc:
            where = {"errors": [str(loc_exc)]}
    verdict = (made_safe.get("decision") or {}).get("verdict")
    nothing_moved = verdict == safety.ON_SOURCE or (
        known.call == safety.CALL_NOT_MADE and verdict in (None, safety.ON_SOURCE)
    )
    if exc.error_class == errors.AMBIGUOUS or not nothing_moved:
        # The transfer changed something and the VM is not (only) running on its source:
        # Ferry will not guess; an operator gets the evidence.
        status = A.NEEDS_ATTENTION
    elif exc.error_class in (errors.ABORTED_BY_OPERATOR, errors.PREEMPTED):
        status = A.CANCELLED
    else:
        status = A.FAILED
    evidence = {"failure": {"location": where, "safety": made_safe, "known": known.__dict__}}
    # The attempt's end and a retry it calls for commit together (recovery).
    with transaction.atomic():
        finished = services.attempt_finish(
            attempt=attempt, worker=guard.worker, status=status, error=exc, evidence=evidence
        )
        if finished and status == A.FAILED:
            recovery.retry_after_failure(attempt=attempt, error=exc)
    if finished and known.call != safety.CALL_NOT_MADE and attempt.driver == A_LIBVIRT:
        _resync_inventory(attempt)
    return status


def _resync_inventory(attempt) -> None:
    """After a failed move, read both hosts again so the inventory says where the VM and its
    disks really are (a failure may leave it moved, half moved or paused)."""
    actor = services.worker_actor(attempt.driver)
    for host in {attempt.source_host, attempt.destination_host}:
        try:
            host_sync(host=host, actor=actor)
        except Exception:  # the attempt's record stands; the next sync corrects the rest
            logger.exception("attempt %s: inventory re-read of %s failed", attempt.pk, host)
