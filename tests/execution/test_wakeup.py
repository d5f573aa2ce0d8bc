"""Idle workers wake at an enqueue instead of waiting out their poll interval."""

import threading
import time

import pytest
from django.db import close_old_connections, connections

from migrations_app.execution import wakeup
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
        thread.join(timeout=10)


def test_it_returns_from_a_wait_when_another_process_touches_the_wake_file(tmp_path, settings):
    path = wakeup._wake_file()
    if path is None:
        pytest.skip("wake file is the SQLite mechanism")
    waiter = wakeup.Waiter()
    wakeup._event.clear()
    assert waiter.wait(0.1) is False  # nothing happened: the full timeout
    threading.Timer(0.2, lambda: path.touch()).start()
    started = time.monotonic()
    assert waiter.wait(10) is True
    assert time.monotonic() - started < 1.0
