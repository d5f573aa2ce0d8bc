"""Waves with dependencies in a plain plan: wave 1 starts only when wave 0 completed; a
failure halts the later waves (policy wave_failure "halt") or not ("continue")."""

import pytest

from dashboard.audit.models import AuditEvent
from migrations_app.content import plan_content
from migrations_app.execution import errors
from migrations_app.execution.drivers.rehearsal import RehearsalSession
from migrations_app.models import ItemAttempt, MigrationPlan, PlanItem
from migrations_app.workflow.services import plan_approve, plan_submit
from tests.factories import plan_validate_stub
from tests.migrations_app.execution.conftest import drain, host

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def waved_plan(approved_plan, people):
    """Two items, the second in wave 1 (set before approval, like a planner would)."""

    def make(policy=None):
        a, b, c, d = host(), host(), host(), host()
        plan = approved_plan([(a, b), (c, d)], policy=policy)
        first, second = plan.items.order_by("position")
        MigrationPlan.objects.filter(pk=plan.pk).update(status="draft", content_hash="")
        PlanItem.objects.filter(pk=second.pk).update(wave=1)
        plan.refresh_from_db()
        plan_validate_stub(plan)
        plan_submit(plan=plan, actor=people["planner"])
        plan_approve(plan=plan, actor=people["approver"])
        plan.refresh_from_db()
        return plan, first, second

    return make


def fail_vm(monkeypatch, name):
    original = RehearsalSession.prepare

    def prepare(self):
        if self.ctx.vm_name == name:
            raise errors.ExecutionError(errors.NO_SPACE, "Injected: no space.")
        return original(self)

    monkeypatch.setattr(RehearsalSession, "prepare", prepare)


def test_it_starts_wave_1_only_after_wave_0_completed(waved_plan, start):
    plan, first, second = waved_plan()
    run = drain(start(plan))

    one = ItemAttempt.objects.get(item=first)
    two = ItemAttempt.objects.get(item=second)
    assert run.status == "completed"
    assert two.pk > one.pk and two.started_at >= one.finished_at


def test_it_halts_the_later_waves_when_one_item_fails(waved_plan, start, monkeypatch):
    plan, first, second = waved_plan()
    fail_vm(monkeypatch, first.vm.name)
    drain(start(plan))

    second.refresh_from_db()
    assert second.status == "cancelled" and "Halted" in second.status_reason
    assert not ItemAttempt.objects.filter(item=second).exists()
    assert AuditEvent.objects.filter(action="item.halted").exists()


def test_it_goes_on_when_the_policy_says_continue(waved_plan, start, monkeypatch):
    plan, first, second = waved_plan(policy={"wave_failure": "continue"})
    fail_vm(monkeypatch, first.vm.name)
    drain(start(plan))

    second.refresh_from_db()
    assert second.status == "completed"


def test_a_plan_without_waves_keeps_its_content_hash(approved_plan):
    a, b = host(), host()
    plan = approved_plan([(a, b)])
    assert all("wave" not in item for item in plan_content(plan)["items"])
    assert "wave_failure" not in plan_content(plan)["policy"]


def test_the_estimate_timeline_starts_a_wave_after_the_earlier_ones_end(waved_plan):
    from migrations_app.checks.snapshot import snapshot_load
    from migrations_app.estimate import plan_estimate

    plan, first, second = waved_plan(
        policy={"max_concurrent": 4, "max_outbound_per_host": 4, "max_inbound_per_host": 4}
    )
    estimate = plan_estimate(snapshot_load(plan))
    by_item = {e.item_id: e for e in estimate.items}
    assert by_item[second.pk].start_s >= by_item[first.pk].end_s > 0
