"""Scheduling: which items may start now, under the plans' limits, Ferry-wide budgets
(migrations_app.budgets) and windows, urgent plans first.

One transaction per pass under a global lock (a PostgreSQL advisory lock; SQLite's
IMMEDIATE transactions serialise writers the same way), so two scheduler tasks running at
once cannot both start the item that would break a limit or a budget.
"""

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from dashboard.audit.record import Actor, audit_record
from inventory.models import Host, StoragePool, VirtualDisk
from migrations_app.budgets import Move, budgets_load, move_pools
from migrations_app.checks.snapshot import snapshot_load
from migrations_app.estimate import item_estimate
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
SCHEDULER_LOCK = 0x46455252  # "FERR": the advisory lock of the scheduling pass
# A routine move may be preempted only while its guest still runs on the source and its
# memory is being sent (never once post-copy or a force-complete began).
PREEMPTABLE_PHASES = (ItemAttempt.Phase.TRANSFER, ItemAttempt.Phase.CONVERGE)


def schedule_run(run_id: int) -> dict:
    """Start what may start (across every running plan, within the budgets), pause this run
    at its window's end, close it when all its items ended."""
    with transaction.atomic():
        _global_lock()
        run = (
            PlanRun.objects.select_for_update(no_key=True)
            .select_related("plan")
            .filter(pk=run_id)
            .first()
        )
        if run is None:
            return {"run": run_id, "missing": True}
        plan = run.plan
        active = ItemAttempt.objects.filter(run=run, status__in=services.ACTIVE)
        if run.status == R.CANCELLED:
            if not active.exists() and run.finished_at is None:
                PlanRun.objects.filter(pk=run.pk).update(finished_at=timezone.now())
            return {"run": run_id, "status": run.status}
        if run.status != R.RUNNING:
            return {"run": run_id, "status": run.status}
        waiting = (
            PlanItem.objects.filter(plan=plan, status=I.QUEUED)
            .exclude(pk__in=active.values("item_id"))
            .count()
        )
        if waiting and plan.window_end and timezone.now() > plan.window_end:
            _pause_for_window(plan, waiting)
            return {"run": run_id, "paused": "window closed"}
        started = start_what_fits()
        mine = [a for a in started if a[0] == run.pk]
        if not mine and not active.exists() and not waiting:
            _close(run, plan)
        for _run, attempt_id in started:
            transaction.on_commit(lambda a=attempt_id: execute_attempt_task.enqueue(a))
    return {"run": run_id, "started": [a for _r, a in mine], "active": active.count()}


def _global_lock() -> None:
    """One scheduling pass at a time, Ferry-wide: budgets count moves of every plan.
    PostgreSQL: a transaction-scoped advisory lock; SQLite serialises writers already."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEDULER_LOCK])


def start_what_fits() -> list[tuple[int, int]]:
    """Start the waiting items of every running run whose budgets allow it, urgent plans
    first; note on each waiting item what holds it back; preempt for urgent plans that say
    so. Inside the caller's transaction (holding the global lock); returns (run, attempt)."""
    runs = list(
        PlanRun.objects.filter(status=R.RUNNING).select_related("plan").order_by("started_at", "id")
    )
    now = timezone.now()
    runs = [r for r in runs if not (r.plan.window_end and now > r.plan.window_end)]
    policies = {r.plan_id: r.plan.get_policy() for r in runs}
    runs.sort(key=lambda r: policies[r.plan_id].priority != "urgent")
    active = list(
        ItemAttempt.objects.filter(status__in=services.ACTIVE).select_related("item", "run__plan")
    )
    busy = {a.item_id for a in active}
    waiting: dict[int, list] = {r.pk: [] for r in runs}
    by_plan = {r.plan_id: r for r in runs}
    for item in (
        PlanItem.objects.filter(plan_id__in=list(by_plan), status=I.QUEUED)
        .select_related("source_host", "destination_host", "vm")
        .order_by("position", "id")
    ):
        if item.pk not in busy:
            waiting[by_plan[item.plan_id].pk].append(item)
    items = [a.item for a in active] + [i for rows in waiting.values() for i in rows]
    disks = _disk_pools({i.vm_id for i in items})
    reach = _pools_reached(
        {i.destination_host_id for i in items if i.destination_host_id}
        | {a.destination_host_id for a in active}
        | {(i.retry or {}).get("destination") for i in items} - {None}
    )
    budgets = budgets_load()

    def move(item, plan_id, hosts=None):
        return _move(item, plan_id, disks, reach, hosts)

    for attempt in active:
        budgets.take(move(attempt.item, attempt.run.plan_id, _hosts_of(attempt)))
    started: list[tuple[int, int]] = []
    told: dict = {}  # run -> {item id: what holds it}, newly held by a budget in this pass
    for run in runs:
        policy = policies[run.plan_id]
        timing = item_timing(run.plan, waiting[run.pk], now)
        waves = wave_gate(run, policy, waiting[run.pk])
        for item in waiting[run.pk]:
            if waves.get(item.pk) == HALTED:
                continue
            not_yet = waves.get(item.pk) or retry_wait(item, now) or timing.get(item.pk)
            if not_yet:
                _note_held(item, not_yet)
                continue
            wanted = move(item, run.plan_id, _retry_hosts(item))
            hold = budgets.hold(wanted, policy)
            if hold is not None:
                if _note_held(item, hold.text):
                    told.setdefault(run, {})[item.pk] = item.held_by
                if policy.preempt and hold.kind != "plan":
                    _preempt_for(run, item, hold, active, policies, move)
                continue
            driver = _driver_or_fail(run, item)
            if driver is None:
                continue
            _note_held(item, "")
            attempt = _attempt_for(run, item, driver)
            started.append((run.pk, attempt.pk))
            budgets.take(wanted)
    for run, held in told.items():
        _tell_held(run, held)
    return started


def _attempt_for(run: PlanRun, item: PlanItem, driver: str) -> ItemAttempt:
    """The item's next attempt: a retry the worker scheduled (maybe to another host that
    placement chose, execution.recovery), or its first move."""
    retry = item.retry or {}
    if not retry:
        return services.attempt_create(run=run, item=item, driver=driver)
    other = Host.objects.filter(pk=retry.get("destination")).first()
    if other is not None:
        try:
            driver = driver_name_for(item.source_host, other)
        except errors.ExecutionError:
            other = None  # a retry never mixes drivers: back to the planned destination
    PlanItem.objects.filter(pk=item.pk).update(retry={})
    return services.attempt_create(
        run=run,
        item=item,
        driver=driver,
        kind=ItemAttempt.Kind.RETRY,
        destination_host=other,
        evidence={"retry": retry},
    )


HALTED = "halted"
# Item outcomes that end a wave without success.
UNSUCCESSFUL = (I.FAILED, I.CANCELLED, I.NEEDS_ATTENTION, I.ROLLED_BACK)


def wave_gate(run: PlanRun, policy, items: list) -> dict:
    """{item id: why it waits, or HALTED} for waiting items of a later wave: they start only
    when every item of the earlier waves ended, and (wave_failure "halt") completed; when
    one of those did not, they are cancelled with the reason (an operator may retry them)."""
    if not any(item.wave for item in items):
        return {}
    statuses = list(PlanItem.objects.filter(plan=run.plan).values_list("wave", "status"))
    out: dict = {}
    for item in items:
        earlier = [status for wave, status in statuses if wave < item.wave]
        failed = [status for status in earlier if status in UNSUCCESSFUL]
        if failed and policy.wave_failure == "halt":
            _halt(
                run,
                item,
                f"Halted: {len(failed)} item(s) of the waves before wave {item.wave} did not complete.",
            )
            out[item.pk] = HALTED
        elif any(status not in (I.COMPLETED, *UNSUCCESSFUL) for status in earlier):
            out[item.pk] = f"Wave {item.wave} waits for the waves before it to finish."
    return out


def _halt(run: PlanRun, item: PlanItem, reason: str) -> None:
    """A dependent item does not start (wave_failure "halt"): cancelled, audited, shown."""
    PlanItem.objects.filter(pk=item.pk, status=I.QUEUED).update(
        status=I.CANCELLED, status_reason=reason, held_by=""
    )
    audit_record(
        actor=SCHEDULER,
        action="item.halted",
        obj=item,
        before={"status": I.QUEUED},
        after={"status": I.CANCELLED, "wave": item.wave},
        reason=reason,
    )
    run_event(
        run=run,
        kind="item.finished",
        item=item,
        payload={"attempt": None, "status": I.CANCELLED, "error_message": reason},
    )


def retry_wait(item: PlanItem, now) -> str:
    """Why a retried item waits (its backoff has not ended), or ''."""
    after = (item.retry or {}).get("after")
    if not after or parse_datetime(after) <= now:
        return ""
    return (
        f"Retry {item.retry.get('number')} of {item.retry.get('of')} after a transient "
        f"failure starts at {after} (backoff)."
    )


def item_timing(plan: MigrationPlan, items: list, now) -> dict:
    """{item id: why it does not start now} for a plan that switches over only inside its
    window (policy.switchover_in_window): an item whose estimate ends after the window
    closes does not start; before the window opens, an item starts only when its copy
    would end (and its switchover fall) inside the window."""
    policy = plan.get_policy()
    if not items or not policy.switchover_in_window or not (plan.window_start or plan.window_end):
        return {}
    snapshot = snapshot_load(plan, item_ids=[i.pk for i in items])
    out = {}
    for info in snapshot.items:
        if info.destination_id is None:
            continue
        estimate = item_estimate(snapshot, info)
        switchover_s = max(0.0, estimate.duration_s - estimate.verify_s)
        if plan.window_end and now + timedelta(seconds=estimate.duration_s) > plan.window_end:
            out[info.id] = (
                f"Not started: its estimate ({estimate.duration_s:.0f} s) ends after the "
                f"switchover window closes at {plan.window_end.isoformat()}."
            )
        elif plan.window_start and now + timedelta(seconds=switchover_s) < plan.window_start:
            starts = plan.window_start - timedelta(seconds=switchover_s)
            out[info.id] = (
                f"Waits for the switchover window: its copy (estimated {switchover_s:.0f} s) "
                f"starts at {starts.isoformat()} so that it switches over after "
                f"{plan.window_start.isoformat()}."
            )
    return out


def _hosts_of(attempt: ItemAttempt) -> tuple[int, int]:
    """The hosts an attempt really uses (a migrate-back or a retry elsewhere differs from
    its item's planned move): budgets count those."""
    return attempt.source_host_id, attempt.destination_host_id


def _retry_hosts(item: PlanItem) -> tuple[int, int] | None:
    other = (item.retry or {}).get("destination")
    return (item.source_host_id, other) if other else None


def _move(item: PlanItem, plan_id: int, disks: dict, reach: dict, hosts=None) -> Move:
    storage_only = item.mode == PlanItem.Mode.STORAGE_ONLY
    source, destination = hosts or (
        item.source_host_id,
        item.destination_host_id or item.source_host_id,
    )
    return Move(
        plan=plan_id,
        source=source,
        destination=None if storage_only else destination,
        pools=move_pools(
            item.mode, item.storage_map, disks.get(item.vm_id, []), reach.get(destination, set())
        ),
    )


def _disk_pools(vm_ids) -> dict:
    out: dict = {}
    for vm_id, pool_id in VirtualDisk.objects.filter(vm_id__in=list(vm_ids)).values_list(
        "vm_id", "pool_id"
    ):
        out.setdefault(vm_id, []).append(pool_id)
    return out


def _pools_reached(host_ids) -> dict:
    out: dict = {}
    for pool_id, host_id in StoragePool.hosts.through.objects.filter(
        host_id__in=list(host_ids)
    ).values_list("storagepool_id", "host_id"):
        out.setdefault(host_id, set()).add(pool_id)
    return out


def _note_held(item: PlanItem, text: str) -> bool:
    """What keeps a queued item from starting, for the plan page (written when it
    changes); whether it changed to a new reason."""
    if item.held_by == text[:300]:
        return False
    PlanItem.objects.filter(pk=item.pk).update(held_by=text[:300])
    item.held_by = text[:300]
    return bool(text)


# An event names at most this many held items (the page re-reads its snapshot on any such
# event; the REST snapshot has every item's reason).
HELD_PER_EVENT = 50


def _tell_held(run: PlanRun, held: dict) -> None:
    """One event per run and scheduling pass for the items a budget newly holds back.

    One per item flooded open pages: a 200-item plan starting behind a full budget sent
    ~190 events at once, over a websocket channel's capacity (100), and pages lost events
    they then had to fetch (the L1 load test counted 33 missing)."""
    shown = dict(list(held.items())[:HELD_PER_EVENT])
    run_event(
        run=run,
        kind="items.held",
        payload={
            "count": len(held),
            "held_by": {str(item_id): text for item_id, text in shown.items()},
        },
    )


def _preempt_for(run, item, hold, active, policies, move) -> None:
    """An urgent plan that may preempt: abort one routine move still in pre-copy that holds
    the budget this item waits for (one at a time per budget). Its VM stays on its source;
    its item waits for a slot again."""
    for attempt in active:
        if attempt.preempted_by_id == run.plan_id and attempt.status == A.RUNNING:
            if hold.covers(move(attempt.item, attempt.run.plan_id, _hosts_of(attempt))):
                return  # a preemption for this budget is under way
    for attempt in active:
        if (
            policies.get(attempt.run.plan_id, attempt.run.plan.get_policy()).priority == "urgent"
            or attempt.status != A.RUNNING
            or attempt.phase not in PREEMPTABLE_PHASES
            or attempt.postcopy_at is not None
            or attempt.ferry_paused_source_at is not None
            or attempt.cancel_requested
            or not hold.covers(move(attempt.item, attempt.run.plan_id, _hosts_of(attempt)))
        ):
            continue
        ItemAttempt.objects.filter(pk=attempt.pk, status=A.RUNNING).update(
            cancel_requested=True, preempted_by=run.plan
        )
        attempt.cancel_requested = True
        attempt.preempted_by_id = run.plan_id
        reason = f"Preempted by urgent plan '{run.plan.name}' for {item.vm.name} ({hold.text})."
        audit_record(
            actor=SCHEDULER,
            action="item.preempted",
            obj=attempt.item,
            before={"attempt": attempt.pk, "phase": attempt.phase},
            after={"by_plan": run.plan_id, "for_item": item.pk, "budget": hold.text},
            reason=reason,
        )
        run_event(
            run=attempt.run,
            kind="item.preempted",
            item=attempt.item,
            payload={"attempt": attempt.pk, "by_plan": run.plan_id, "reason": reason},
        )
        return


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
