"""The follower's rules on its own (pure functions): when a followed plan counts as ended,
when it succeeded, and how far an item is by its mode."""

from ferry_cli.live import PlanView
from ferry_cli.render import item_percent


def view(plan_status: str, *item_statuses: str) -> PlanView:
    v = PlanView()
    v.apply_snapshot(
        {
            "plan": {"id": 1, "name": "p", "status": plan_status},
            "run": {"id": 9, "status": "running"},
            "last_seq": 4,
            "items": [{"id": n, "vm": f"vm{n}", "status": s} for n, s in enumerate(item_statuses)],
        }
    )
    return v


def test_it_ends_only_when_the_plan_ended_and_no_item_still_runs():
    assert view("completed", "completed", "completed").outcome() == "completed"
    assert view("completed", "completed", "completed").succeeded()
    assert view("running", "completed", "queued").outcome() is None
    assert view("approved", "pending").outcome() is None
    assert view("draft", "pending").outcome() is None
    assert view("rejected", "pending").outcome() == "rejected"
    # A cancel ends the plan at once; its running item's abort is still to come.
    assert view("cancelled", "running").outcome() is None
    assert view("cancelled", "cancelled").outcome() == "cancelled"
    assert not view("cancelled", "completed").succeeded()


def test_it_stops_when_the_run_waits_for_an_operator_after_failures():
    waiting = view("paused", "completed", "failed")
    assert waiting.outcome() == "waiting_for_operator"
    assert not waiting.succeeded()
    assert view("paused", "completed", "queued").outcome() is None  # a plain pause


def test_it_keeps_the_sequence_of_a_run_when_an_older_snapshot_arrives():
    v = view("running", "running")
    v.last_seq = 10
    v.apply_snapshot({"plan": {"status": "running"}, "run": {"id": 9}, "last_seq": 6})
    assert v.last_seq == 10
    v.apply_snapshot({"plan": {"status": "running"}, "run": {"id": 10}, "last_seq": 2})
    assert v.last_seq == 2  # a new run numbers from 1 again


def test_it_measures_progress_by_what_the_mode_moves():
    sample = {
        "memory_total": 100,
        "memory_remaining": 40,
        "disk_total": 300,
        "disk_remaining": 0,
    }
    assert item_percent({"mode": "live", "status": "running", "sample": sample}) == 60.0
    assert item_percent({"mode": "live_copy", "status": "running", "sample": sample}) == 90.0
    assert item_percent({"mode": "storage_only", "status": "running", "sample": sample}) == 99.0
    assert item_percent({"mode": "live", "status": "queued"}) == 0.0
    assert item_percent({"mode": "live", "status": "completed", "sample": sample}) == 100.0
