"""Background workers inside the web process, for the embedded default.

With the in-process channel layer, events published by a worker reach browsers only when
the worker lives in the same process as Daphne; `manage.py serve` therefore asks the ASGI
app to start worker threads when no REDIS_URL is set. With Redis, workers are separate
processes (`manage.py ferry_worker`) on any number of machines.
"""

import logging
import os
import threading
import time

from django.conf import settings
from django.utils.crypto import get_random_string

logger = logging.getLogger("ferry.embedded")
_started = False
_lock = threading.Lock()


def _run_forever(worker) -> None:
    """Run a database-queue worker; after a lost connection, start its loop again.

    django-tasks-db re-raises a lost connection (PostgreSQL terminated the backend, a
    failover), which would silently end the thread; `manage.py ferry_worker` does the same
    restart for worker processes.
    """
    from django.db import InterfaceError, OperationalError, connections

    while True:
        try:
            worker.run()
            return
        except (OperationalError, InterfaceError) as exc:
            logger.warning("embedded worker lost its database connection (%s); restarting", exc)
            connections.close_all()
            time.sleep(1.0)


def start_embedded_workers() -> int:
    """Start FERRY_EMBEDDED_WORKERS database-queue worker threads once; return how many."""
    global _started
    count = settings.FERRY_EMBEDDED_WORKERS
    if count <= 0:
        return 0
    with _lock:
        if _started:
            return 0
        _started = True
    from dashboard.runtime.worker import prompt_worker

    for index in range(count):
        # Woken at once by an enqueue in this process (see execution.wakeup); the interval
        # is only the fallback poll.
        worker = prompt_worker(f"embedded-{os.getpid()}-{index}-{get_random_string(6)}")
        threading.Thread(
            target=_run_forever, args=(worker,), name=f"ferry-worker-{index}", daemon=True
        ).start()
    # Recover attempts whose worker died with the last server process and queue the periodic
    # execution tick; in a thread, because this may run inside the server's event loop.
    from migrations_app.execution.tasks import on_worker_start

    threading.Thread(target=on_worker_start, name="ferry-reconcile-at-start", daemon=True).start()
    logger.info("started %d embedded worker thread(s)", count)
    return count
