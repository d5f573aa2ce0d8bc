"""Idle workers wake at an enqueue instead of waiting out their poll interval."""

import threading
import time

import pytest
from django.db import close_old_connections, connections

from dashboard.runtime import worker as wakeup
from migrations_app.execution.tasks import tick_task

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_runs_an_enqueued_task_long_before_the_poll_interval_when_woken(settings):
    settings.FERRY_WORKER_POLL_SECONDS = 30.0
    worker = wakeup.prompt_worker("test-wakeup")
    worker.startup_delay = False

    def run():
        try:
            worker.run()
        finally:
            close_old_connections()
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)  # the worker found the queue empty and waits (30 s fallback)
        started = time.monotonic()
        result = tick_task.enqueue()
        while time.monotonic() - started < 5:
            result.refresh()
            if result.status == "SUCCESSFUL":
                break
            time.sleep(0.02)
        assert result.status == "SUCCESSFUL"
        assert time.monotonic() - started < 2.0
    finally:
        worker.running = False
        wakeup._event.set()  # end the wait so the thread sees running=False
        if connections["default"].vendor == "postgresql":
            # A PostgreSQL waiter sits in LISTEN (up to the 30 s interval): wake it the
            # way another process would, or it outlives the test and takes later tasks.
            wakeup.on_task_enqueued()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_it_returns_from_a_wait_when_another_process_touches_the_wake_file(tmp_path):
    """SQLite's mechanism, tested on any database (CI runs the suite on PostgreSQL)."""
    path = tmp_path / "ferry.sqlite3.wake"
    waiter = wakeup.Waiter(wake_file=path)
    wakeup._event.clear()
    assert waiter.wait(0.1) is False  # nothing happened: the full timeout
    threading.Timer(0.2, lambda: path.touch()).start()
    started = time.monotonic()
    assert waiter.wait(10) is True
    assert time.monotonic() - started < 1.0


def _postgres_only():
    if connections["default"].vendor != "postgresql":
        pytest.skip("NOTIFY/LISTEN is the PostgreSQL mechanism (DATABASE_URL=postgres://...)")


def _raw_postgres():
    """A psycopg connection of its own, as another process would have."""
    import psycopg

    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


@pytest.mark.postgres
def test_it_returns_from_a_wait_when_another_process_notifies_on_postgresql():
    _postgres_only()
    waiter = wakeup.Waiter()
    other = _raw_postgres()
    notify = threading.Timer(0.3, lambda: other.execute(f"NOTIFY {wakeup.CHANNEL}"))
    try:
        wakeup._event.clear()
        assert waiter.wait(0.2) is False  # LISTENing, nothing sent: the full timeout
        # The in-process event is not what wakes it: only the NOTIFY from elsewhere does.
        notify.start()
        started = time.monotonic()
        assert waiter.wait(10) is True
        assert time.monotonic() - started < 2.0
    finally:
        notify.join()  # a wake-up from elsewhere may come first: never close under it
        waiter.close()
        other.close()


@pytest.mark.postgres
def test_an_enqueue_sends_the_notify_that_wakes_workers_of_other_processes():
    _postgres_only()
    listener = _raw_postgres()
    try:
        listener.execute(f"LISTEN {wakeup.CHANNEL}")
        tick_task.enqueue()  # autocommit here: the NOTIFY is delivered at once
        got = [n.channel for n in listener.notifies(timeout=5, stop_after=1)]
        assert got == [wakeup.CHANNEL]
    finally:
        listener.close()
