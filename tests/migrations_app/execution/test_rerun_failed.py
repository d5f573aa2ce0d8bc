"""Re-run failed items: a new plan with only the items that did not complete, which
carries the approval while its content stays within what was approved."""

import pytest

from dashboard.audit.models import AuditEvent
from dashboard.errors import FerryError
from migrations_app.execution import errors, services
from migrations_app.execution.drivers.rehearsal import RehearsalSession
from migrations_app.models import MigrationPlan, PlanItem
from migrations_app.selectors.approvals import approvals_carried_count
from migrations_app.workflow.services import plan_start
from tests.migrations_app.execution.conftest import drain, host

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def half_failed(approved_plan, start, people, monkeypatch):
    """A finished plan of two items: the second failed (no space), the first completed."""
    original = RehearsalSession.prepare

    def prepare(self):
        if self.ctx.vm_name == failing[0]:
            raise errors.ExecutionError(errors.NO_SPACE, "Injected: no space.")
        return original(self)

    monkeypatch.setattr(RehearsalSession, "prepare", prepare)
    a, b = host(), host()
    plan = approved_plan([(a, b), (a, b)])
    failing = [plan.items.order_by("position")[1].vm.name]
    drain(start(plan))
    services.run_finish(plan=plan, actor=people["operator"])
    monkeypatch.setattr(RehearsalSession, "prepare", original)
    plan.refresh_from_db()
    return plan


def test_it_makes_an_approved_plan_of_the_failed_items_through_the_api(half_failed, api_as):
    assert half_failed.status == "partially_completed"
    operator = api_as("operator", username="olga")

    answer = operator.post(f"/api/v1/plans/{half_failed.pk}/rerun-failed/", {}, format="json")

    assert answer.status_code == 201, answer.content
    rerun = MigrationPlan.objects.get(pk=answer.json()["id"])
    assert rerun.rerun_of_id == half_failed.pk and rerun.status == "approved"
    failed = half_failed.items.get(status="failed")
    assert list(rerun.items.values_list("vm_id", flat=True)) == [failed.vm_id]
    assert approvals_carried_count(rerun) == 1
    assert AuditEvent.objects.filter(action="plan.rerun_created").exists()
    plan_start(plan=rerun, actor=operator.user)
    run = drain(rerun.runs.get())
    assert run.status == "completed"


def test_it_needs_a_new_approval_once_the_content_differs(half_failed, people):
    from migrations_app.services.rerun import plan_rerun_failed

    rerun = plan_rerun_failed(plan=half_failed, actor=people["operator"])
    other = host()
    PlanItem.objects.filter(plan=rerun).update(destination_host=other)
    rerun.content_hash = ""  # what an edit does (plan_content_changed clears the hash)
    rerun.save(update_fields=["content_hash"])

    assert approvals_carried_count(rerun) == 0
    with pytest.raises(FerryError, match="valid approval"):
        plan_start(plan=rerun, actor=people["operator"])


def test_it_refuses_a_plan_without_failed_items_and_roles_that_may_not_run(
    approved_plan, start, api_as
):
    a, b = host(), host()
    plan = approved_plan([(a, b)])
    drain(start(plan))

    operator = api_as("operator", username="olga")
    answer = operator.post(f"/api/v1/plans/{plan.pk}/rerun-failed/", {}, format="json")
    assert answer.status_code == 409 and "completed" in answer.json()["detail"]
    planner = api_as("planner", username="pia")
    answer = planner.post(f"/api/v1/plans/{plan.pk}/rerun-failed/", {}, format="json")
    assert answer.status_code == 403


def test_a_rerun_keeps_the_hooks_its_approvers_approved(half_failed, people):
    from migrations_app.models import Hook
    from migrations_app.services.rerun import plan_rerun_failed

    Hook.objects.create(
        plan=half_failed, event="pre_migration", kind="http", url="https://lb.example/x", secret="s"
    )
    rerun = plan_rerun_failed(plan=half_failed, actor=people["operator"])
    assert rerun.status == "approved"
    assert list(rerun.hooks.values_list("event", "url", "secret")) == [
        ("pre_migration", "https://lb.example/x", "s")
    ]
