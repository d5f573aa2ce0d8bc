"""Switchover windows (policy.switchover_in_window): an item starts only when its estimate
ends inside the window, and may start before the window opens so that its copy runs
outside it while its switchover falls inside."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from migrations_app.execution.scheduler import schedule_run
from migrations_app.models import ItemAttempt, PlanItem
from tests.migrations_app.execution.conftest import host

pytestmark = pytest.mark.django_db(transaction=True)
POLICY = {"switchover_in_window": True, "assumed_bandwidth_mib_s": 100.0}


def test_it_does_not_start_an_item_that_cannot_finish_before_the_window_closes(
    approved_plan, start, client, people
):
    now = timezone.now()
    a, b = host(), host()
    # 8 GiB at 100 MiB/s: over a minute of copy; the window closes in 20 s.
    plan = approved_plan(
        [(a, b)],
        policy=POLICY,
        window=(now - timedelta(hours=1), now + timedelta(seconds=20)),
        memory_mib=8192,
    )
    run = start(plan)
    schedule_run(run.pk)

    item = PlanItem.objects.get(plan=plan)
    assert not ItemAttempt.objects.filter(run=run).exists()
    assert item.status == "queued"
    assert "ends after the switchover window closes" in item.held_by
    client.force_login(people["operator"])
    page = client.get(reverse("plans:plan-detail", args=[plan.pk])).content.decode()
    assert "ends after the switchover window closes" in page


def test_it_starts_early_so_that_the_switchover_falls_inside_the_window(approved_plan, start):
    now = timezone.now()
    a, b = host(), host()
    far = approved_plan(
        [(a, b)], policy=POLICY, window=(now + timedelta(hours=1), now + timedelta(hours=2))
    )
    run = start(far, override_reason="copy ahead of the window")
    schedule_run(run.pk)
    item = PlanItem.objects.get(plan=far)
    assert not ItemAttempt.objects.filter(run=run).exists()
    assert "Waits for the switchover window" in item.held_by

    near = approved_plan(
        [(a, b)],
        policy=POLICY,
        window=(now + timedelta(seconds=5), now + timedelta(hours=1)),
        memory_mib=8192,
    )
    run = start(near, override_reason="copy ahead of the window")
    schedule_run(run.pk)
    assert ItemAttempt.objects.filter(run=run).count() == 1
    assert PlanItem.objects.get(plan=near).held_by == ""


def test_it_keeps_the_old_behaviour_without_the_policy(approved_plan, start):
    now = timezone.now()
    a, b = host(), host()
    plan = approved_plan(
        [(a, b)], window=(now - timedelta(hours=1), now + timedelta(seconds=20)), memory_mib=8192
    )
    run = start(plan)
    schedule_run(run.pk)
    assert ItemAttempt.objects.filter(run=run).count() == 1
