"""Migrations that cannot get stuck (issue 16), on the rehearsal driver: the convergence
schedule fires its steps in order, one per stalled window, with their times in the
evidence; timeouts take their policy action; force-complete pauses the guest (asked by the
policy or by an operator) and its downtime counts from the pause. The same monitor follows
real migrations (the lab tests in tests/lab/test_convergence_lab.py)."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from migrations_app.execution.force_complete import refusal
from migrations_app.execution.scheduler import schedule_run
from migrations_app.models import ItemAttempt, RunEvent
from tests.migrations_app.execution.conftest import WorkerThreads, drain, host, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# A guest that dirties five times faster than the cap lets pages go: pre-copy never ends.
# Timeouts are far away unless a test is about them.
STUCK = {
    "bandwidth_mib_s": 100,
    "on_no_convergence": "raise_downtime",
    "completion_timeout_floor_s": 86_400,
    "progress_timeout_s": 0,
}


def stuck_plan(approved_plan, policy, memory_mib=1024):
    a, b = host(), host()
    plan = approved_plan([(a, b)], policy={**STUCK, **policy}, memory_mib=memory_mib)
    vm = plan.items.get().vm
    vm.dirty_rate_mib_s = 500.0
    vm.save(update_fields=["dirty_rate_mib_s"])
    return plan


def the_attempt(run) -> ItemAttempt:
    return ItemAttempt.objects.get(run=run)


def test_it_fires_the_schedule_in_order_one_step_per_stalled_window(approved_plan, start):
    schedule = [
        {"action": "max_downtime", "value": 1000},
        {"action": "max_downtime", "value": 5000},
        {"action": "abort"},
    ]
    plan = stuck_plan(approved_plan, {"convergence_schedule": schedule})
    run = drain(start(plan))
    attempt = the_attempt(run)
    assert attempt.status == "failed" and attempt.error_class == "not_converging"
    fired = attempt.evidence["convergence"]
    assert [(s["action"], s.get("value")) for s in fired] == [
        ("max_downtime", 1000),
        ("max_downtime", 5000),
        ("abort", None),
    ]
    assert all(s["why"] == "stall" and s["stall"]["window_s"] > 0 for s in fired)
    times = [s["at_s"] for s in fired]
    assert times == sorted(times) and len(set(times)) == 3
    events = RunEvent.objects.filter(run=run, kind="item.converge").order_by("seq")
    assert [e.payload["action"] for e in events] == ["max_downtime", "max_downtime", "abort"]
    # The VM stayed on its source (the decision table's verdict after the abort).
    assert attempt.evidence["failure"]["safety"]["decision"]["verdict"] == "on_source"


def test_it_force_completes_as_the_schedule_says_and_counts_downtime_from_the_pause(
    approved_plan, start
):
    plan = stuck_plan(approved_plan, {"convergence_schedule": [{"action": "force_complete"}]})
    attempt = the_attempt(drain(start(plan)))
    assert attempt.status == "completed", attempt.error_message
    assert attempt.ferry_paused_source_at is not None
    assert attempt.force_complete_by == "policy: convergence schedule"
    forced = attempt.evidence["force_complete"]
    assert forced["why"] == "convergence schedule"
    assert forced["downtime_ms_from_pause"] >= 0
    # Downtime is never less than what the pause lasted.
    assert attempt.downtime_ms >= forced["downtime_ms_from_pause"]
    assert RunEvent.objects.filter(run=attempt.run, kind="item.force_complete").exists()


def test_it_switches_to_post_copy_when_the_completion_timeout_says_so(approved_plan, start):
    plan = stuck_plan(
        approved_plan,
        {
            "convergence_schedule": [],
            "downtime_steps_ms": [],  # no schedule steps: only the timeout acts
            "completion_timeout_floor_s": 10,
            "completion_timeout_s_per_gib": 5,
            "completion_timeout_action": "postcopy",
            "progress_timeout_s": 0,
        },
        memory_mib=4096,
    )
    attempt = the_attempt(drain(start(plan)))
    assert attempt.status == "completed", attempt.error_message
    assert attempt.postcopy_at is not None
    (step,) = attempt.evidence["convergence"]
    assert step["action"] == "postcopy" and step["why"] == "completion timeout"
    timeout = RunEvent.objects.get(run=attempt.run, kind="item.timeout").payload
    assert timeout["timeout"] == "completion" and timeout["action"] == "postcopy"


def test_it_aborts_a_move_without_progress_at_the_progress_timeout(approved_plan, start):
    plan = stuck_plan(
        approved_plan,
        {"downtime_steps_ms": [], "progress_timeout_s": 20},
    )
    attempt = the_attempt(drain(start(plan)))
    assert attempt.status == "failed" and attempt.error_class == "no_progress"
    assert "progress timeout" in attempt.error_message
    assert "convergence" not in attempt.evidence  # nothing in the schedule to fire


def test_a_stall_before_the_schedule_runs_out_does_not_abort(approved_plan, start):
    # raise_downtime with steps large enough: the move converges after the second step.
    plan = stuck_plan(
        approved_plan,
        {"downtime_steps_ms": [1000, 60000], "progress_timeout_s": 0},
        memory_mib=512,
    )
    attempt = the_attempt(drain(start(plan)))
    assert attempt.status == "completed", attempt.error_message
    assert [s["value"] for s in attempt.evidence["convergence"]] == [1000, 60000]


def test_the_operator_force_completes_a_running_move(approved_plan, start, settings, people):
    # Slow enough that the move is still running when the request arrives.
    settings.FERRY_REHEARSAL_SPEED = 5.0
    plan = stuck_plan(approved_plan, {"progress_timeout_s": 0, "downtime_steps_ms": []})
    run = start(plan)
    schedule_run(run.pk)
    attempt = the_attempt(run)
    api = APIClient()
    api.force_authenticate(people["operator"])
    item = attempt.item
    url = f"/api/v1/items/{item.pk}/force-complete/"
    with WorkerThreads(1):
        wait_for(lambda: the_attempt(run).phase in ("transfer", "converge"), timeout=30)
        wait_for(lambda: the_attempt(run).samples.count() >= 2, timeout=30)
        viewer = APIClient()
        viewer.force_authenticate(people["viewer"])
        assert viewer.post(url, {}, format="json").status_code == 403
        answer = api.post(url, {"reason": "window closes"}, format="json")
        assert answer.status_code == 202, answer.content
        body = answer.json()
        assert body["force_complete_requested"] and body["extra_downtime_ms"] > 0
        again = api.post(url, {}, format="json")
        assert again.status_code == 409 and "already asked by oli" in again.json()["detail"]
        wait_for(lambda: the_attempt(run).status != "running", timeout=60)
    attempt = the_attempt(run)
    assert attempt.status == "completed", attempt.error_message
    assert attempt.force_complete_by == "oli" and attempt.ferry_paused_source_at is not None
    assert attempt.evidence["force_complete"]["why"] == "asked"
    late = api.post(url, {}, format="json")
    assert late.status_code == 409 and "not moving now" in late.json()["detail"]


def test_it_refuses_force_complete_of_a_storage_move_or_post_copy(approved_plan, start, people):
    a = host()
    plan = approved_plan([(a, a)])
    run = start(plan)
    schedule_run(run.pk)
    attempt = the_attempt(run)
    item = attempt.item
    ItemAttempt.objects.filter(pk=attempt.pk).update(status="running", phase="transfer")
    item.mode = "storage_only"
    attempt.refresh_from_db()
    assert "storage only" in refusal(item, attempt)
    item.mode = "live"
    attempt.postcopy_at = timezone.now()
    assert "post-copy" in refusal(item, attempt)
    attempt.postcopy_at = None
    attempt.migrate_called_at = None
    assert "not sending memory" in refusal(item, attempt)
    api = APIClient()
    api.force_authenticate(people["operator"])
    ItemAttempt.objects.filter(pk=attempt.pk).update(status="completed")
    answer = api.post(f"/api/v1/items/{item.pk}/force-complete/", {}, format="json")
    assert answer.status_code == 409
