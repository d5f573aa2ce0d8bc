"""Budgets across plans and priority between plans (issue 16), on the rehearsal driver:
a host's inbound budget holds for every running plan, a pool's copy budget for storage
moves, the plan page's reason names the budget, urgent plans take free slots first, and an
urgent plan that may preempt stops a routine move in pre-copy (its VM stays on its source
and the move runs again later). The estimate's timeline follows the same budgets."""

import pytest

from dashboard.audit.models import AuditEvent
from inventory.models import StoragePool, VirtualDisk
from migrations_app.checks.snapshot import snapshot_load
from migrations_app.estimate import plan_estimate
from migrations_app.execution.scheduler import schedule_run
from migrations_app.live.snapshots import plan_snapshot
from migrations_app.models import ItemAttempt, PlanItem, RunEvent
from tests.migrations_app.execution.conftest import WorkerThreads, drain, host, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ACTIVE = ("queued", "running")
# Plan limits out of the way: the budgets under test are the Ferry-wide ones.
WIDE = {"max_inbound_per_host": 5, "max_outbound_per_host": 5}


def active_into(dst) -> int:
    return ItemAttempt.objects.filter(destination_host=dst, status__in=ACTIVE).count()


def test_a_big_plan_behind_a_full_budget_sends_one_held_event_not_one_per_item(
    approved_plan, start
):
    """A 60-item plan into a host that takes few at once: one event names 50 of the held
    items and counts them all (one per item overflowed the pages' websocket channels)."""
    a, b = host(), host()
    b.max_inbound = 2
    b.save(update_fields=["max_inbound"])
    run = start(approved_plan([(a, b)] * 60, policy=WIDE))
    schedule_run(run.pk)
    started = ItemAttempt.objects.filter(run=run).count()
    assert 1 <= started <= 2
    [event] = RunEvent.objects.filter(run=run, kind="items.held")
    assert event.payload["count"] == 60 - started and len(event.payload["held_by"]) == 50
    [text] = set(event.payload["held_by"].values())  # the one budget that is full
    assert "all plans" in text, text


def test_two_plans_sharing_a_destination_never_exceed_its_inbound_budget(approved_plan, start):
    a, b, c = host(), host(), host()
    c.max_inbound = 2
    c.save(update_fields=["max_inbound"])
    plan1 = approved_plan([(a, c)] * 2, policy=WIDE)
    plan2 = approved_plan([(b, c)] * 2, policy=WIDE)
    run1, run2 = start(plan1), start(plan2)
    schedule_run(run1.pk)
    schedule_run(run2.pk)
    # One pass starts what fits across both plans: two moves into c, the other two wait and
    # say why.
    assert active_into(c) == 2
    waiting = PlanItem.objects.filter(plan__in=[plan1, plan2]).exclude(attempts__status__in=ACTIVE)
    assert waiting.count() == 2
    for held in waiting:
        assert held.held_by == f"{c.name}'s inbound budget (2/2, all plans)"
    # The live page learns it (an event, and the snapshot it re-reads); a status link for
    # stakeholders does not name the host.
    # At most one event per run and pass names the items a budget newly holds (not one
    # event per item); the latest names each waiting item with its reason.
    events = RunEvent.objects.filter(kind="items.held").order_by("pk")
    assert events.count() <= 4  # two passes, two runs
    told = {int(i): text for e in events for i, text in e.payload["held_by"].items()}
    assert {w.pk: w.held_by for w in waiting}.items() <= told.items()
    # A pass with nothing new says nothing more.
    before = events.count()
    schedule_run(run1.pk)
    assert RunEvent.objects.filter(kind="items.held").count() == before
    rows = {r["id"]: r for r in plan_snapshot(waiting[0].plan)["items"]}
    assert rows[waiting[0].pk]["held_by"] == waiting[0].held_by
    redacted = {r["id"]: r for r in plan_snapshot(waiting[0].plan, redact_hosts=True)["items"]}
    assert c.name not in redacted[waiting[0].pk]["held_by"]
    # Both plans run to the end; at no moment did more than two moves run into c.
    drain(run1)
    drain(run2)
    spans = ItemAttempt.objects.filter(destination_host=c).values_list("started_at", "finished_at")
    edges = sorted([(t0, 1) for t0, _ in spans] + [(t1, -1) for _, t1 in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert len(spans) == 4 and peak <= 2
    for plan in (plan1, plan2):
        plan.refresh_from_db()
        assert plan.status == "completed"
    assert not PlanItem.objects.exclude(held_by="").exists()  # cleared once started


def test_a_pool_copy_budget_serialises_storage_moves_of_two_plans(approved_plan, start):
    a = host()
    src = StoragePool.objects.create(
        name="slow", identity="dir:/s", pool_type="dir", target_path="/s"
    )
    dst = StoragePool.objects.create(
        name="fast", identity="dir:/f", pool_type="dir", target_path="/f", max_copies=1
    )
    src.hosts.add(a)
    dst.hosts.add(a)

    def storage_move(plan):
        item = plan.items.get()
        item.mode = "storage_only"
        item.storage_map = {str(src.pk): dst.pk}
        item.save()
        VirtualDisk.objects.create(vm=item.vm, target="vda", source="/s/x.qcow2", pool=src)

    plans = [approved_plan([(a, a)], edit=storage_move) for _ in range(2)]
    runs = [start(p) for p in plans]
    for run in runs:
        schedule_run(run.pk)
    assert ItemAttempt.objects.filter(status__in=ACTIVE).count() == 1
    (waiting,) = PlanItem.objects.filter(plan__in=plans).exclude(attempts__status__in=ACTIVE)
    assert waiting.held_by == "pool fast's copy budget (1/1, all plans)"


def test_an_urgent_plan_takes_the_next_free_slot_before_a_routine_one(approved_plan, start):
    a, b = host(), host()
    b.max_inbound = 1
    b.save(update_fields=["max_inbound"])
    routine = approved_plan([(a, b)] * 2, policy=WIDE)
    run_routine = start(routine)
    schedule_run(run_routine.pk)  # takes b's only slot
    urgent = approved_plan([(a, b)], policy={"priority": "urgent"})
    run_urgent = start(urgent)
    schedule_run(run_urgent.pk)
    assert ItemAttempt.objects.filter(status__in=ACTIVE).count() == 1
    first = ItemAttempt.objects.get(run=run_routine)
    # The slot frees: the next pass (triggered by the routine run) starts the urgent item,
    # not the routine plan's second item.
    ItemAttempt.objects.filter(pk=first.pk).update(status="completed")
    PlanItem.objects.filter(pk=first.item_id).update(status="completed")
    result = schedule_run(run_routine.pk)
    assert result["started"] == []
    assert ItemAttempt.objects.filter(run=run_urgent, status__in=ACTIVE).count() == 1
    second = PlanItem.objects.get(plan=routine, position=1)
    assert "inbound budget (1/1" in second.held_by


def test_an_urgent_plan_that_preempts_stops_a_routine_move_in_pre_copy(
    approved_plan, start, settings
):
    settings.FERRY_REHEARSAL_SPEED = 2.0  # the routine move is still in pre-copy when asked
    a, b = host(), host()
    b.max_inbound = 1
    b.save(update_fields=["max_inbound"])
    routine = approved_plan([(a, b)], policy={"progress_timeout_s": 0}, memory_mib=8192)
    run_routine = start(routine)
    with WorkerThreads(2):
        schedule_run(run_routine.pk)
        wait_for(
            lambda: ItemAttempt.objects.filter(run=run_routine, phase="transfer").exists(),
            timeout=30,
        )
        urgent = approved_plan(
            [(a, b)], policy={"priority": "urgent", "preempt": True}, memory_mib=256
        )
        run_urgent = start(urgent)
        schedule_run(run_urgent.pk)
        victim = ItemAttempt.objects.get(run=run_routine, number=1)
        assert victim.preempted_by_id == urgent.pk and victim.cancel_requested
        wait_for(lambda: ItemAttempt.objects.get(pk=victim.pk).status == "cancelled", timeout=60)
        wait_for(
            lambda: ItemAttempt.objects.filter(run=run_urgent, status="completed").exists(),
            timeout=60,
        )
    victim.refresh_from_db()
    assert victim.error_class == "preempted"
    assert victim.evidence["failure"]["safety"]["decision"]["verdict"] == "on_source"
    item = victim.item
    item.refresh_from_db()
    # The routine item waits for a slot again, and gets a second attempt once there is one.
    assert item.status in ("queued", "running", "completed")
    assert AuditEvent.objects.filter(action="item.preempted").count() == 1
    assert RunEvent.objects.filter(run=run_routine, kind="item.preempted").exists()
    settings.FERRY_REHEARSAL_SPEED = 400.0  # the second attempt need not be watched
    drain(run_routine)
    item.refresh_from_db()
    assert item.status == "completed"
    assert item.attempts.order_by("number").last().number == 2


def test_the_estimate_timeline_follows_the_hosts_budgets(approved_plan):
    a, b = host(), host()
    b.max_inbound = 1
    b.save(update_fields=["max_inbound"])
    plan = approved_plan(
        [(a, b)] * 3, policy={"max_inbound_per_host": 4, "max_outbound_per_host": 4}
    )
    estimate = plan_estimate(snapshot_load(plan))
    spans = sorted((e.start_s, e.end_s) for e in estimate.items)
    # One at a time into b: each starts when the one before ends.
    assert spans[1][0] == spans[0][1] and spans[2][0] == spans[1][1]
