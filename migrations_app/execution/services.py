"""Execution services: every write to runs and attempts, each in one transaction with its
audit event and its numbered run event (published after commit by migrations_app.live.events).

Operator-facing services (run_* act on a plan's run; item_* on one item) are called from
the workflow hooks and the runs API. Worker-facing services (attempt_*) are conditional on
the worker still owning the attempt, so a worker that lost its lease cannot overwrite what
the reconciler recorded.
"""

import logging
import statistics

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dashboard.audit.record import Actor, audit_record
from inventory.services import (
    host_qemu_overhead_record,
    vm_measurements_get,
    vm_record_measurements,
    vm_record_move,
)
from migrations_app.errors import ExecutionStateError
from migrations_app.execution import claims, errors
from migrations_app.execution.drivers import driver_name_for
from migrations_app.execution.learning import attempt_fit_sample, link_fit_update
from migrations_app.execution.stats import eta_seconds, move_measurements, sample_fields
from migrations_app.execution.tasks import ensure_tick, execute_attempt_task, schedule_run_task
from migrations_app.live.events import run_event
from migrations_app.models import ItemAttempt, MigrationPlan, PlanItem, PlanRun, ProgressSample
from migrations_app.notifications.services import notify_plan_event
from migrations_app.selectors.runs import latest_run
from migrations_app.workflow.services import plan_finish, plan_resume

logger = logging.getLogger("ferry.execution")

A = ItemAttempt.Status
I = PlanItem.Status  # noqa: E741 - mirrors A for attempts
R = PlanRun.Status
ACTIVE = (A.QUEUED, A.RUNNING)
# A host's QEMU overhead is the median over at most this many of its latest first moves.
OVERHEAD_SAMPLES = 25


def worker_actor(driver: str = "") -> Actor:
    """The audit actor of a worker; rehearsals say so in the actor's name."""
    return Actor.worker(
        "worker (rehearsal)" if driver == ItemAttempt.Driver.REHEARSAL else "worker"
    )


def attempt_load(attempt_id: int) -> ItemAttempt:
    """An attempt with everything the runner and the reconciler read of it."""
    return ItemAttempt.objects.select_related(
        "run", "run__plan", "item", "item__vm", "item__plan", "source_host", "destination_host"
    ).get(pk=attempt_id)


def current_run(plan: MigrationPlan) -> PlanRun | None:
    """The plan's latest run."""
    return latest_run(plan)


def _enqueue_schedule(run_id: int) -> None:
    transaction.on_commit(lambda: schedule_run_task.enqueue(run_id))


def _actor_name(actor) -> str:
    if actor is None:
        return "system"
    return getattr(actor, "name", None) or actor.get_username()


# --------------------------------------------------------------------------- operator


def run_start(*, plan: MigrationPlan, actor, override_reason: str = "") -> PlanRun:
    """Create the run of a plan that the workflow has just moved to running."""
    with transaction.atomic():
        if PlanRun.objects.filter(plan=plan, status__in=[R.RUNNING, R.PAUSED]).exists():
            raise ExecutionStateError(f"Plan '{plan.name}' already has a run in progress.")
        user = actor if hasattr(actor, "get_username") else None
        run = PlanRun.objects.create(
            plan=plan,
            started_by=user,
            started_by_name=_actor_name(actor),
            override_reason=override_reason or "",
        )
        items = list(plan.items.select_related("source_host", "destination_host"))
        PlanItem.objects.filter(plan=plan).exclude(status=I.COMPLETED).update(
            status=I.QUEUED, status_reason=""
        )
        drivers = sorted({_driver_label(i) for i in items})
        audit_record(
            actor=actor,
            action="run.started",
            obj=run,
            after={"plan": plan.pk, "items": len(items), "drivers": drivers},
            reason=override_reason or "",
        )
        run_event(
            run=run,
            kind="run.started",
            payload={"status": run.status, "items": len(items), "drivers": drivers},
        )
        _enqueue_schedule(run.pk)
        transaction.on_commit(ensure_tick)
    return run


def _driver_label(item: PlanItem) -> str:
    if item.destination_host is None:
        return "unknown"
    try:
        return driver_name_for(item.source_host, item.destination_host)
    except errors.ExecutionError:
        return "mixed (refused)"


def run_set_status(run: PlanRun, status: str, *, actor, action: str, reason: str = "") -> PlanRun:
    """The one writer of a run's status: the locked row, its audit event and run event."""
    locked = PlanRun.objects.select_for_update(no_key=True).get(pk=run.pk)
    before = {"status": locked.status, "reason": locked.status_reason}
    locked.status = status
    locked.status_reason = reason
    fields = ["status", "status_reason"]
    if status in (R.COMPLETED, R.FAILED, R.PARTIALLY_COMPLETED) or (
        status == R.CANCELLED and not locked.attempts.filter(status__in=ACTIVE).exists()
    ):
        locked.finished_at = timezone.now()
        fields.append("finished_at")
    locked.save(update_fields=fields)
    audit_record(
        actor=actor,
        action=action,
        obj=locked,
        before=before,
        after={"status": status, "reason": reason},
        reason=reason,
    )
    run_event(run=locked, kind=f"run.{status}", payload={"status": status, "reason": reason})
    return locked


def run_pause(*, plan: MigrationPlan, actor, reason: str = "") -> PlanRun | None:
    """No new item starts; items in flight finish."""
    with transaction.atomic():
        run = current_run(plan)
        if run is None or run.status != R.RUNNING:
            return run
        return run_set_status(run, R.PAUSED, actor=actor, action="run.paused", reason=reason)


def run_resume(*, plan: MigrationPlan, actor) -> PlanRun | None:
    """Let the scheduler start items again."""
    with transaction.atomic():
        run = current_run(plan)
        if run is None or run.status != R.PAUSED:
            return run
        run = run_set_status(run, R.RUNNING, actor=actor, action="run.resumed")
        _enqueue_schedule(run.pk)
    return run


def run_cancel(*, plan: MigrationPlan, actor, reason: str = "") -> PlanRun | None:
    """Cancel the run: queued items never start, running ones are aborted by their worker."""
    with transaction.atomic():
        run = current_run(plan)
        if run is None or run.status in (R.COMPLETED, R.FAILED, R.PARTIALLY_COMPLETED, R.CANCELLED):
            return run
        _cancel_queued(run, reason)
        ItemAttempt.objects.filter(run=run, status=A.RUNNING).update(cancel_requested=True)
        run = run_set_status(run, R.CANCELLED, actor=actor, action="run.cancelled", reason=reason)
    return run


def _cancel_queued(run: PlanRun, reason: str, item: PlanItem | None = None) -> None:
    attempts = ItemAttempt.objects.filter(run=run, status=A.QUEUED)
    items = PlanItem.objects.filter(plan=run.plan, status__in=[I.QUEUED, I.PENDING])
    if item is not None:
        attempts = attempts.filter(item=item)
        items = items.filter(pk=item.pk)
    now = timezone.now()
    attempts.update(
        status=A.CANCELLED,
        cancel_requested=True,
        finished_at=now,
        error_class=errors.ABORTED_BY_OPERATOR,
        error_message="Cancelled before it started.",
    )
    items.update(status=I.CANCELLED, status_reason=reason or "cancelled by an operator")


def item_cancel(*, item: PlanItem, actor, reason: str = "") -> ItemAttempt | None:
    """Cancel one item: before it starts it is dropped; while it runs its job is aborted."""
    with transaction.atomic():
        run = current_run(item.plan)
        attempt = item.attempts.order_by("-number", "-id").first()
        if run is None or item.status in (I.COMPLETED, I.CANCELLED, I.FAILED):
            raise ExecutionStateError(f"Item {item.vm.name} is {item.status}: nothing to cancel.")
        if attempt is not None and attempt.status == A.RUNNING:
            ItemAttempt.objects.filter(pk=attempt.pk).update(cancel_requested=True)
        else:
            _cancel_queued(run, reason, item=item)
        audit_record(
            actor=actor,
            action="item.cancel_requested",
            obj=item,
            before={"status": item.status},
            after={"attempt": attempt.pk if attempt else None},
            reason=reason,
        )
        run_event(
            run=run,
            kind="item.cancel_requested",
            item=item,
            payload={"attempt": attempt.pk if attempt else None, "reason": reason},
        )
        _enqueue_schedule(run.pk)
    return attempt


def item_retry(*, item: PlanItem, actor) -> PlanItem:
    """Queue a failed, cancelled or stuck item again (a new attempt); resumes a paused run."""
    with transaction.atomic():
        run = current_run(item.plan)
        locked = PlanItem.objects.select_for_update(no_key=True).get(pk=item.pk)
        if locked.status not in (I.FAILED, I.CANCELLED, I.NEEDS_ATTENTION, I.ROLLED_BACK):
            raise ExecutionStateError(
                f"Item {locked.vm.name} is {locked.status}: only failed, cancelled, "
                "rolled-back or needs-attention items can be retried."
            )
        if run is None or run.status not in (R.RUNNING, R.PAUSED):
            raise ExecutionStateError("The plan's run has ended: start a new plan for this VM.")
        before = {"status": locked.status, "reason": locked.status_reason}
        locked.status = I.QUEUED
        locked.status_reason = ""
        locked.save(update_fields=["status", "status_reason"])
        audit_record(
            actor=actor, action="item.retry", obj=locked, before=before, after={"status": I.QUEUED}
        )
        run_event(run=run, kind="item.retry", item=locked, payload={"status": I.QUEUED})
        if run.status == R.PAUSED and run.plan.status == MigrationPlan.Status.PAUSED:
            plan_resume(plan=run.plan, actor=actor)
        _enqueue_schedule(run.pk)
    return locked


def run_finish(*, plan: MigrationPlan, actor) -> PlanRun:
    """Close a paused run whose items have all ended (some failed): the plan gets its outcome."""
    with transaction.atomic():
        run = current_run(plan)
        if run is None or run.status not in (R.RUNNING, R.PAUSED):
            raise ExecutionStateError("There is no open run to finish.")
        if run.attempts.filter(status__in=ACTIVE).exists():
            raise ExecutionStateError("Items are still moving: wait for them or cancel them.")
        _cancel_queued(run, "not started: the run was finished by an operator")
        outcome = outcome_of(run)
        run = run_set_status(run, outcome, actor=actor, action=f"run.{outcome}")
        plan_finish(plan=plan, actor=actor, outcome=outcome)
    return run


def outcome_of(run: PlanRun) -> str:
    """completed / partially_completed / failed from the items' statuses."""
    statuses = list(PlanItem.objects.filter(plan=run.plan).values_list("status", flat=True))
    done = statuses.count(I.COMPLETED)
    if statuses and done == len(statuses):
        return R.COMPLETED
    return R.PARTIALLY_COMPLETED if done else R.FAILED


# --------------------------------------------------------------------------- worker


def attempt_create(
    *,
    run: PlanRun,
    item: PlanItem,
    driver: str,
    kind: str = ItemAttempt.Kind.MOVE,
    source_host=None,
    destination_host=None,
    evidence: dict | None = None,
) -> ItemAttempt:
    """A queued attempt for an item (the scheduler, inside its locked transaction; the
    recovery services for retries and migrate-backs, with their hosts)."""
    number = item.attempts.count() + 1
    attempt = ItemAttempt.objects.create(
        run=run,
        item=item,
        number=number,
        kind=kind,
        driver=driver,
        source_host=source_host or item.source_host,
        destination_host=destination_host or item.destination_host or item.source_host,
        estimate=(item.placement_note or {}).get("estimate", {}),
        evidence=evidence or {},
        queued_at=timezone.now(),
    )
    run_event(
        run=run,
        kind="item.queued",
        item=item,
        payload={"attempt": attempt.pk, "number": number, "driver": driver, "kind": kind},
    )
    return attempt


def _owned(attempt_id: int, worker: str):
    return ItemAttempt.objects.filter(pk=attempt_id, claimed_by=worker, status=A.RUNNING)


def attempt_started(
    *, attempt: ItemAttempt, worker: str, reattached: bool = False, phase: str | None = None
) -> None:
    """The item is running (audited once per attempt; a re-attach is an event only).

    With `phase` the attempt also enters that phase in the same transaction (the runner
    starts a fresh attempt straight into preflight: one commit instead of two).
    """
    with transaction.atomic():
        PlanItem.objects.filter(pk=attempt.item_id).update(status=I.RUNNING, status_reason="")
        payload = {
            "attempt": attempt.pk,
            "number": attempt.number,
            "driver": attempt.driver,
            "worker": worker,
            "reattached": reattached,
        }
        if not reattached:
            audit_record(
                actor=worker_actor(attempt.driver),
                action="attempt.started",
                obj=attempt,
                after=payload,
            )
        run_event(
            run=attempt.run,
            kind="item.reattached" if reattached else "item.started",
            item=attempt.item,
            payload=payload,
        )
        if phase is not None and not attempt_phase(attempt=attempt, worker=worker, phase=phase):
            raise ExecutionStateError("The attempt is no longer owned by this worker.")


def attempt_transfer_begin(
    *, attempt: ItemAttempt, worker: str, evidence: dict, prepare_started: str
) -> str:
    """Everything between the checks and the migrate call, in one transaction.

    The one-transfer-per-attempt gate (`claims.mark_migrate_called`, which also refuses a
    cancelled attempt and renews the lease), the preflight and prepare evidence, and the
    phases prepare (started at `prepare_started`, ISO time) and transfer with their events.
    Returns "go", "cancelled" (a cancel was requested: do not call) or "lost" (another
    worker owns the attempt, or the call was already made).
    """
    P = ItemAttempt.Phase
    with transaction.atomic():
        if not claims.mark_migrate_called(attempt.pk, worker, unless_cancelled=True):
            owned = _owned(attempt.pk, worker).filter(migrate_called_at__isnull=True)
            row = owned.values("cancel_requested").first()
            if row is not None and row["cancel_requested"]:
                for key, value in evidence.items():
                    attempt_evidence(attempt=attempt, worker=worker, key=key, value=value)
                return "cancelled"
            return "lost"
        row = _owned(attempt.pk, worker).select_for_update(no_key=True).get()
        now = timezone.now().isoformat()
        times = dict(row.phase_times or {})
        if row.phase in times and "end" not in times[row.phase]:
            times[row.phase]["end"] = prepare_started
        times[P.PREPARE] = {"start": prepare_started, "end": now}
        times[P.TRANSFER] = {"start": now}
        row.phase = P.TRANSFER
        row.phase_times = times
        row.evidence = {**(row.evidence or {}), **evidence}
        row.save(update_fields=["phase", "phase_times", "evidence"])
        attempt.phase, attempt.phase_times, attempt.evidence = P.TRANSFER, times, row.evidence
        attempt.migrate_called_at = row.migrate_called_at
        for phase in (P.PREPARE, P.TRANSFER):
            run_event(
                run=attempt.run,
                kind="item.phase",
                item=attempt.item,
                payload={"attempt": attempt.pk, "phase": phase, "driver": attempt.driver},
            )
    return "go"


def attempt_phase(*, attempt: ItemAttempt, worker: str, phase: str) -> bool:
    """Enter a phase; False when the worker no longer owns the attempt."""
    with transaction.atomic():
        row = _owned(attempt.pk, worker).select_for_update(no_key=True).first()
        if row is None:
            return False
        now = timezone.now().isoformat()
        times = dict(row.phase_times or {})
        if row.phase in times and "end" not in times[row.phase]:
            times[row.phase]["end"] = now
        times[phase] = {"start": now}
        row.phase = phase
        row.phase_times = times
        row.save(update_fields=["phase", "phase_times"])
        attempt.phase, attempt.phase_times = phase, times
        run_event(
            run=attempt.run,
            kind="item.phase",
            item=attempt.item,
            payload={"attempt": attempt.pk, "phase": phase, "driver": attempt.driver},
        )
    return True


def attempt_evidence(*, attempt: ItemAttempt, worker: str | None, key: str, value) -> None:
    """Add one piece of evidence (flags chosen, checks run, actions taken) to the attempt."""
    with transaction.atomic():
        qs = ItemAttempt.objects.filter(pk=attempt.pk)
        if worker is not None:
            qs = qs.filter(claimed_by=worker)
        row = qs.select_for_update(no_key=True).first()
        if row is None:
            return
        evidence = dict(row.evidence or {})
        evidence[key] = value
        row.evidence = evidence
        row.save(update_fields=["evidence"])
        attempt.evidence = evidence


def attempt_postcopy_record(*, attempt: ItemAttempt, worker: str) -> None:
    """Post-copy began (Ferry asked for it, or libvirt said so): from now on the source is
    never resumed and nothing aborts the move. Recorded once, before Ferry's own request."""
    with transaction.atomic():
        touched = (
            _owned(attempt.pk, worker)
            .filter(postcopy_at__isnull=True)
            .update(postcopy_at=timezone.now())
        )
        if touched:
            attempt.postcopy_at = timezone.now()
            run_event(
                run=attempt.run,
                kind="item.postcopy",
                item=attempt.item,
                payload={"attempt": attempt.pk, "driver": attempt.driver},
            )


def attempt_note(*, attempt: ItemAttempt, kind: str, payload: dict) -> None:
    """A run event about the attempt (e.g. a convergence action), without a state change."""
    run_event(
        run=attempt.run,
        kind=kind,
        item=attempt.item,
        payload={"attempt": attempt.pk, "driver": attempt.driver, **payload},
    )


def attempt_sample(*, attempt: ItemAttempt, stats: dict, elapsed_ms: int) -> ProgressSample:
    """Store one progress sample and publish a small progress event."""
    fields = sample_fields(stats)
    with transaction.atomic():
        sample = ProgressSample.objects.create(
            attempt=attempt, at=timezone.now(), elapsed_ms=elapsed_ms, phase=attempt.phase, **fields
        )
        run_event(
            run=attempt.run,
            kind="item.progress",
            item=attempt.item,
            payload={
                "attempt": attempt.pk,
                "phase": attempt.phase,
                "driver": attempt.driver,
                "elapsed_ms": elapsed_ms,
                "eta_s": eta_seconds(fields),
                **fields,
            },
        )
    return sample


def attempt_finish(
    *,
    attempt: ItemAttempt,
    worker: str | None,
    status: str,
    error: errors.ExecutionError | None = None,
    stats: dict | None = None,
    evidence: dict | None = None,
    disk_pools: dict | None = None,
    reconciled: bool = False,
) -> bool:
    """End an attempt (conditional on ownership); on success update the inventory."""
    stats = stats or {}
    with transaction.atomic():
        qs = ItemAttempt.objects.filter(pk=attempt.pk, status=A.RUNNING)
        if worker is not None:
            qs = qs.filter(claimed_by=worker)
        row = qs.select_for_update(no_key=True).first()
        if row is None:
            return False
        now = timezone.now()
        times = dict(row.phase_times or {})
        if row.phase in times and "end" not in times[row.phase]:
            times[row.phase]["end"] = now.isoformat()
        row.status = status
        row.finished_at = now
        row.phase_times = times
        row.lease_expires_at = None
        if status == A.COMPLETED:
            row.phase = ItemAttempt.Phase.DONE
        if error is not None:
            row.error_class = error.error_class
            row.error_message = error.message
            row.libvirt_error = error.libvirt_message
        if stats:
            row.final_stats = _jsonable(stats)
            row.total_time_ms = stats.get("time_elapsed", row.total_time_ms)
            row.downtime_ms = stats.get("downtime", row.downtime_ms)
            row.iterations = stats.get("memory_iteration", row.iterations)
            row.bytes_transferred = stats.get("data_processed") or stats.get("data_total")
        row.evidence = {**(row.evidence or {}), **(evidence or {})}
        row.save()
        item = PlanItem.objects.select_for_update(no_key=True).get(pk=row.item_id)
        item.status = {
            A.COMPLETED: I.COMPLETED,
            A.FAILED: I.FAILED,
            A.CANCELLED: I.CANCELLED,
            A.NEEDS_ATTENTION: I.NEEDS_ATTENTION,
        }[status]
        item.status_reason = error.message if error else ""
        if row.kind == ItemAttempt.Kind.ROLLBACK and status == A.COMPLETED:
            # The migrate-back arrived: the VM runs on its source again (recovery module).
            item.status = I.ROLLED_BACK
            item.status_reason = (row.evidence.get("rollback") or {}).get("reason", "")
        if status == A.CANCELLED and row.error_class == errors.PREEMPTED:
            item.status = I.QUEUED  # waits for a slot again; the scheduler starts it
            _enqueue_schedule(row.run_id)
        item.save(update_fields=["status", "status_reason"])
        actor = worker_actor(row.driver)
        summary = {
            "attempt": row.pk,
            "status": status,
            "driver": row.driver,
            "error_class": row.error_class,
            "error_message": row.error_message,
            "downtime_ms": row.downtime_ms,
            "total_time_ms": row.total_time_ms,
            "iterations": row.iterations,
            "reconciled": reconciled,
            "kind": row.kind,
        }
        audit_record(
            actor=actor,
            action=f"attempt.{status}",
            obj=row,
            before={"status": A.RUNNING, "phase": attempt.phase},
            after={**summary, "libvirt_error": row.libvirt_error},
            reason=row.error_message,
        )
        if status == A.COMPLETED:
            _record_inventory(row, item, actor, disk_pools or {})
        if status == A.NEEDS_ATTENTION:
            notify_plan_event(
                row.run.plan,
                "attention",
                actor=actor,
                extra={
                    "item": item.pk,
                    "vm": item.vm.name,
                    "error_class": row.error_class,
                    "reason": row.error_message,
                },
            )
        run_event(run=row.run, kind="item.finished", item=item, payload=summary)
        _enqueue_schedule(row.run_id)
    return True


def _record_inventory(row, item, actor, disk_pools) -> None:
    if row.driver == ItemAttempt.Driver.REHEARSAL:
        # A rehearsal moved nothing: the inventory keeps the truth of the test driver.
        return
    destination = (
        row.destination_host if item.mode != PlanItem.Mode.STORAGE_ONLY else row.source_host
    )
    pool_ids = {}
    for target, pool_name in disk_pools.items():
        pool = destination.storage_pools.filter(name=pool_name).first()
        if pool is not None:
            pool_ids[target] = pool.pk
    vm_record_move(
        vm=item.vm,
        host=destination,
        disk_pools=pool_ids,
        actor=actor,
        reason=f"plan {item.plan_id} item {item.pk} attempt {row.number}",
    )
    if item.mode != PlanItem.Mode.STORAGE_ONLY:
        attempt_record_measurements(row, item, row.final_stats or {})


def attempt_record_measurements(row, item, stats: dict) -> None:
    """Store what the migration measured on the VM, the attempt and its source host.

    The VM keeps its footprint, setup cost and QEMU overhead for its next estimate; the
    attempt keeps them as evidence, with its sample for the link's fit (setup, effective
    rate: execution.learning), and the link is refitted; the source host's QEMU overhead becomes the median over
    its recent first moves (VMs with no footprint measured before), which is exactly the
    case where the estimate uses it (see estimate.touched_of): a guest that arrived by
    migration has a much smaller rss than one that booted there (zero pages received are
    never touched), so later moves would understate a booted guest's overhead.
    """
    vm = vm_measurements_get(vm_id=item.vm_id)
    values = move_measurements(
        stats, bandwidth_mib_s=item.get_policy().bandwidth_mib_s, rss_mib=vm.get("memory_rss_mib")
    )
    if not values:
        return
    first_move = vm.get("memory_footprint_mib") is None
    vm_record_measurements(vm_id=item.vm_id, measurements=values)
    measured = {"rss_mib": vm.get("memory_rss_mib"), "first_move": first_move, **values}
    sample = attempt_fit_sample(row, item, vm, values, row.source_host)
    if sample:
        measured["fit_sample"] = sample
    ItemAttempt.objects.filter(pk=row.pk).update(
        evidence={**(row.evidence or {}), "measured": measured}
    )
    if sample:
        # What the estimate learns must never undo the move it learns from: a failing
        # refit (a lock, a bad sample) rolls back to here and is logged.
        try:
            with transaction.atomic():
                link_fit_update(row)
        except Exception:
            logger.exception("attempt %s: the link's estimate fit was not updated", row.pk)
    if "memory_rss_overhead_mib" not in values or not first_move:
        return
    overheads = []
    for evidence in (
        ItemAttempt.objects.filter(source_host_id=row.source_host_id, status=A.COMPLETED)
        .order_by("-finished_at", "-id")
        .values_list("evidence", flat=True)
        .iterator()
    ):
        sample = (evidence or {}).get("measured") or {}
        overhead = sample.get("memory_rss_overhead_mib")
        if sample.get("first_move") and isinstance(overhead, int | float):
            overheads.append(overhead)
            if len(overheads) >= OVERHEAD_SAMPLES:
                break
    if overheads:
        host_qemu_overhead_record(
            host_id=row.source_host_id,
            overhead_mib=round(statistics.median(overheads)),
            samples=len(overheads),
        )


def attempt_requeue(*, attempt: ItemAttempt, reason: str) -> bool:
    """A worker vanished before the transfer call: the attempt may safely start again."""
    with transaction.atomic():
        touched = (
            ItemAttempt.objects.filter(
                pk=attempt.pk, status=A.RUNNING, migrate_called_at__isnull=True
            )
            .filter(Q(lease_expires_at__lt=timezone.now()) | Q(lease_expires_at__isnull=True))
            .update(
                status=A.QUEUED,
                claimed_by="",
                lease_expires_at=None,
                phase=ItemAttempt.Phase.QUEUED,
                queued_at=timezone.now(),
            )
        )
        if touched != 1:
            return False
        run_event(
            run=attempt.run,
            kind="item.requeued",
            item=attempt.item,
            payload={"attempt": attempt.pk, "reason": reason, "driver": attempt.driver},
        )
        transaction.on_commit(lambda: execute_attempt_task.enqueue(attempt.pk))
    return True


def _jsonable(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if isinstance(v, int | float | str | bool) or v is None}
