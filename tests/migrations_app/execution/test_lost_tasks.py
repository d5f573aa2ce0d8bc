"""A queued attempt never waits for a task that is gone.

Its task can fail before the claim commits (PostgreSQL breaking a deadlock: the claim is
tried again) or vanish with a worker or a queue (the tick enqueues it again once it has
waited FERRY_ORPHAN_SECONDS unclaimed)."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from migrations_app.execution import runner, services
from migrations_app.execution.scheduler import schedule_run
from migrations_app.execution.tasks import execute_attempt_task, tick
from migrations_app.models import ItemAttempt
from migrations_app.workflow.services import plan_pause
from tests.migrations_app.execution.conftest import host

pytestmark = pytest.mark.django_db(transaction=True)


def _queued(approved_plan, start):
    a, b = host(), host()
    run = start(approved_plan([(a, b)]))
    schedule_run(run.pk)
    return run, ItemAttempt.objects.get(run=run)


def _tasks_for(attempt) -> int:
    return sum(
        1
        for args in DBTaskResult.objects.filter(
            task_path=execute_attempt_task.module_path, status="READY"
        ).values_list("args_kwargs", flat=True)
        if args["args"] == [attempt.pk]
    )


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_a_claim_the_database_rolled_back_as_a_deadlock_is_tried_again(
    approved_plan, start, monkeypatch
):
    run, attempt = _queued(approved_plan, start)
    started = services.attempt_started
    calls = []

    def once_deadlocked(**kwargs):
        calls.append(kwargs["attempt"].pk)
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from _Deadlock()
        return started(**kwargs)

    monkeypatch.setattr(services, "attempt_started", once_deadlocked)
    assert runner.execute(attempt.pk) == "completed"
    assert calls == [attempt.pk, attempt.pk]
    attempt.refresh_from_db()
    # The rolled-back claim left no trace: one claim, by the try that went through.
    assert attempt.status == "completed" and attempt.lease_epoch == 1


def test_another_database_error_at_the_claim_is_not_retried(approved_plan, start, monkeypatch):
    run, attempt = _queued(approved_plan, start)

    def broken(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "attempt_started", broken)
    with pytest.raises(OperationalError):
        runner.execute(attempt.pk)
    attempt.refresh_from_db()
    assert attempt.status == "queued" and attempt.claimed_by == ""


def test_the_tick_enqueues_again_the_task_of_an_attempt_nobody_claimed(
    approved_plan, start, settings
):
    settings.FERRY_ORPHAN_SECONDS = 60
    run, attempt = _queued(approved_plan, start)
    assert attempt.queued_at is not None
    # Its task is lost (the worker holding it died before the claim).
    DBTaskResult.objects.filter(task_path=execute_attempt_task.module_path).delete()
    assert tick()["requeued"] == []  # not yet: it may only be waiting for a free worker

    ItemAttempt.objects.filter(pk=attempt.pk).update(
        queued_at=timezone.now() - timedelta(seconds=61)
    )
    assert tick()["requeued"] == [attempt.pk]
    assert _tasks_for(attempt) == 1
    assert tick()["requeued"] == []  # once per period, not on every tick

    assert runner.execute(attempt.pk) == "completed"
    assert runner.execute(attempt.pk) == "not claimed"  # a late original delivery


def test_the_tick_leaves_claimed_cancelled_and_paused_attempts_alone(
    approved_plan, start, settings, people
):
    settings.FERRY_ORPHAN_SECONDS = 60
    old = timezone.now() - timedelta(seconds=120)
    run, claimed = _queued(approved_plan, start)
    ItemAttempt.objects.filter(pk=claimed.pk).update(status="running", queued_at=old)
    run2, cancelled = _queued(approved_plan, start)
    ItemAttempt.objects.filter(pk=cancelled.pk).update(cancel_requested=True, queued_at=old)
    run3, paused = _queued(approved_plan, start)
    ItemAttempt.objects.filter(pk=paused.pk).update(queued_at=old)
    plan_pause(plan=run3.plan, actor=people["operator"], reason="change freeze")
    assert tick()["requeued"] == []
