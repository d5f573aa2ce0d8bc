"""Housekeeping: the periodic work that belongs to no run.

- sample every host's measured load (inventory.load) each FERRY_LOAD_SAMPLE_SECONDS;
- prune load samples older than FERRY_LOAD_RETENTION_HOURS;
- prune progress samples of finished attempts older than FERRY_SAMPLE_RETENTION_DAYS
  (migrations_app.services.retention; attempts, items and audit events are never pruned).

It spans both apps, so it lives in the project wiring. Workers queue it at start
(`housekeeping_ensure`); it re-queues itself. `manage.py sample_load` and
`manage.py prune_samples` do the same work on demand.
"""

import logging

from django.conf import settings
from django_tasks import task

from dashboard.runtime.periodic import ensure_periodic
from inventory.load import load_sample_all, load_samples_prune
from migrations_app.services.retention import progress_samples_prune

logger = logging.getLogger("ferry.housekeeping")
IDLE_INTERVAL_S = 3600.0  # without load sampling, pruning runs hourly


def housekeeping_interval() -> float:
    seconds = settings.FERRY_LOAD_SAMPLE_SECONDS
    return float(seconds) if seconds > 0 else IDLE_INTERVAL_S


def housekeeping() -> dict:
    """One pass: sample load (when enabled), prune load and progress samples."""
    out: dict = {}
    if settings.FERRY_LOAD_SAMPLE_SECONDS > 0:
        out["load"] = load_sample_all()
    out["load_samples_pruned"] = load_samples_prune()
    out["progress_samples_pruned"] = progress_samples_prune()
    return out


@task()
def housekeeping_task() -> dict:
    """Run housekeeping, then queue the next pass."""
    try:
        return housekeeping()
    finally:
        housekeeping_ensure(delay=housekeeping_interval())


def housekeeping_ensure(delay: float = 0.0) -> None:
    """Make sure one housekeeping pass is queued (workers call this at start)."""
    try:
        ensure_periodic(housekeeping_task, key="housekeeping", delay=delay)
    except Exception:  # a worker must start even if the database is briefly unavailable
        logger.exception("queueing housekeeping failed")
