"""Fencing: a worker acts on a hypervisor only while it holds the attempt's lease under its
epoch; a take-over by the reconciler, or a heartbeat older than the lease allows, stops it
before it acts, and the fencing log says so."""

import logging
import time

import pytest

from migrations_app.execution import claims, errors
from migrations_app.execution.guard import Guard, LeaseLost
from migrations_app.execution.scheduler import schedule_run
from migrations_app.models import ItemAttempt
from tests.migrations_app.execution.conftest import host

pytestmark = pytest.mark.django_db


def _claimed(approved_plan, start, worker="w1"):
    run = start(approved_plan([(host(), host())]))
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)
    assert claims.claim(attempt.pk, worker)
    attempt.refresh_from_db()
    return attempt


def test_it_lets_the_owner_act_and_counts_each_claim_as_a_new_epoch(approved_plan, start):
    attempt = _claimed(approved_plan, start)
    assert attempt.lease_epoch == 1
    guard = Guard(attempt.pk, "w1", attempt.lease_epoch)
    assert guard.act("test action", lambda: "done") == "done"


def test_it_refuses_a_stale_worker_after_a_take_over(approved_plan, start, caplog):
    attempt = _claimed(approved_plan, start)
    stale = Guard(attempt.pk, "w1", attempt.lease_epoch)
    ItemAttempt.objects.filter(pk=attempt.pk).update(lease_expires_at="2000-01-01T00:00Z")
    assert claims.take_over(attempt.pk, "reconciler")
    assert ItemAttempt.objects.get(pk=attempt.pk).lease_epoch == 2
    acted = []
    with caplog.at_level(logging.WARNING, logger="ferry.execution.fencing"):
        with pytest.raises(LeaseLost):
            stale.act("abortJob", lambda: acted.append("abort"))
        with pytest.raises(LeaseLost):
            stale.beat()
    assert acted == []
    assert "fencing: refused abortJob" in caplog.text


def test_it_refuses_when_its_own_heartbeat_is_too_old_without_asking_anyone(
    approved_plan, start, settings, caplog, django_assert_num_queries
):
    settings.FERRY_LEASE_SECONDS = 6
    attempt = _claimed(approved_plan, start)
    guard = Guard(attempt.pk, "w1", attempt.lease_epoch)
    guard.last_beat = time.monotonic() - 5  # as after a SIGSTOP: older than lease - margin
    with (
        caplog.at_level(logging.WARNING, logger="ferry.execution.fencing"),
        django_assert_num_queries(0),
        pytest.raises(LeaseLost),
    ):
        guard.act("resume source", lambda: None)
    assert "last heartbeat is 5." in caplog.text


def test_it_keeps_the_lease_while_a_slow_call_runs_and_gives_up_after_its_timeout(
    approved_plan, start, settings
):
    settings.FERRY_LEASE_SECONDS = 2
    attempt = _claimed(approved_plan, start)
    guard = Guard(attempt.pk, "w1", attempt.lease_epoch)
    assert guard.call("slow read", lambda: time.sleep(3) or "answer", timeout=10) == "answer"
    # Heartbeats went on meanwhile: the lease is still this worker's.
    assert claims.owns(attempt.pk, "w1", attempt.lease_epoch)
    with pytest.raises(errors.ExecutionError) as hung:
        guard.call("hung read", time.sleep, 5, timeout=1)
    assert hung.value.error_class == errors.CALL_TIMEOUT
    assert guard.abandoned_calls == 1
