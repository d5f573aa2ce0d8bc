"""Hooks on a plan over the API: a hook is content (adding or removing one voids the
approval), its secret is never shown, and bad hooks get a clear 4xx."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from dashboard.audit.models import AuditEvent
from migrations_app.content import plan_content_hash
from migrations_app.models import Hook
from migrations_app.workflow.services import plan_approve, plan_submit

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/lb-drain"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_hook_is_content_and_voids_the_approval(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    plan_approve(plan=validated_plan, actor=people["approver"])
    validated_plan.refresh_from_db()
    approved_hash = validated_plan.content_hash
    assert validated_plan.status == "approved"

    answer = _client(people["planner"]).post(
        f"/api/v1/plans/{validated_plan.pk}/hooks/",
        {"event": "pre_migration", "kind": "http", "url": URL, "on_failure": "pause"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert "secret" not in answer.json() and answer.json()["url"] == URL
    validated_plan.refresh_from_db()
    assert validated_plan.status == "draft"
    assert plan_content_hash(validated_plan) != approved_hash
    assert AuditEvent.objects.filter(action="plan.hook_added").count() == 1

    listed = _client(people["viewer"]).get(f"/api/v1/plans/{validated_plan.pk}/hooks/").json()
    assert [h["event"] for h in listed] == ["pre_migration"] and "secret" not in listed[0]

    # Approvers read on the plan page what Ferry will call.
    browser = Client()
    browser.force_login(people["approver"])
    page = browser.get(reverse("plans:plan-detail", args=[validated_plan.pk]))
    assert page.status_code == 200 and URL in page.content.decode()

    hook = Hook.objects.get(plan=validated_plan)
    gone = _client(people["planner"]).delete(f"/api/v1/plans/{validated_plan.pk}/hooks/{hook.pk}/")
    assert gone.status_code == 204
    assert not Hook.objects.filter(plan=validated_plan).exists()
    assert AuditEvent.objects.filter(action="plan.hook_removed").count() == 1


def test_it_answers_bad_plan_hooks_with_a_clear_4xx(validated_plan, people, settings, tmp_path):
    planner = _client(people["planner"])
    url = f"/api/v1/plans/{validated_plan.pk}/hooks/"
    host_action = planner.post(url, {"event": "host_action", "kind": "http", "url": URL})
    assert host_action.status_code == 400 and "pre_migration" in host_action.json()["detail"]
    metadata = planner.post(
        url, {"event": "pre_migration", "kind": "http", "url": "http://169.254.169.254/x"}
    )
    assert metadata.status_code == 400
    no_url = planner.post(url, {"event": "pre_migration", "kind": "http"})
    assert no_url.status_code == 400 and "URL" in no_url.json()["detail"]
    settings.FERRY_HOOK_COMMAND_DIR = str(tmp_path)
    script = tmp_path / "drain.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    command = {"event": "pre_migration", "kind": "command", "command": "drain.sh"}
    assert planner.post(url, command, format="json").status_code == 403
    assert _client(people["admin"]).post(url, command, format="json").status_code == 201
    viewer = _client(people["viewer"]).post(url, {"event": "pre_migration", "kind": "http"})
    assert viewer.status_code == 403
    assert planner.delete(f"{url}999999/").status_code == 404
    # Nothing half-written: only the admin's hook exists.
    assert list(Hook.objects.filter(plan=validated_plan).values_list("kind", flat=True)) == [
        "command"
    ]
