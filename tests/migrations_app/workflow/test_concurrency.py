"""Races on PostgreSQL: two approvers at once, and an approval racing an edit."""

import os
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections

from migrations_app.content import plan_content_hash
from migrations_app.models import MigrationPlan
from migrations_app.selectors.approvals import approvals_valid_count
from migrations_app.services.plans import plan_update
from migrations_app.workflow.services import plan_approve, plan_submit
from tests.factories import plan_make, plan_validate_stub

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        if os.environ.get("CI"):
            pytest.fail("CI runs on PostgreSQL: the row-lock races must be tested there")
        pytest.skip("real concurrent transactions need PostgreSQL (set DATABASE_URL)")


def _race(*calls):
    """Run the calls in threads released together; returns each one's result or error."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # collected and asserted on by the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _submitted_plan(people):
    plan = plan_make(people["planner"])
    plan_validate_stub(plan)
    plan_submit(plan=plan, actor=people["planner"])
    return plan


@pytest.mark.parametrize("attempt", range(2))
def test_it_lets_only_one_of_two_simultaneous_approvers_win(people, attempt):
    plan = _submitted_plan(people)
    results = _race(
        lambda: plan_approve(plan=MigrationPlan.objects.get(pk=plan.pk), actor=people["approver"]),
        lambda: plan_approve(plan=MigrationPlan.objects.get(pk=plan.pk), actor=people["approver2"]),
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and "it is approved" in str(errors[0]), results
    assert plan.approvals.count() == 1


@pytest.mark.parametrize("attempt", range(2))
def test_it_never_leaves_an_approval_on_content_that_changed(people, attempt):
    plan = _submitted_plan(people)

    def edit():
        fresh = MigrationPlan.objects.get(pk=plan.pk)
        return plan_update(
            plan=fresh, actor=people["planner"], window_end=fresh.window_end + timedelta(minutes=5)
        )

    _race(
        lambda: plan_approve(plan=MigrationPlan.objects.get(pk=plan.pk), actor=people["approver"]),
        edit,
    )
    plan.refresh_from_db()
    # Whatever the order, the edit won in the end: the plan is a draft again and nothing
    # approved still counts for it.
    assert plan.status == "draft"
    assert approvals_valid_count(plan) == 0
    assert not plan.approvals.filter(voided_at__isnull=True).exists()
    assert plan.content_hash == "" and plan_content_hash(plan)
