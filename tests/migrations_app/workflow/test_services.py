"""The workflow services: transitions, four eyes, hash binding, expiry, windows, audit."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from dashboard.audit.models import AuditEvent
from migrations_app.models import Approval, MigrationPlan, PlanItem
from migrations_app.workflow.services import (
    WorkflowForbidden,
    plan_approve,
    plan_cancel,
    plan_finish,
    plan_hold,
    plan_pause,
    plan_reject,
    plan_release,
    plan_resume,
    plan_start,
    plan_submit,
)
from migrations_app.workflow.states import TransitionError
from tests.factories import host_make, plan_make, plan_validate_stub

pytestmark = pytest.mark.django_db


def _events(plan, action=None):
    events = AuditEvent.objects.filter(
        object_type="migrations_app.migrationplan", object_id=str(plan.pk)
    )
    return events.filter(action=action) if action else events


def _approved(plan, people):
    plan_submit(plan=plan, actor=people["planner"])
    plan_approve(plan=plan, actor=people["approver"], comment="looks fine")
    return plan


def test_it_submits_a_validated_plan_and_freezes_its_hash(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    validated_plan.refresh_from_db()
    assert validated_plan.status == "submitted"
    assert len(validated_plan.content_hash) == 64
    event = _events(validated_plan, "plan.submit").get()
    assert event.before["status"] == "draft" and event.after["status"] == "submitted"
    assert event.after["content_hash"] == validated_plan.content_hash


def test_it_refuses_submit_when_the_plan_was_never_validated(people):
    plan = plan_make(people["planner"])
    with pytest.raises(TransitionError, match="has not been validated"):
        plan_submit(plan=plan, actor=people["planner"])
    assert not _events(plan).exists()


def test_it_refuses_submit_when_the_validation_is_stale(validated_plan, people):
    MigrationPlan.objects.filter(pk=validated_plan.pk).update(version=2)
    validated_plan.refresh_from_db()
    with pytest.raises(TransitionError, match="checked version 1.*now version 2"):
        plan_submit(plan=validated_plan, actor=people["planner"])


def test_it_refuses_submit_when_validation_found_blockers(people):
    plan = plan_make(people["planner"])
    plan_validate_stub(plan, blockers=2)
    with pytest.raises(TransitionError, match="2 blocker"):
        plan_submit(plan=plan, actor=people["planner"])


def test_it_refuses_the_author_approving_their_own_plan_even_as_admin(make_user):
    boss = make_user("boss", "admin", "planner", "approver")
    plan = plan_make(boss)
    plan_validate_stub(plan)
    plan_submit(plan=plan, actor=boss)
    with pytest.raises(WorkflowForbidden, match="Four eyes"):
        plan_approve(plan=plan, actor=boss)
    with pytest.raises(WorkflowForbidden, match="Four eyes"):
        plan_reject(plan=plan, actor=boss, reason="no")
    plan.refresh_from_db()
    assert plan.status == "submitted" and not plan.approvals.exists()


def test_it_refuses_a_superuser_author_too(make_user):
    root = make_user("root", superuser=True)
    plan = plan_make(root)
    plan_validate_stub(plan)
    plan_submit(plan=plan, actor=root)
    with pytest.raises(WorkflowForbidden):
        plan_approve(plan=plan, actor=root)


def test_it_approves_and_records_the_hash_the_approver_saw(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    approval = plan_approve(plan=validated_plan, actor=people["approver"], comment="ok")
    validated_plan.refresh_from_db()
    assert validated_plan.status == "approved"
    assert approval.content_hash == validated_plan.content_hash and approval.comment == "ok"
    event = _events(validated_plan, "plan.approve").get()
    assert event.reason == "ok" and event.after["approvals"] == 1


def test_it_refuses_an_approval_of_content_the_approver_did_not_see(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    with pytest.raises(TransitionError, match="changed since you looked"):
        plan_approve(plan=validated_plan, actor=people["approver"], expected_hash="f" * 64)


def test_it_refuses_approval_when_content_changed_behind_the_frozen_hash(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    # An edit that bypassed the services: the frozen hash no longer matches the content.
    PlanItem.objects.filter(plan=validated_plan).update(destination_host=host_make())
    with pytest.raises(TransitionError, match="no longer matches"):
        plan_approve(plan=validated_plan, actor=people["approver"])


@override_settings(FERRY_APPROVALS_REQUIRED=2)
def test_it_needs_distinct_approvers_when_two_are_required(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    plan_approve(plan=validated_plan, actor=people["approver"])
    validated_plan.refresh_from_db()
    assert validated_plan.status == "submitted"
    with pytest.raises(TransitionError, match="already approved"):
        plan_approve(plan=validated_plan, actor=people["approver"])
    plan_approve(plan=validated_plan, actor=people["approver2"])
    validated_plan.refresh_from_db()
    assert validated_plan.status == "approved"


def test_it_refuses_a_second_approval_once_the_plan_is_approved(validated_plan, people):
    _approved(validated_plan, people)
    with pytest.raises(TransitionError, match="it is approved"):
        plan_approve(plan=validated_plan, actor=people["approver2"])


@override_settings(FERRY_APPROVAL_TTL_HOURS=2)
def test_it_refuses_start_when_the_approval_expired_and_allows_reapproval(validated_plan, people):
    _approved(validated_plan, people)
    approval = validated_plan.approvals.get()
    assert approval.expires_at is not None
    Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(TransitionError, match="0 valid approval"):
        plan_start(plan=validated_plan, actor=people["operator"])
    plan_approve(plan=validated_plan, actor=people["approver2"], comment="again")
    plan_start(plan=validated_plan, actor=people["operator"])
    assert validated_plan.status == "running"


def test_it_requires_a_reason_to_reject(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    with pytest.raises(ValidationError):
        plan_reject(plan=validated_plan, actor=people["approver"], reason="  ")
    rejection = plan_reject(plan=validated_plan, actor=people["approver"], reason="wrong window")
    validated_plan.refresh_from_db()
    assert validated_plan.status == "rejected" and rejection.decision == "rejected"
    assert _events(validated_plan, "plan.reject").get().reason == "wrong window"


def test_it_refuses_a_viewer_to_submit_approve_or_start(validated_plan, people):
    viewer = people["viewer"]
    with pytest.raises(WorkflowForbidden):
        plan_submit(plan=validated_plan, actor=viewer)
    plan_submit(plan=validated_plan, actor=people["planner"])
    with pytest.raises(WorkflowForbidden):
        plan_approve(plan=validated_plan, actor=viewer)
    plan_approve(plan=validated_plan, actor=people["approver"])
    with pytest.raises(WorkflowForbidden):
        plan_start(plan=validated_plan, actor=viewer)
    validated_plan.refresh_from_db()
    assert validated_plan.status == "approved"


def test_it_refuses_start_without_approval(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    with pytest.raises(TransitionError, match="it is submitted"):
        plan_start(plan=validated_plan, actor=people["operator"])


def test_it_needs_an_override_reason_outside_the_window(people):
    plan = plan_make(people["planner"], window="closed")
    plan_validate_stub(plan)
    _approved(plan, people)
    with pytest.raises(ValidationError) as caught:
        plan_start(plan=plan, actor=people["operator"])
    assert "override_reason" in caught.value.message_dict
    plan_start(plan=plan, actor=people["operator"], override_reason="incident INC-7")
    event = _events(plan, "plan.start").get()
    assert event.reason == "incident INC-7" and event.after["outside_window"] is True


def test_it_runs_pause_resume_finish_with_one_event_each(validated_plan, people):
    _approved(validated_plan, people)
    operator = people["operator"]
    plan_start(plan=validated_plan, actor=operator)
    plan_pause(plan=validated_plan, actor=operator)
    with pytest.raises(TransitionError):
        plan_pause(plan=validated_plan, actor=operator)
    plan_resume(plan=validated_plan, actor=operator)
    plan_finish(plan=validated_plan, actor=operator, outcome="completed")
    actions = list(_events(validated_plan).order_by("sequence").values_list("action", flat=True))
    assert actions == [
        "plan.submit",
        "plan.approve",
        "plan.start",
        "plan.pause",
        "plan.resume",
        "plan.completed",
    ]
    with pytest.raises(TransitionError, match="finished plan stays finished"):
        plan_cancel(plan=validated_plan, actor=operator, reason="too late")


def test_it_lets_a_planner_cancel_before_start_but_not_after(validated_plan, people):
    with pytest.raises(ValidationError):
        plan_cancel(plan=validated_plan, actor=people["planner"], reason="")
    other = plan_make(people["planner"])
    plan_validate_stub(other)
    _approved(other, people)
    plan_start(plan=other, actor=people["operator"])
    with pytest.raises(WorkflowForbidden, match="operator"):
        plan_cancel(plan=other, actor=people["planner"], reason="stop")
    plan_cancel(plan=other, actor=people["operator"], reason="stop")
    plan_cancel(plan=validated_plan, actor=people["planner"], reason="not needed")
    validated_plan.refresh_from_db()
    assert validated_plan.status == "cancelled" and validated_plan.status_reason == "not needed"


def test_it_holds_and_releases_and_blocks_auto_start_while_held(validated_plan, people):
    from dashboard.audit.record import Actor

    _approved(validated_plan, people)
    plan_hold(plan=validated_plan, actor=people["operator"], reason="waiting for DBA")
    with pytest.raises(TransitionError, match="already on hold"):
        plan_hold(plan=validated_plan, actor=people["operator"])
    with pytest.raises(TransitionError, match="on hold"):
        plan_start(plan=validated_plan, actor=Actor.system("scheduler"))
    plan_release(plan=validated_plan, actor=people["operator"])
    plan_start(plan=validated_plan, actor=Actor.system("scheduler"))
    assert validated_plan.status == "running"


def test_it_sends_plan_started_inside_the_start_transaction(validated_plan, people):
    from migrations_app.workflow.signals import plan_started

    calls = []

    def receiver(sender, *, plan, actor, reason, **kwargs):
        calls.append((plan.status, reason))

    plan_started.connect(receiver)
    try:
        _approved(validated_plan, people)
        plan_start(plan=validated_plan, actor=people["operator"])
    finally:
        plan_started.disconnect(receiver)
    assert calls == [("running", "")]


def test_it_undoes_the_start_when_a_receiver_fails(validated_plan, people):
    from migrations_app.models import PlanRun
    from migrations_app.workflow.signals import plan_started

    def refuse(sender, **kwargs):
        raise RuntimeError("the run could not be created")

    plan_started.connect(refuse)
    try:
        _approved(validated_plan, people)
        with pytest.raises(RuntimeError):
            plan_start(plan=validated_plan, actor=people["operator"])
    finally:
        plan_started.disconnect(refuse)
    validated_plan.refresh_from_db()
    assert validated_plan.status == "approved"
    assert not PlanRun.objects.filter(plan=validated_plan).exists()


def test_it_refuses_start_on_a_paused_plan_and_points_to_resume(validated_plan, people):
    # Found by the state machine: PAUSED → RUNNING is legal, but only through resume.
    _approved(validated_plan, people)
    plan_start(plan=validated_plan, actor=people["operator"])
    plan_pause(plan=validated_plan, actor=people["operator"])
    with pytest.raises(TransitionError, match="resume it instead"):
        plan_start(plan=validated_plan, actor=people["operator"])
