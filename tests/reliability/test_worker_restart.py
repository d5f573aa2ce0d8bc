"""Regression: a lost database connection must not end a `ferry_worker` process
(found by test_faults.test_plan_survives_postgres_connections_being_terminated: one
pg_terminate_backend made django-tasks-db's loop re-raise and both workers exited)."""

from unittest import mock

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.test import override_settings


@pytest.mark.django_db
@override_settings(TASK_BACKEND="db")
def test_worker_restarts_its_loop_after_a_lost_database_connection():
    calls = []

    def fake_run(worker):
        calls.append(worker.worker_id)
        if len(calls) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return None  # second loop: a normal stop

    with (
        mock.patch("dashboard.runtime.worker.PromptWorker.run", fake_run),
        mock.patch("dashboard.runtime.worker.PromptWorker.configure_signals"),
        mock.patch("dashboard.runtime.worker.connections"),
        mock.patch("dashboard.runtime.worker.RESTART_DELAY_SECONDS", 0),
        mock.patch("dashboard.management.commands.ferry_worker.on_worker_start") as started,
    ):
        call_command("ferry_worker")
    assert len(calls) == 2  # the loop ran again on a new worker after the lost connection
    assert started.call_count == 2  # at start, and again (reconcile) after the restart


@pytest.mark.django_db
@override_settings(TASK_BACKEND="db")
def test_worker_does_not_swallow_other_errors():
    with (
        mock.patch("dashboard.runtime.worker.PromptWorker.run", side_effect=ValueError("bug")),
        mock.patch("dashboard.runtime.worker.PromptWorker.configure_signals"),
        mock.patch("dashboard.management.commands.ferry_worker.on_worker_start"),
        pytest.raises(ValueError),
    ):
        call_command("ferry_worker")
