"""H1 and L1 (security review): four eyes holds against everyone who shaped a plan.

H1: anyone holding plan.edit and plan.approve (every admin; planner+approver) could rewrite
another author's plan, submit it and approve it alone. Now whoever wrote, edited or
submitted a plan may not approve or reject it, and their approvals never count.
L1: the change ticket, name and description were not part of what was approved. Now they
are content: a change after submission voids approvals. Approvals count at start only
when tied to their audit event.
"""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied

from dashboard.audit.models import AuditEvent
from migrations_app.errors import TransitionError
from migrations_app.models import Approval, MigrationPlan, PlanItem
from migrations_app.selectors.approvals import approval_excluded_reason, approvals_valid_count
from migrations_app.services.plans import plan_item_update, plan_update
from migrations_app.workflow import services as workflow
from migrations_app.workflow.states import available_actions
from tests.factories import host_make, plan_make, plan_validate_stub

pytestmark = pytest.mark.django_db


def fresh(plan):
    return MigrationPlan.objects.get(pk=plan.pk)


def submitted_by_author(people):
    plan = plan_make(people["planner"])
    plan_validate_stub(plan)
    workflow.plan_submit(plan=plan, actor=people["planner"])
    return fresh(plan)


@pytest.mark.parametrize("roles", [("admin",), ("planner", "approver")])
def test_it_refuses_the_reviews_h1_sequence_at_approve_and_at_start(people, make_user, roles):
    x = make_user("xavier", *roles)
    plan = submitted_by_author(people)
    # 1-2. X retargets B's plan (back to draft), 3. validates and submits it ...
    item = PlanItem.objects.get(plan=plan)
    plan_item_update(item=item, actor=x, destination=host_make("rogue"))
    plan_validate_stub(fresh(plan))
    workflow.plan_submit(plan=fresh(plan), actor=x)
    # 4. ... and may not approve it: X chose the content.
    assert approval_excluded_reason(fresh(plan), x) == "submitted"
    assert "approve" not in available_actions(fresh(plan), x)
    with pytest.raises(PermissionDenied, match="Four eyes: you submitted"):
        workflow.plan_approve(plan=fresh(plan), actor=x)
    assert fresh(plan).status == "submitted"
    # An editor who did not submit is excluded too, and so is the submitter B.
    plan2 = submitted_by_author(people)
    plan_update(plan=fresh(plan2), actor=x, window_end=plan2.window_end + timedelta(minutes=5))
    plan_validate_stub(fresh(plan2))
    workflow.plan_submit(plan=fresh(plan2), actor=people["planner"])
    with pytest.raises(PermissionDenied, match="Four eyes: you edited"):
        workflow.plan_approve(plan=fresh(plan2), actor=x)
    with pytest.raises(PermissionDenied, match="Four eyes"):
        workflow.plan_reject(plan=fresh(plan2), actor=x, reason="no")


def test_it_does_not_count_an_approval_by_someone_who_later_shaped_the_plan(people, make_user):
    x = make_user("xavier", "admin")
    plan = submitted_by_author(people)
    workflow.plan_approve(plan=fresh(plan), actor=x)
    assert fresh(plan).status == "approved"
    # X's approval exists; then X becomes a contributor (recorded by hand: the contributor
    # list and the approvals are both read at start). Their approval no longer counts.
    row = fresh(plan)
    row.contributors = [*row.contributors, {"id": x.pk, "name": "xavier", "as": ["edited"]}]
    row.save(update_fields=["contributors"])
    assert approvals_valid_count(fresh(plan)) == 0
    with pytest.raises(TransitionError, match="0 valid approval"):
        workflow.plan_start(plan=fresh(plan), actor=people["operator"])


def test_it_lets_an_admin_who_shaped_nothing_approve_and_another_start(people):
    plan = submitted_by_author(people)
    workflow.plan_approve(plan=fresh(plan), actor=people["admin"])
    workflow.plan_start(plan=fresh(plan), actor=people["operator"])
    assert fresh(plan).status == "running"


@pytest.mark.parametrize(
    "field, value",
    [("change_ticket", "CHG-9999"), ("name", "renamed"), ("description", "other words")],
)
def test_it_voids_approvals_when_metadata_changes_after_approval(people, field, value):
    plan = submitted_by_author(people)
    workflow.plan_approve(plan=fresh(plan), actor=people["approver"])
    assert fresh(plan).status == "approved"
    plan_update(plan=fresh(plan), actor=people["planner"], **{field: value})
    after = fresh(plan)
    assert after.status == "draft" and after.content_hash == ""
    assert Approval.objects.get(plan=plan).voided_at is not None
    with pytest.raises(TransitionError):
        workflow.plan_start(plan=after, actor=people["operator"])


def test_it_refuses_to_start_on_an_approval_not_tied_to_the_audit_trail(people):
    plan = submitted_by_author(people)
    MigrationPlan.objects.filter(pk=plan.pk).update(status="approved")
    # A row written straight into the table: no audit event, or one that is not its own.
    forged = Approval.objects.create(
        plan=plan,
        approver=people["approver"],
        approver_name="ann",
        decision="approved",
        content_hash=plan.content_hash,
    )
    assert approvals_valid_count(fresh(plan)) == 1
    with pytest.raises(TransitionError, match="0 valid approval"):
        workflow.plan_start(plan=fresh(plan), actor=people["operator"])
    other = AuditEvent.objects.order_by("-sequence").first()
    Approval.objects.filter(pk=forged.pk).update(audit_sequence=other.sequence)
    with pytest.raises(TransitionError, match="0 valid approval"):
        workflow.plan_start(plan=fresh(plan), actor=people["operator"])


def test_it_ties_a_real_approval_to_its_audit_event(people):
    plan = submitted_by_author(people)
    approval = workflow.plan_approve(plan=fresh(plan), actor=people["approver"])
    approval.refresh_from_db()
    event = AuditEvent.objects.get(sequence=approval.audit_sequence)
    assert event.action == "plan.approve" and event.after["approval"] == approval.pk
    assert event.actor_user_id == people["approver"].pk


def test_it_refuses_an_editor_through_the_api_and_hides_the_button(people, make_user):
    from django.test import Client
    from rest_framework.test import APIClient

    x = make_user("xavier", "planner", "approver")
    plan = submitted_by_author(people)
    plan_update(plan=fresh(plan), actor=x, description="tweaked")
    plan_validate_stub(fresh(plan))
    workflow.plan_submit(plan=fresh(plan), actor=people["planner"])
    page = Client()
    page.force_login(x)
    html = page.get(f"/plans/{plan.pk}/").content.decode()
    assert f"/plans/{plan.pk}/workflow/approve/" not in html
    page.force_login(people["approver"])
    assert f"/plans/{plan.pk}/workflow/approve/" in page.get(f"/plans/{plan.pk}/").content.decode()
    client = APIClient()
    client.force_authenticate(x)
    response = client.post(f"/api/v1/plans/{plan.pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert "Four eyes: you edited" in response.json()["detail"]
