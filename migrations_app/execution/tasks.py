"""Background tasks of execution: they take ids, load state and call a service.

The periodic tick re-enqueues itself (FERRY_TICK_SECONDS, default 10) and does what no
single event triggers: reconcile expired leases, start plans whose window opened, pause
runs whose window closed. Only one tick is kept queued (see ensure_tick).

Task bodies import the code they run inside the function, and only here: the services,
the scheduler and the reconciler enqueue these tasks (so they import this module at the
top), and a task's body runs them (the service ↔ task pair of the HackSoft styleguide).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

logger = logging.getLogger("ferry.execution.tasks")


@task()
def schedule_run_task(run_id: int) -> dict:
    """Start the items of a run that may start now."""
    from migrations_app.execution.scheduler import schedule_run

    return schedule_run(run_id)


@task()
def execute_attempt_task(attempt_id: int) -> str:
    """Claim and carry out one attempt (a duplicate delivery does nothing)."""
    from migrations_app.execution.runner import execute

    return execute(attempt_id)


@task()
def reconcile_attempt_task(attempt_id: int) -> str:
    """Recover one attempt whose lease expired."""
    from migrations_app.execution.reconciler import reconcile_attempt

    return reconcile_attempt(attempt_id)


@task()
def tick_task() -> dict:
    """Reconcile, auto-start, re-check windows; then queue the next tick."""
    try:
        return tick()
    finally:
        ensure_tick(delay=tick_seconds())


def tick() -> dict:
    """One pass of the periodic work (also called at worker start)."""
    from migrations_app.execution.reconciler import expired_attempt_ids, orphans_requeue
    from migrations_app.execution.scheduler import (
        autostart_due_plans,
        runs_to_schedule,
        schedule_run,
    )

    expired = expired_attempt_ids()
    for attempt_id in expired:
        reconcile_attempt_task.enqueue(attempt_id)
    requeued = orphans_requeue()
    started = autostart_due_plans()
    for run_id in runs_to_schedule():
        schedule_run(run_id)
    return {"reconciling": expired, "requeued": requeued, "autostarted": started}


def tick_seconds() -> float:
    return float(settings.FERRY_TICK_SECONDS)


def on_worker_start() -> None:
    """Reconcile at once when a worker starts, and make sure the periodic tick is queued."""
    try:
        tick()
        ensure_tick()
    except Exception:  # a worker must start even if the database is briefly unavailable
        logger.exception("reconcile at worker start failed")


def ensure_tick(delay: float = 0.0) -> None:
    """Queue the tick unless one is already queued (a deferred task on backends that can)."""
    backend = tick_task.get_backend()
    if not backend.supports_defer:
        return  # the immediate backend would recurse; tests call tick() themselves
    path = tick_task.module_path
    if backend.__class__.__name__ == "DatabaseBackend":
        from django_tasks_db.models import DBTaskResult

        if DBTaskResult.objects.filter(task_path=path, status="READY").exists():
            return
    elif not _redis_once(delay):
        return
    when = timezone.now() + timedelta(seconds=delay) if delay else None
    (tick_task.using(run_after=when) if when else tick_task).enqueue()


def _redis_once(delay: float) -> bool:
    """RQ: one tick per interval across all workers (SET NX with an expiry)."""
    try:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        return bool(client.set("ferry:execution:tick", "1", nx=True, ex=max(1, int(delay or 1))))
    except Exception:
        return True
