"""Background workers inside the web process, for the embedded default.

With the in-process channel layer, events published by a worker reach browsers only when
the worker lives in the same process as Daphne; `manage.py serve` therefore asks the ASGI
app to start worker threads when no REDIS_URL is set. With Redis, workers are separate
processes (`manage.py ferry_worker`) on any number of machines.
"""

import logging
import os
import threading

from django.conf import settings
from django.utils.crypto import get_random_string

from dashboard.audit.forward import audit_forwarder_start
from dashboard.runtime.housekeeping import housekeeping_ensure
from dashboard.runtime.worker import prompt_worker, run_forever
from migrations_app.execution.tasks import on_worker_start

logger = logging.getLogger("ferry.embedded")
_started = False
_lock = threading.Lock()


def _at_start() -> None:
    on_worker_start()
    housekeeping_ensure()


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
    for index in range(count):
        # Woken at once by an enqueue in this process (see runtime.worker); the interval
        # is only the fallback poll.
        def make(index=index):
            return prompt_worker(f"embedded-{os.getpid()}-{index}-{get_random_string(6)}")

        threading.Thread(
            target=run_forever, args=(make,), name=f"ferry-worker-{index}", daemon=True
        ).start()
    # Audit forwarding to syslog, when configured: one sending thread (see audit.forward).
    audit_forwarder_start()
    # Recover attempts whose worker died with the last server process and queue the periodic
    # execution tick; in a thread, because this may run inside the server's event loop.
    threading.Thread(target=_at_start, name="ferry-reconcile-at-start", daemon=True).start()
    logger.info("started %d embedded worker thread(s)", count)
    return count
