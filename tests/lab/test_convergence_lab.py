"""Migrations that cannot get stuck (issue 16), on the real lab: a guest that dirties its
memory well above the bandwidth cap never converges by itself. Ferry's policy answers
(force-complete at the completion timeout; a convergence schedule fired step by step while
the move is stalled), and budgets hold across plans. Every test checks the guest itself:
its heartbeat counts on without a gap on the one host Ferry says it is on."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

pytest.importorskip("libvirt")

from inventory.models import Host  # noqa: E402
from lab.guest import vm  # noqa: E402
from migrations_app.execution.force_complete import item_force_complete  # noqa: E402
from migrations_app.execution.reconciler import reconcile_attempt  # noqa: E402
from migrations_app.models import ItemAttempt, ProgressSample, RunEvent  # noqa: E402
from tests.conftest import skip_or_fail  # noqa: E402
from tests.lab.test_execution_lab import (  # noqa: E402,F401
    WORKER_APP_NAME,
    ferry,
    lab_plan,
    only_on,
    record,
    run_settled,
    start_plan,
    sync,
    worker_process,
)
from tests.migrations_app.execution.conftest import WorkerThreads, wait_for  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]

# 128 MiB rewritten at ~96 MB/s against a 32 MiB/s cap: pre-copy can never catch up.
BUSY = {"memory_mib": 256, "dirty_ws": 128, "dirty_rate": 96}
CAP = 32
# Nothing but the policy under test acts: no downtime steps, no auto-converge, no
# progress timeout, no completion timeout unless the test sets one.
QUIET = {
    "bandwidth_mib_s": CAP,
    "on_no_convergence": "raise_downtime",
    "downtime_steps_ms": [],
    "progress_timeout_s": 0,
    "completion_timeout_floor_s": 3600,
}


def test_it_force_completes_a_guest_that_cannot_converge_at_the_completion_timeout(
    ferry,  # noqa: F811
    guest,
    people,
    lab_env,
):
    name = guest("lab-a", **BUSY)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    policy = {
        **QUIET,
        # 20 s: the floor (the per-GiB share of 256 MiB is 5 s, and twice one pass at the
        # cap is 16 s; the timeout is the largest of the three).
        "completion_timeout_floor_s": 20,
        "completion_timeout_s_per_gib": 20,
        "completion_timeout_action": "force_complete",
    }
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], policy)
    t0 = time.monotonic()
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=240, interval=0.5)
    wall = time.monotonic() - t0
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "completed", (attempt.status, attempt.error_message)
    (step,) = attempt.evidence["convergence"]
    assert step["action"] == "force_complete" and step["why"] == "completion timeout"
    assert step["at_s"] >= 20
    forced = attempt.evidence["force_complete"]
    assert attempt.ferry_paused_source_at is not None
    assert attempt.downtime_ms and attempt.downtime_ms >= forced["downtime_ms_from_pause"] > 0
    assert RunEvent.objects.filter(run=run, kind="item.timeout").exists()
    only_on(name, "lab-b", before)
    record(
        lab_env,
        "force-complete-at-timeout",
        attempt,
        wall,
        forced_at_s=step["at_s"],
        downtime_from_pause_ms=forced["downtime_ms_from_pause"],
    )


def start_until_paused_for_force_complete(plan, people):
    """Start the plan, let the move run, ask for force-complete and return its run the
    moment the worker has recorded the pause (the fault tests strike then)."""
    run = start_plan(plan, people)
    wait_for(lambda: ProgressSample.objects.filter(attempt__run=run).count() >= 3, timeout=90)
    item_force_complete(item=plan.items.get(), actor=people["operator"], reason="lab")
    wait_for(
        lambda: ItemAttempt.objects.filter(run=run, ferry_paused_source_at__isnull=False).exists(),
        timeout=30,
        interval=0.05,
    )
    return run


def test_a_worker_killed_while_force_complete_holds_the_guest_paused_leaves_it_running_once(
    ferry,  # noqa: F811
    guest,
    people,
    lab_env,
    tmp_path,
):
    """The worker dies the moment it has recorded the force-complete pause (the guest is
    paused on its source, or about to be). libvirt's job goes on without it; the
    reconciler takes the lease over and must leave the guest running on one host only,
    never paused, with its heartbeat intact."""
    name = guest("lab-a", **BUSY)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], QUIET)
    log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115 - closed below
    proc = worker_process(log)
    try:
        run = start_until_paused_for_force_complete(plan, people)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "running" and attempt.migrate_called_at is not None
    wait_for(
        lambda: ItemAttempt.objects.get(pk=attempt.pk).lease_expires_at < timezone.now(),
        timeout=20,
    )
    outcome = reconcile_attempt(attempt.pk)
    attempt.refresh_from_db()
    where = vm.where_running(name)
    print(f"\n[ferry-lab] worker killed in force-complete: {outcome} -> {attempt.status}, {where}")
    assert attempt.status == "completed", (outcome, attempt.status, attempt.error_message)
    assert where == ["lab-b"]
    # only_on waits for the heartbeat to count on: a guest left paused would fail it.
    only_on(name, "lab-b", before)
    forced = attempt.evidence["force_complete"]
    print(f"[ferry-lab] force-complete evidence after the kill: {forced}")
    assert attempt.downtime_ms >= forced["downtime_ms_from_pause"]


def test_the_database_lost_while_force_complete_holds_the_guest_paused(
    ferry,  # noqa: F811
    guest,
    people,
    lab_env,
    tmp_path,
):
    """The worker loses its database the moment it has recorded the force-complete pause:
    every connection it opens is terminated for 8 s, so it can neither record the switch
    nor resume anything through Ferry's records. libvirt's job finishes on its own; once
    the database answers again the worker's own tick finds the expired lease and the
    reconciler leaves the guest running on lab-b only, never paused."""
    if connection.vendor != "postgresql":
        skip_or_fail("cutting a worker off its database needs PostgreSQL (pg_terminate_backend)")
    name = guest("lab-a", **BUSY)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], QUIET)
    log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115 - closed below
    proc = worker_process(log, FERRY_TICK_SECONDS="2")
    terminated = 0
    try:
        run = start_until_paused_for_force_complete(plan, people)
        cut_until = time.monotonic() + 8
        while time.monotonic() < cut_until:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = %s",
                    [WORKER_APP_NAME],
                )
                terminated += cur.fetchone()[0]
            time.sleep(0.2)
        assert terminated > 0, "the worker held no connection to cut"
        wait_for(
            lambda: ItemAttempt.objects.get(run=run).status != "running",
            timeout=120,
            interval=0.5,
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    attempt = ItemAttempt.objects.get(run=run)
    where = vm.where_running(name)
    print(
        f"\n[ferry-lab] database cut in force-complete ({terminated} connections ended): "
        f"{attempt.status}, {where}, evidence {attempt.evidence.get('force_complete')}"
    )
    assert attempt.status == "completed", (attempt.status, attempt.error_message)
    assert where == ["lab-b"]
    only_on(name, "lab-b", before)
    # The downtime is the pause to the switch (libvirt ran the guest on there), not the
    # pause to the moment a reconciler came back to look.
    forced = attempt.evidence["force_complete"]
    end_of_job = attempt.migrate_called_at + timedelta(milliseconds=attempt.total_time_ms)
    assert forced["downtime_ms_from_pause"] <= (
        (end_of_job - attempt.ferry_paused_source_at).total_seconds() * 1000 + 1
    )


def test_it_fires_the_convergence_schedule_in_order_while_the_move_is_stalled(
    ferry,  # noqa: F811
    guest,
    people,
    lab_env,
):
    name = guest("lab-a", **BUSY)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    schedule = [
        {"action": "max_downtime", "value": 400},
        {"action": "max_downtime", "value": 800},
        {"action": "force_complete"},
    ]
    plan = lab_plan(
        people,
        [(name, "lab-a", "lab-b", "live", None)],
        {**QUIET, "convergence_schedule": schedule},
    )
    t0 = time.monotonic()
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=300, interval=0.5)
    wall = time.monotonic() - t0
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "completed", (attempt.status, attempt.error_message)
    fired = attempt.evidence["convergence"]
    assert [(s["action"], s.get("value")) for s in fired] == [
        ("max_downtime", 400),
        ("max_downtime", 800),
        ("force_complete", None),
    ]
    times = [s["at_s"] for s in fired]
    assert times == sorted(times) and len(set(times)) == 3, times
    assert all(s["why"] == "stall" for s in fired)
    # One window apart at least: each step had a whole window to work.
    window = fired[0]["stall"]["window_s"]
    assert all(b - a >= window * 0.9 for a, b in zip(times, times[1:], strict=False)), times
    events = RunEvent.objects.filter(run=run, kind="item.converge").order_by("seq")
    assert [e.payload["action"] for e in events] == [
        "max_downtime",
        "max_downtime",
        "force_complete",
    ]
    only_on(name, "lab-b", before)
    record(lab_env, "convergence-schedule", attempt, wall, steps_at_s=times)


def test_two_plans_sharing_a_destination_never_exceed_its_inbound_budget(
    ferry,  # noqa: F811
    guest,
    people,
    lab_env,
):
    names = [guest("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=5) for _ in range(2)]
    beats = {name: vm.wait_heartbeat(name, timeout=60, after=1) for name in names}
    sync(ferry)
    Host.objects.filter(name="lab-b").update(max_inbound=1)
    wide = {"bandwidth_mib_s": CAP, "max_inbound_per_host": 4, "max_outbound_per_host": 4}
    plans = [lab_plan(people, [(n, "lab-a", "lab-b", "live", None)], wide) for n in names]
    with WorkerThreads(2):
        runs = [start_plan(plan, people) for plan in plans]
        for run in runs:
            wait_for(lambda r=run: run_settled(r.pk), timeout=300, interval=0.5)
    attempts = list(ItemAttempt.objects.filter(run__in=runs).order_by("started_at"))
    assert [a.status for a in attempts] == ["completed", "completed"]
    # From the samples: the second move's first sample comes after the first move's last.
    spans = []
    for attempt in attempts:
        times = ProgressSample.objects.filter(attempt=attempt).values_list("at", flat=True)
        spans.append((min(times), max(times)))
    assert spans[1][0] > spans[0][1], spans
    held = RunEvent.objects.filter(kind="items.held", run__in=runs)
    assert held.exists()
    assert any("lab-b's inbound budget (1/1" in t for t in held.first().payload["held_by"].values())
    for name in names:
        only_on(name, "lab-b", beats[name])


def test_an_urgent_plan_preempts_a_routine_move_on_real_hosts_and_both_guests_survive(
    ferry,  # noqa: F811
    guest,
    people,
    lab_env,
):
    """lab-b takes one move at a time. A routine move that cannot converge holds the slot;
    an urgent plan that may preempt stops it in pre-copy (the routine guest stays on lab-a,
    its incoming copy removed), takes the slot and moves its guest."""
    from migrations_app.workflow.services import plan_cancel

    routine_vm = guest("lab-a", **BUSY)
    urgent_vm = guest("lab-a", memory_mib=256)
    beats = {n: vm.wait_heartbeat(n, timeout=60, after=1) for n in (routine_vm, urgent_vm)}
    sync(ferry)
    Host.objects.filter(name="lab-b").update(max_inbound=1)
    routine = lab_plan(people, [(routine_vm, "lab-a", "lab-b", "live", None)], QUIET)
    with WorkerThreads(2):
        run_routine = start_plan(routine, people)
        wait_for(
            lambda: ProgressSample.objects.filter(attempt__run=run_routine).count() >= 3,
            timeout=90,
        )
        urgent = lab_plan(
            people,
            [(urgent_vm, "lab-a", "lab-b", "live", None)],
            {"bandwidth_mib_s": 200, "priority": "urgent", "preempt": True},
        )
        run_urgent = start_plan(urgent, people)
        try:
            wait_for(lambda: run_settled(run_urgent.pk), timeout=180, interval=0.5)
        except AssertionError:
            raise AssertionError(f"the urgent plan did not settle: {run_state()}") from None
        victim = ItemAttempt.objects.get(run=run_routine, number=1)
        # The routine plan would start its move again (and never converge): cancel it.
        plan_cancel(plan=routine, actor=people["operator"], reason="lab: end of test")
        wait_for(lambda: run_settled(run_routine.pk), timeout=120, interval=0.5)
    assert victim.status == "cancelled" and victim.error_class == "preempted", (
        victim.status,
        victim.error_class,
        victim.error_message,
    )
    assert victim.preempted_by_id == urgent.pk
    assert victim.evidence["failure"]["safety"]["decision"]["verdict"] == "on_source"
    moved = ItemAttempt.objects.get(run=run_urgent)
    assert moved.status == "completed", (moved.status, moved.error_message)
    assert moved.started_at >= victim.finished_at
    assert RunEvent.objects.filter(run=run_routine, kind="item.preempted").exists()
    only_on(routine_vm, "lab-a", beats[routine_vm])
    only_on(urgent_vm, "lab-b", beats[urgent_vm])


def run_state() -> dict:
    """What the lab's runs, attempts and items look like (for a failure's message)."""
    from migrations_app.models import PlanItem, PlanRun

    return {
        "runs": list(PlanRun.objects.values("pk", "plan_id", "status")),
        "attempts": list(
            ItemAttempt.objects.values(
                "pk",
                "run_id",
                "status",
                "phase",
                "cancel_requested",
                "preempted_by_id",
                "error_class",
                "started_at",
                "finished_at",
            )
        ),
        "items": list(PlanItem.objects.values("pk", "plan_id", "status", "held_by")),
        "events": list(RunEvent.objects.order_by("pk").values_list("run_id", "kind", "created_at")),
    }
