"""Workflow actions over the API: 200 on success, 409 for the wrong state, 403 for the
wrong role, 400 for a missing reason."""

import pytest
from rest_framework.test import APIClient

from dashboard.audit.models import AuditEvent
from migrations_app.services.plans import plan_update
from tests.factories import plan_make, plan_validate_stub

pytestmark = pytest.mark.django_db


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _post(user, plan, action, data=None):
    return _client(user).post(f"/api/v1/plans/{plan.pk}/{action}/", data or {}, format="json")


def test_it_runs_the_whole_workflow_over_the_api(validated_plan, people):
    answer = _post(people["planner"], validated_plan, "submit")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "submitted"
    content_hash = answer.json()["content_hash"]
    answer = _post(
        people["approver"],
        validated_plan,
        "approve",
        {"comment": "ok", "content_hash": content_hash},
    )
    assert answer.status_code == 200 and answer.json()["status"] == "approved"
    assert answer.json()["approvals"] == 1
    for action, expected in (("start", "running"), ("pause", "paused"), ("resume", "running")):
        answer = _post(people["operator"], validated_plan, action)
        assert answer.status_code == 200, answer.content
        assert answer.json()["status"] == expected
    answer = _post(people["operator"], validated_plan, "cancel", {"reason": "rollback"})
    assert answer.json()["status"] == "cancelled"


def test_it_answers_409_with_a_clear_message_for_the_wrong_state(validated_plan, people):
    answer = _post(people["operator"], validated_plan, "start")
    assert answer.status_code == 409
    assert (
        "Cannot start plan" in answer.json()["detail"] and "it is draft" in answer.json()["detail"]
    )
    answer = _post(people["operator"], validated_plan, "pause")
    assert answer.status_code == 409


def test_it_answers_409_when_submitting_without_validation(people):
    plan = plan_make(people["planner"])
    answer = _post(people["planner"], plan, "submit")
    assert answer.status_code == 409 and "validat" in answer.json()["detail"]


def test_it_forbids_a_viewer_to_submit_approve_or_start(validated_plan, people):
    for action in ("submit", "approve", "reject", "start", "pause", "resume", "cancel"):
        answer = _post(people["viewer"], validated_plan, action, {"reason": "x"})
        assert answer.status_code == 403, action
    assert not AuditEvent.objects.filter(action__startswith="plan.").exists()


def test_it_forbids_the_author_to_approve_over_the_api(make_user):
    author = make_user("both", "planner", "approver")
    plan = plan_make(author)
    plan_validate_stub(plan)
    assert _post(author, plan, "submit").status_code == 200
    answer = _post(author, plan, "approve")
    assert answer.status_code == 403 and "Four eyes" in answer.json()["detail"]


def test_it_answers_400_for_a_missing_reason(validated_plan, people):
    _post(people["planner"], validated_plan, "submit")
    answer = _post(people["approver"], validated_plan, "reject", {})
    assert answer.status_code == 400 and "reason" in answer.json()
    answer = _post(people["operator"], validated_plan, "cancel", {"reason": ""})
    assert answer.status_code == 400


def test_it_answers_400_without_an_override_outside_the_window(people):
    plan = plan_make(people["planner"], window="closed")
    plan_validate_stub(plan)
    _post(people["planner"], plan, "submit")
    _post(people["approver"], plan, "approve")
    answer = _post(people["operator"], plan, "start")
    assert answer.status_code == 400 and "override_reason" in answer.json()
    answer = _post(people["operator"], plan, "start", {"override_reason": "urgent fix"})
    assert answer.status_code == 200


def test_it_voids_the_approval_when_the_plan_is_edited_after_approval(validated_plan, people):
    _post(people["planner"], validated_plan, "submit")
    _post(people["approver"], validated_plan, "approve")
    validated_plan.refresh_from_db()
    end = validated_plan.window_end
    plan_update(
        plan=validated_plan,
        actor=people["planner"],
        window_end=end.replace(minute=(end.minute + 1) % 60),
    )
    validated_plan.refresh_from_db()
    assert validated_plan.status == "draft"
    approval = validated_plan.approvals.get()
    assert approval.voided_at is not None
    answer = _post(people["operator"], validated_plan, "start")
    assert answer.status_code == 409
    answer = _post(people["approver2"], validated_plan, "approve")
    assert answer.status_code == 409


def test_it_refuses_an_approval_bound_to_a_hash_the_plan_no_longer_has(validated_plan, people):
    seen = _post(people["planner"], validated_plan, "submit").json()["content_hash"]
    validated_plan.refresh_from_db()
    # The plan goes back to draft, is revalidated and resubmitted with other content.
    end = validated_plan.window_end
    plan_update(
        plan=validated_plan,
        actor=people["planner"],
        window_end=end.replace(minute=(end.minute + 1) % 60),
    )
    validated_plan.refresh_from_db()
    plan_validate_stub(validated_plan)
    assert _post(people["planner"], validated_plan, "submit").status_code == 200
    answer = _post(people["approver"], validated_plan, "approve", {"content_hash": seen})
    assert answer.status_code == 409 and "changed since you looked" in answer.json()["detail"]
