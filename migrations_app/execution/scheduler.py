"""Scheduling: which items of a run may start now, under the plan's limits and window.

One transaction per pass, holding the run row's lock (SELECT … FOR UPDATE; SQLite's
IMMEDIATE transactions serialise writers the same way), so two scheduler tasks running at
once cannot both start the item that would break a limit.
"""

import logging

from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import Actor
from migrations_app.execution import errors, services
from migrations_app.execution.drivers import driver_name_for
from migrations_app.execution.tasks import execute_attempt_task
from migrations_app.live.events import plan_changed, run_event
from migrations_app.models import ItemAttempt, MigrationPlan, PlanItem, PlanRun
from migrations_app.workflow.services import plan_finish, plan_pause, plan_start

logger = logging.getLogger("ferry.execution.scheduler")

A = ItemAttempt.Status
I = PlanItem.Status  # noqa: E741
R = PlanRun.Status
S = MigrationPlan.Status
SCHEDULER = Actor.system("scheduler")


def schedule_run(run_id: int) -> dict:
    """Start what may start, pause at the window's end, close the run when all items ended."""
    started: list[int] = []
    with transaction.atomic():
        run = PlanRun.objects.select_for_update().select_related("plan").filter(pk=run_id).first()
        if run is None:
            return {"run": run_id, "missing": True}
        plan = run.plan
        active = list(
            ItemAttempt.objects.filter(run=run, status__in=services.ACTIVE).select_related("item")
        )
        if run.status == R.CANCELLED:
            if not active and run.finished_at is None:
                PlanRun.objects.filter(pk=run.pk).update(finished_at=timezone.now())
            return {"run": run_id, "status": run.status}
        if run.status != R.RUNNING:
            return {"run": run_id, "status": run.status}
        active_items = {a.item_id for a in active}
        waiting = [
            item
            for item in PlanItem.objects.filter(plan=plan, status=I.QUEUED)
            .select_related("source_host", "destination_host", "vm")
            .order_by("position", "id")
            if item.pk not in active_items
        ]
        if waiting and plan.window_end and timezone.now() > plan.window_end:
            _pause_for_window(plan, len(waiting))
            return {"run": run_id, "paused": "window closed"}
        policy = plan.get_policy()
        total = len(active)
        outbound: dict[int, int] = {}
        inbound: dict[int, int] = {}
        for attempt in active:
            outbound[attempt.source_host_id] = outbound.get(attempt.source_host_id, 0) + 1
            inbound[attempt.destination_host_id] = inbound.get(attempt.destination_host_id, 0) + 1
        for item in waiting:
            if total >= policy.concurrent_limit:
                break
            src = item.source_host_id
            dst = item.destination_host_id or src
            storage_only = item.mode == PlanItem.Mode.STORAGE_ONLY
            # A storage-only move loads its host's disks, not the network between hosts;
            # it counts against its host once (outbound), not as an inbound move too.
            if outbound.get(src, 0) >= policy.outbound_limit:
                continue
            if not storage_only and inbound.get(dst, 0) >= policy.inbound_limit:
                continue
            driver = _driver_or_fail(run, item)
            if driver is None:
                continue
            attempt = services.attempt_create(run=run, item=item, driver=driver)
            started.append(attempt.pk)
            total += 1
            outbound[src] = outbound.get(src, 0) + 1
            if not storage_only:
                inbound[dst] = inbound.get(dst, 0) + 1
        if not started and not active and not waiting:
            _close(run, plan)
        for attempt_id in started:
            transaction.on_commit(lambda a=attempt_id: execute_attempt_task.enqueue(a))
    return {"run": run_id, "started": started, "active": len(active)}


def _driver_or_fail(run: PlanRun, item: PlanItem) -> str | None:
    if item.destination_host_id is None:
        _item_blocked(run, item, "The item has no destination host.")
        return None
    try:
        return driver_name_for(item.source_host, item.destination_host)
    except errors.ExecutionError as exc:
        _item_blocked(run, item, exc.message)
        return None


def _item_blocked(run: PlanRun, item: PlanItem, message: str) -> None:
    PlanItem.objects.filter(pk=item.pk).update(status=I.FAILED, status_reason=message)
    run_event(
        run=run,
        kind="item.finished",
        item=item,
        payload={
            "attempt": None,
            "status": "failed",
            "error_class": errors.PREFLIGHT_BLOCKED,
            "error_message": message,
        },
    )


def _pause_for_window(plan: MigrationPlan, waiting: int) -> None:
    """The window closed with items still waiting: pause the plan (and, by its hook, the run)."""
    reason = (
        f"The maintenance window closed at {plan.window_end.isoformat()} with {waiting} "
        "item(s) not started; resume with an override to continue."
    )
    _pause_with_reason(plan, SCHEDULER, reason, kind="run.window_closed")


def _pause_with_reason(plan: MigrationPlan, actor, reason: str, *, kind: str) -> None:
    """Pause the plan through the workflow, with the reason; its run follows (audited once
    by the workflow and once by the run's receiver), and a run event says why."""
    plan.refresh_from_db()
    if plan.status == S.RUNNING:
        plan_pause(plan=plan, actor=actor, reason=reason)
    run = services.current_run(plan)
    if run is not None and run.status == R.RUNNING:
        # The plan was already paused (by an operator) while its run went on: pause the run.
        services.run_pause(plan=plan, actor=actor, reason=reason)
    if run is not None:
        run_event(run=run, kind=kind, payload={"status": R.PAUSED, "reason": reason})
    plan.refresh_from_db()
    plan_changed(plan, reason=reason)


def _close(run: PlanRun, plan: MigrationPlan) -> None:
    """Every item has ended: complete the plan, or wait for the operator when some failed."""
    outcome = services.outcome_of(run)
    worker = services.worker_actor()
    if outcome == R.COMPLETED:
        services.run_set_status(run, R.COMPLETED, actor=worker, action="run.completed")
        if plan.status in (S.RUNNING, S.PAUSED):
            plan_finish(plan=plan, actor=worker, outcome=outcome)
        return
    # Failed items can be retried while the run is open, so the run waits for an operator
    # (retry, or finish with the outcome) instead of ending the plan on its own.
    failed = PlanItem.objects.filter(plan=plan).exclude(status=I.COMPLETED).count()
    reason = (
        f"{failed} item(s) did not complete: retry them, or finish the run to record the outcome."
    )
    _pause_with_reason(plan, worker, reason, kind="run.waiting")


def autostart_due_plans(now=None) -> list[int]:
    """Start approved plans whose window has opened (unless held); returns their ids."""
    now = now or timezone.now()
    due = MigrationPlan.objects.filter(
        status__in=[S.APPROVED, S.SCHEDULED],
        hold=False,
        window_start__isnull=False,
        window_start__lte=now,
    ).exclude(window_end__lt=now)
    started = []
    for plan in due:
        try:
            plan_start(plan=plan, actor=SCHEDULER)
            started.append(plan.pk)
        except Exception as exc:  # one plan that cannot start must not stop the others
            logger.warning("plan %s did not start by itself: %s", plan.pk, exc)
    return started


def runs_to_schedule() -> list[int]:
    """Runs that are running (the periodic tick re-checks their window and limits)."""
    return list(PlanRun.objects.filter(status=R.RUNNING).values_list("pk", flat=True))
