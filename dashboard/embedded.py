"""Background workers inside the web process, for the embedded default.

With the in-process channel layer, events published by a worker reach browsers only when
the worker lives in the same process as Daphne; `manage.py serve` therefore asks the ASGI
app to start worker threads when no REDIS_URL is set. With Redis, workers are separate
processes (`manage.py ferry_worker`) on any number of machines.
"""

import logging
import os
import threading

from django.utils.crypto import get_random_string

logger = logging.getLogger("ferry.embedded")
_started = False
_lock = threading.Lock()


def start_embedded_workers() -> int:
    """Start FERRY_EMBEDDED_WORKERS database-queue worker threads once; return how many."""
    global _started
    count = int(os.environ.get("FERRY_EMBEDDED_WORKERS", "0") or 0)
    if count <= 0:
        return 0
    with _lock:
        if _started:
            return 0
        _started = True
    from django_tasks_db.management.commands.db_worker import Worker

    for index in range(count):
        worker = Worker(
            queue_names=["*"],
            interval=0.5,
            batch=False,
            backend_name="default",
            startup_delay=True,
            max_tasks=None,
            worker_id=f"embedded-{os.getpid()}-{index}-{get_random_string(6)}",
            excluded_queue_names=[],
        )
        threading.Thread(target=worker.run, name=f"ferry-worker-{index}", daemon=True).start()
    logger.info("started %d embedded worker thread(s)", count)
    return count
