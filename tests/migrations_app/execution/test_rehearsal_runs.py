"""Runs on the rehearsal driver: the whole flow without libvirt, fast."""

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.audit.models import AuditEvent
from migrations_app.execution import claims, runner, services
from migrations_app.execution.drivers.rehearsal import RehearsalSession
from migrations_app.execution.reconciler import reconcile_attempt
from migrations_app.execution.scheduler import schedule_run
from migrations_app.execution.tasks import tick
from migrations_app.models import ItemAttempt, MigrationPlan, PlanRun, ProgressSample, RunEvent
from migrations_app.workflow.services import plan_cancel, plan_pause, plan_resume
from tests.migrations_app.execution.conftest import WorkerThreads, drain, host, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_completes_a_two_item_plan_with_samples_numbered_events_and_audit(approved_plan, start):
    a, b = host(), host()
    plan = approved_plan([(a, b), (a, b)])
    run = drain(start(plan))

    plan.refresh_from_db()
    assert run.status == "completed" and run.finished_at is not None
    assert plan.status == "completed"
    attempts = list(ItemAttempt.objects.filter(run=run))
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.status == "completed" and attempt.driver == "rehearsal"
        assert attempt.phase == "done"
        assert set(attempt.phase_times) >= {
            "preflight",
            "prepare",
            "transfer",
            "switchover",
            "verify",
            "cleanup",
        }
        assert attempt.downtime_ms and attempt.total_time_ms and attempt.iterations
        assert ProgressSample.objects.filter(attempt=attempt).count() >= 2
        assert attempt.item.status == "completed"
    seqs = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    kinds = set(RunEvent.objects.filter(run=run).values_list("kind", flat=True))
    assert {
        "run.started",
        "item.queued",
        "item.started",
        "item.phase",
        "item.progress",
        "item.switchover",
        "item.finished",
        "run.completed",
    } <= kinds
    progress = RunEvent.objects.filter(run=run, kind="item.progress").first().payload
    assert (
        progress["driver"] == "rehearsal" and "memory_remaining" in progress and "eta_s" in progress
    )
    actions = list(AuditEvent.objects.values_list("action", "actor_name"))
    assert ("attempt.completed", "worker (rehearsal)") in actions
    assert ("run.started", "oli") in actions
    # A rehearsal moves nothing: the inventory keeps the test driver's truth.
    assert all(a.item.vm.host_id == a.source_host_id for a in attempts)


def test_it_does_not_migrate_twice_when_a_task_is_delivered_twice(
    approved_plan, start, monkeypatch
):
    calls = []
    original = RehearsalSession.start
    monkeypatch.setattr(RehearsalSession, "start", lambda self: (calls.append(1), original(self)))
    a, b = host(), host()
    run = start(approved_plan([(a, b)]))
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)

    assert runner.execute(attempt.pk) == "completed"
    assert runner.execute(attempt.pk) == "not claimed"
    assert len(calls) == 1
    # The migrate guard on its own: a second mark for the same attempt is refused.
    attempt.refresh_from_db()
    assert attempt.migrate_called_at is not None
    assert not claims.mark_migrate_called(attempt.pk, attempt.claimed_by)


def test_it_reattaches_when_a_lease_expires_after_the_transfer_started(approved_plan, start):
    a, b = host(), host()
    run = start(approved_plan([(a, b)]))
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)
    # A worker claimed it, made the transfer call and died (no more heartbeats).
    assert claims.claim(attempt.pk, "dead-worker")
    assert claims.mark_migrate_called(attempt.pk, "dead-worker")
    ItemAttempt.objects.filter(pk=attempt.pk).update(
        phase="transfer", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert tick()["reconciling"] == [attempt.pk]

    assert reconcile_attempt(attempt.pk).startswith("reattached: completed")
    attempt.refresh_from_db()
    assert attempt.status == "completed" and attempt.claimed_by != "dead-worker"
    location = attempt.evidence["reconciled"]["location"]
    assert location["job_active"] or location["destination"] == "running"
    assert RunEvent.objects.filter(run=run, kind="item.reattached").exists()
    assert reconcile_attempt(attempt.pk) == "not running"


def test_it_requeues_an_attempt_whose_worker_died_before_the_transfer(approved_plan, start):
    a, b = host(), host()
    run = start(approved_plan([(a, b)]))
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)
    assert claims.claim(attempt.pk, "dead-worker")
    ItemAttempt.objects.filter(pk=attempt.pk).update(
        phase="preflight", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile_attempt(attempt.pk) == "requeued"
    assert runner.execute(attempt.pk) == "completed"


def test_it_aborts_and_keeps_the_vm_on_its_source_when_an_item_is_cancelled(
    approved_plan, start, people, monkeypatch
):
    a, b = host(), host()
    run = start(approved_plan([(a, b)], memory_mib=65536))
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)
    original = services.attempt_sample

    def sample_then_cancel(**kw):
        result = original(**kw)
        if not ItemAttempt.objects.get(pk=attempt.pk).cancel_requested:
            services.item_cancel(item=attempt.item, actor=people["operator"], reason="test")
        return result

    monkeypatch.setattr(services, "attempt_sample", sample_then_cancel)
    assert runner.execute(attempt.pk) == "cancelled"
    attempt.refresh_from_db()
    assert attempt.error_class == "aborted_by_operator"
    assert attempt.evidence["failure"]["location"]["source"] == "running"
    assert attempt.item.status == "cancelled"
    assert AuditEvent.objects.filter(action="item.cancel_requested").exists()


def test_it_cancels_queued_items_when_the_plan_is_cancelled(approved_plan, start, people):
    a, b = host(), host()
    plan = approved_plan([(a, b), (a, b)])
    run = start(plan)
    schedule_run(run.pk)
    plan_cancel(plan=plan, actor=people["operator"], reason="change freeze")
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert set(ItemAttempt.objects.filter(run=run).values_list("status", flat=True)) == {
        "cancelled"
    }
    assert runner.execute(ItemAttempt.objects.filter(run=run).first().pk) == "not claimed"


def _max_overlap(intervals):
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def test_it_holds_the_concurrency_limits_with_several_workers(approved_plan, start, settings):
    settings.FERRY_REHEARSAL_SPEED = 40.0  # ~0.5 s per item: long enough to overlap
    a, b, c, d, e, f = (host() for _ in range(6))
    moves = [(a, d), (a, e), (b, d), (b, e), (c, f), (c, f), (a, f), (b, d)]
    plan = approved_plan(
        moves, policy={"max_concurrent": 2, "max_outbound_per_host": 1, "max_inbound_per_host": 1}
    )
    with WorkerThreads(4):
        run = start(plan)
        wait_for(lambda: PlanRun.objects.get(pk=run.pk).status == "completed", timeout=60)
    attempts = list(ItemAttempt.objects.filter(run=run))
    assert len(attempts) == len(moves) and {x.status for x in attempts} == {"completed"}
    spans = [
        (x.started_at, x.finished_at, x.source_host_id, x.destination_host_id) for x in attempts
    ]
    assert _max_overlap([(s, e) for s, e, _, _ in spans]) <= 2
    for hid in {h.pk for h in (a, b, c)}:
        assert _max_overlap([(s, e) for s, e, src, _ in spans if src == hid]) <= 1
    for hid in {h.pk for h in (d, e, f)}:
        assert _max_overlap([(s, e) for s, e, _, dst in spans if dst == hid]) <= 1
    assert _max_overlap([(s, e) for s, e, _, _ in spans]) == 2  # the limit was used, not just held


def test_it_starts_no_new_item_while_paused_and_continues_on_resume(approved_plan, start, people):
    a, b = host(), host()
    plan = approved_plan([(a, b), (a, b), (a, b)], policy={"max_concurrent": 1})
    run = start(plan)
    schedule_run(run.pk)
    plan_pause(plan=plan, actor=people["operator"])
    run.refresh_from_db()
    assert run.status == "paused"
    first = ItemAttempt.objects.get(run=run)
    assert runner.execute(first.pk) == "completed"  # in flight: it finishes
    schedule_run(run.pk)
    assert ItemAttempt.objects.filter(run=run).count() == 1
    plan_resume(plan=plan, actor=people["operator"])
    run = drain(run)
    assert run.status == "completed"
    assert ItemAttempt.objects.filter(run=run, status="completed").count() == 3


def test_it_pauses_the_plan_with_a_reason_when_the_window_closes(approved_plan, start):
    a, b = host(), host()
    now = timezone.now()
    plan = approved_plan(
        [(a, b), (a, b)],
        policy={"max_concurrent": 1},
        window=(now - timedelta(hours=1), now + timedelta(hours=1)),
    )
    run = start(plan)
    schedule_run(run.pk)
    runner.execute(ItemAttempt.objects.get(run=run).pk)
    MigrationPlan.objects.filter(pk=plan.pk).update(
        window_end=timezone.now() - timedelta(seconds=1)
    )
    schedule_run(run.pk)
    plan.refresh_from_db()
    run.refresh_from_db()
    assert plan.status == "paused" and run.status == "paused"
    assert "maintenance window closed" in plan.status_reason
    assert "maintenance window closed" in run.status_reason
    assert ItemAttempt.objects.filter(run=run).count() == 1
    assert RunEvent.objects.filter(run=run, kind="run.window_closed").exists()


def test_it_starts_a_plan_by_itself_when_its_window_opens_unless_held(approved_plan):
    a, b = host(), host()
    now = timezone.now()
    window = (now - timedelta(minutes=1), now + timedelta(hours=1))
    due = approved_plan([(a, b)], window=window)
    held = approved_plan([(a, b)], window=window)
    MigrationPlan.objects.filter(pk=held.pk).update(hold=True)
    later = approved_plan([(a, b)], window=(now + timedelta(hours=1), now + timedelta(hours=2)))

    assert tick()["autostarted"] == [due.pk]
    assert PlanRun.objects.filter(plan=due).exists()
    assert not PlanRun.objects.filter(plan__in=[held, later]).exists()
    assert AuditEvent.objects.filter(action="plan.start", actor_name="scheduler").exists()


def test_it_waits_for_an_operator_when_an_item_fails_and_a_retry_completes_it(
    approved_plan, start, people, monkeypatch
):
    a, b = host(), host()
    plan = approved_plan([(a, b), (a, b)])
    failures = iter(["guest stopped (simulated)"])
    monkeypatch.setattr(RehearsalSession, "verify_once", lambda self: next(failures, None))
    run = drain(start(plan))
    plan.refresh_from_db()
    assert run.status == "paused" and plan.status == "paused"
    assert "did not complete" in plan.status_reason
    failed = ItemAttempt.objects.get(run=run, error_class="guest_died_after_switchover")
    assert failed.status == "needs_attention"  # it had arrived on the destination

    services.item_retry(item=failed.item, actor=people["operator"])
    run = drain(run)
    plan.refresh_from_db()
    assert run.status == "completed" and plan.status == "completed"
    assert failed.item.attempts.count() == 2


def test_it_reconciles_and_queues_the_tick_when_a_worker_starts(approved_plan, start):
    from django_tasks_db.models import DBTaskResult

    from migrations_app.execution.tasks import on_worker_start

    a, b = host(), host()
    run = start(approved_plan([(a, b)]))
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)
    assert claims.claim(attempt.pk, "dead-worker")
    ItemAttempt.objects.filter(pk=attempt.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    DBTaskResult.objects.filter(task_path__endswith="tick_task").delete()

    on_worker_start()
    queued = set(DBTaskResult.objects.filter(status="READY").values_list("task_path", flat=True))
    assert "migrations_app.execution.tasks.reconcile_attempt_task" in queued
    assert "migrations_app.execution.tasks.tick_task" in queued
    on_worker_start()  # a second worker starting does not queue a second tick
    assert DBTaskResult.objects.filter(status="READY", task_path__endswith="tick_task").count() == 1


def test_it_starts_as_many_moves_per_host_as_the_link_fits_when_limits_are_unset(
    approved_plan, start
):
    a, b = host(), host()
    # 300 MiB/s cap on a 1190 MiB/s path: floor(1190 / 300) = 3 out of a and 3 into b.
    plan = approved_plan(
        [(a, b)] * 4, policy={"bandwidth_mib_s": 300, "assumed_bandwidth_mib_s": 1190}
    )
    run = start(plan)
    result = schedule_run(run.pk)
    assert len(result["started"]) == 3
    # An explicit limit wins over the rule (on another pair of hosts: the link a → b is
    # full for every plan now).
    c, d = host(), host()
    plan2 = approved_plan(
        [(c, d)] * 2,
        policy={
            "bandwidth_mib_s": 300,
            "assumed_bandwidth_mib_s": 1190,
            "max_outbound_per_host": 1,
        },
    )
    run2 = start(plan2)
    assert len(schedule_run(run2.pk)["started"]) == 1


def test_it_records_every_phase_event_in_order_with_fewer_commits(approved_plan, start):
    a, b = host(), host()
    plan = approved_plan([(a, b)])
    run = drain(start(plan))
    phases = [
        e.payload["phase"]
        for e in RunEvent.objects.filter(run=run, kind="item.phase").order_by("seq")
    ]
    assert phases[:3] == ["preflight", "prepare", "transfer"]
    kinds = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("kind", flat=True))
    assert kinds.index("item.started") < kinds.index("item.phase")
    attempt = ItemAttempt.objects.get(run=run)
    assert {"preflight", "prepare"} <= set(attempt.evidence)
    times = attempt.phase_times
    # each phase ends where the next one starts
    assert times["preflight"]["end"] == times["prepare"]["start"]
    assert times["prepare"]["end"] == times["transfer"]["start"]
    assert AuditEvent.objects.filter(action="attempt.started").count() == 1


def test_a_cancel_that_lands_before_the_transfer_gate_never_makes_the_call(
    approved_plan, start, people, monkeypatch
):
    a, b = host(), host()
    plan = approved_plan([(a, b)])
    run = start(plan)
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)
    called = []
    real_prepare = RehearsalSession.prepare

    def prepare_then_cancel(self):
        services.item_cancel(item=attempt.item, actor=people["operator"], reason="late")
        return real_prepare(self)

    monkeypatch.setattr(RehearsalSession, "prepare", prepare_then_cancel)
    monkeypatch.setattr(RehearsalSession, "start", lambda self: called.append(1))
    assert runner.execute(attempt.pk) == "cancelled"
    attempt.refresh_from_db()
    assert called == [] and attempt.migrate_called_at is None
    assert attempt.status == "cancelled" and "preflight" in attempt.evidence


def test_a_failure_in_prepare_keeps_the_preflight_evidence_and_the_phase(
    approved_plan, start, monkeypatch
):
    a, b = host(), host()
    plan = approved_plan([(a, b)])
    run = start(plan)
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)

    def broken(self):
        raise RuntimeError("prepare broke")

    monkeypatch.setattr(RehearsalSession, "prepare", broken)
    assert runner.execute(attempt.pk) == "failed"
    attempt.refresh_from_db()
    assert attempt.migrate_called_at is None and "preflight" in attempt.evidence
    assert "prepare" in attempt.phase_times and "transfer" not in attempt.phase_times
