"""Periodic tasks that re-enqueue themselves, at most one queued per task.

A periodic task's body ends with `ensure_periodic(itself, delay=interval)`; workers call
it once at start, so a task killed with its worker comes back. On the database backend an
already queued (READY) run of the task means there is nothing to do; on RQ one run per
interval is allowed across all workers by a Redis key set with NX and an expiry.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone


def ensure_periodic(task, *, key: str, delay: float = 0.0) -> bool:
    """Queue `task` (after `delay` seconds) unless a run is queued already; True if queued."""
    backend = task.get_backend()
    if not backend.supports_defer:
        return False  # the immediate backend would recurse; tests call the body themselves
    if backend.__class__.__name__ == "DatabaseBackend":
        from django_tasks_db.models import DBTaskResult

        if DBTaskResult.objects.filter(task_path=task.module_path, status="READY").exists():
            return False
    elif not _redis_once(key, delay):
        return False
    when = timezone.now() + timedelta(seconds=delay) if delay else None
    (task.using(run_after=when) if when else task).enqueue()
    return True


def _redis_once(key: str, delay: float) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        return bool(client.set(f"ferry:periodic:{key}", "1", nx=True, ex=max(1, int(delay or 1))))
    except Exception:
        return True
