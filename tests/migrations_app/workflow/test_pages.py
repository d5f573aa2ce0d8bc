"""The workflow buttons on the plan page: offered by role and state, and they work."""

import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory

from migrations_app.workflow.services import plan_submit
from migrations_app.workflow.states import available_actions

pytestmark = pytest.mark.django_db


def _render(plan, user):
    request = RequestFactory().get(f"/plans/{plan.pk}/")
    request.user = user
    template = Template("{% load plan_workflow %}{% plan_workflow_actions plan %}")
    return template.render(Context({"plan": plan, "request": request}))


def test_it_offers_each_role_only_its_buttons(validated_plan, people):
    assert available_actions(validated_plan, people["planner"]) == ["submit", "cancel"]
    assert available_actions(validated_plan, people["viewer"]) == []
    plan_submit(plan=validated_plan, actor=people["planner"])
    assert available_actions(validated_plan, people["approver"]) == ["approve", "reject"]
    # The author sees no approve button even with the approver role.
    people["planner"].groups.add(*people["approver"].groups.all())
    del people["planner"]._ferry_roles
    assert "approve" not in available_actions(validated_plan, people["planner"])
    html = _render(validated_plan, people["approver"])
    assert "Approve" in html and validated_plan.content_hash in html and "Change record" in html


def test_it_runs_the_workflow_from_the_page_and_reports_refusals(validated_plan, people):
    planner, approver = Client(), Client()
    planner.force_login(people["planner"])
    approver.force_login(people["approver"])
    back = f"/plans/{validated_plan.pk}/"
    answer = planner.post(f"/plans/{validated_plan.pk}/workflow/submit/", {"next": back})
    assert answer.status_code == 302 and answer["Location"] == back
    validated_plan.refresh_from_db()
    answer = approver.post(
        f"/plans/{validated_plan.pk}/workflow/reject/", {"reason": "", "next": back}, follow=True
    )
    assert "Say why" in answer.content.decode()
    approver.post(
        f"/plans/{validated_plan.pk}/workflow/approve/",
        {"content_hash": validated_plan.content_hash, "comment": "ok"},
    )
    validated_plan.refresh_from_db()
    assert validated_plan.status == "approved"
    answer = planner.post(
        f"/plans/{validated_plan.pk}/workflow/start/", {"next": back}, follow=True
    )
    assert "does not allow" in answer.content.decode()
    assert planner.post(f"/plans/{validated_plan.pk}/workflow/explode/").status_code == 404
