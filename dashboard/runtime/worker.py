"""Waking idle database-queue workers as soon as a task is enqueued.

django-tasks-db workers poll the queue table and sleep between empty polls; a plan started
in the web process then waits for the next poll (up to a whole interval) before anything
happens. An enqueue now also sends a wake-up that costs nearly nothing to wait for, and the
poll interval stays as the fallback (a lost wake-up only costs that interval):

- in this process: a `threading.Event` (embedded worker threads, and a worker that enqueues
  its own next task, e.g. the scheduler's attempts);
- other processes on PostgreSQL: `NOTIFY ferry_tasks`, delivered at the enqueuer's commit,
  which the worker waits for with `LISTEN` on a connection of its own;
- other processes on SQLite (one machine by definition): the mtime of a file next to the
  database, which the waiting worker stats every 10 ms (no database lock, unlike a poll).
"""

import contextlib
import logging
import random
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
)
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

logger = logging.getLogger("ferry.runtime.worker")

CHANNEL = "ferry_tasks"
# One stat() per 10 ms per idle worker costs nothing measurable and answers an enqueue in
# ~5 ms on average (a 50 ms poll cost a 2-s move about 1 %).
STAT_SECONDS = 0.01
_event = threading.Event()


def _wake_file() -> Path | None:
    """The SQLite wake-up file (beside the database), or None on other databases."""
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).with_name(Path(name).name + ".wake")


def on_task_enqueued(sender=None, task_result=None, **kwargs) -> None:
    """Receiver of django-tasks' `task_enqueued`: wake workers here and elsewhere."""
    _event.set()
    try:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
            return
        path = _wake_file()
        if path is not None:
            path.touch()
    except Exception:  # a wake-up is an optimisation: the poll still finds the task
        logger.debug("wake-up not sent", exc_info=True)


class Waiter:
    """Blocks for up to a timeout, returning early when a task may have been enqueued."""

    def __init__(self, wake_file: Path | None = None):
        self._listen = None
        self._mtime = None
        self._file = wake_file  # given: watch this file, whatever the database

    def _postgres(self):
        if self._listen is None:
            import psycopg

            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self._listen = psycopg.connect(**params, autocommit=True)
            self._listen.execute(f"LISTEN {CHANNEL}")
        return self._listen

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` passes; returns whether a wake-up came."""
        if _event.is_set():
            _event.clear()
            return True
        if self._file is None and connection.vendor == "postgresql":
            try:
                conn = self._postgres()
                woke = any(True for _ in conn.notifies(timeout=timeout, stop_after=1))
                _event.clear()
                return woke
            except Exception:  # LISTEN failed: fall back to the plain poll interval
                logger.debug("LISTEN failed; polling", exc_info=True)
                self.close()
        path = self._file or _wake_file()
        if path is not None and self._mtime is None:
            self._mtime = _mtime(path)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if _event.wait(min(STAT_SECONDS, left)):
                _event.clear()
                return True
            if path is not None:
                now = _mtime(path)
                if now != self._mtime:
                    self._mtime = now
                    return True

    def close(self) -> None:
        if self._listen is not None:
            with contextlib.suppress(Exception):
                self._listen.close()
            self._listen = None


def _mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class PromptWorker(Worker):
    """django-tasks-db's worker whose idle sleep ends at a wake-up instead of a fixed wait.

    The loop is the library's (claim under an exclusive transaction, skip a locked SQLite
    database, run the task), with `Waiter.wait` in place of `time.sleep(interval)`.
    """

    def run(self) -> None:
        waiter = Waiter()
        if self.startup_delay and self.interval:
            time.sleep(random.random() * min(self.interval, 1.0))  # noqa: S311 - no herd
        try:
            while self.running:
                close_old_connections()
                tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
                if not self.process_all_queues:
                    tasks = tasks.filter(queue_name__in=self.queue_names)
                if self.excluded_queue_names:
                    tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
                with exclusive_transaction(tasks.db):
                    try:
                        task_result = tasks.get_locked()
                        if task_result is not None:
                            task_result.claim(self.worker_id)
                    except OperationalError as exc:
                        if not is_locked_database_exception(exc):
                            raise
                        task_result = None
                if task_result is not None:
                    self.run_task(task_result)
                    continue  # more may be waiting: look again at once
                close_old_connections()
                if self.running:
                    waiter.wait(self.interval)
        finally:
            waiter.close()


def prompt_worker(worker_id: str) -> PromptWorker:
    """A worker on every queue of the default backend, polling at FERRY_WORKER_POLL_SECONDS
    only when no wake-up comes (ferry_worker processes and embedded threads alike)."""

    return PromptWorker(
        queue_names=["*"],
        interval=float(settings.FERRY_WORKER_POLL_SECONDS),
        batch=False,
        backend_name="default",
        startup_delay=True,
        max_tasks=None,
        worker_id=worker_id,
        excluded_queue_names=[],
    )


RESTART_DELAY_SECONDS = 1.0


def run_forever(make_worker, *, on_restart=None) -> None:
    """Run database-queue workers until one stops normally (SIGTERM/SIGINT).

    django-tasks-db's loop re-raises a lost connection (PostgreSQL terminated the backend,
    a failover), which would end the thread or process; a fresh worker on a fresh
    connection takes over instead, after `on_restart` (recover what the lost one held).
    """
    while True:
        worker = make_worker()
        try:
            worker.run()
            return
        except (OperationalError, InterfaceError) as exc:
            logger.warning("worker lost its database connection (%s); restarting", exc)
            connections.close_all()
            time.sleep(RESTART_DELAY_SECONDS)
            if on_restart is not None:
                on_restart()
